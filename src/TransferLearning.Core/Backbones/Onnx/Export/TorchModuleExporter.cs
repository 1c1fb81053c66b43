using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace TransferLearning.Backbones.Onnx.Export;

/// <summary>
/// Writes trees of TorchSharp's standard layers as ONNX: Sequential (children in order), Conv2d, BatchNorm2d, Linear,
/// ReLU, ReLU6, Hardtanh, LeakyReLU, Sigmoid, Tanh, SiLU, GELU, Hardswish, Hardsigmoid, MaxPool2d, AdaptiveAvgPool2d(1),
/// Flatten, Dropout and Identity. A module implementing <see cref="IOnnxExportable"/> writes itself; an
/// <c>extension</c> handles module types of other libraries (e.g. TorchVision's residual blocks). Anything else fails
/// naming the module's path and type.
/// </summary>
internal sealed class TorchModuleExporter
{
    private readonly Func<TorchModuleExporter, nn.Module, string, string?>? _extension;

    /// <summary>Creates an exporter writing into <paramref name="builder"/>.</summary>
    /// <param name="builder">The graph being written.</param>
    /// <param name="extension">Writes module types this class does not know (returns null to decline).</param>
    public TorchModuleExporter(OnnxGraphBuilder builder, Func<TorchModuleExporter, nn.Module, string, string?>? extension = null)
    {
        Builder = builder;
        _extension = extension;
    }

    /// <summary>The graph being written.</summary>
    public OnnxGraphBuilder Builder { get; }

    /// <summary>Writes <paramref name="module"/> (named <paramref name="name"/> in the graph) applied to <paramref name="input"/>.</summary>
    /// <returns>The output value name.</returns>
    public string Emit(nn.Module module, string input, string name)
    {
        using var scope = Builder.Scope(name);
        if (module is IOnnxExportable exportable)
        {
            return exportable.Export(Builder, input);
        }

        if (_extension?.Invoke(this, module, input) is { } handled)
        {
            return handled;
        }

        var b = Builder;
        switch (module)
        {
            case Sequential sequential:
                {
                    var x = input;
                    foreach (var (childName, child) in sequential.named_children())
                    {
                        x = Emit(child, x, childName);
                    }

                    return x;
                }

            case Conv2d conv:
                return Conv(b, conv, input);
            case BatchNorm2d bn:
                return b.BatchNorm(input, bn.weight, bn.bias, bn.running_mean
                    ?? throw new NotSupportedException($"BatchNorm2d '{name}' keeps no running statistics (track_running_stats = false), so it has no inference form to export."),
                    bn.running_var!, bn.eps, "bn");
            case Linear linear:
                return b.Linear(input, linear.weight, linear.bias, "linear");
            case ReLU:
                return b.Node("Relu", [input], "relu");
            case ReLU6:
                return b.Clip(input, 0f, 6f, "relu6");
            case Hardtanh hardtanh:
                return b.Clip(input, (float)hardtanh.min_val, (float)hardtanh.max_val, "hardtanh");
            case LeakyReLU leaky:
                return b.Node("LeakyRelu", [input], "leaky_relu", OnnxGraphBuilder.Attr("alpha", (float)leaky.negative_slope));
            case Sigmoid:
                return b.Node("Sigmoid", [input], "sigmoid");
            case Tanh:
                return b.Node("Tanh", [input], "tanh");
            case SiLU:
                return b.Silu(input);
            case GELU gelu:
                return b.Gelu(input, gelu.approximate == GELU.Approximate.tanh);
            case Hardswish:
                return b.Node("HardSwish", [input], "hardswish");
            case Hardsigmoid:
                // PyTorch: relu6(x + 3) / 6.
                return b.Node("HardSigmoid", [input], "hardsigmoid", OnnxGraphBuilder.Attr("alpha", 1f / 6f), OnnxGraphBuilder.Attr("beta", 0.5f));
            case Dropout or Dropout2d or Identity:
                return input;
            case MaxPool2d pool:
                {
                    var kernel = pool.kernel_size;
                    var padding = Pair(pool.padding, 0);
                    return b.Node("MaxPool", [input], "maxpool",
                        OnnxGraphBuilder.Attr("kernel_shape", kernel),
                        OnnxGraphBuilder.Attr("strides", pool.stride is { Length: > 0 } s ? Pair(s, 1) : kernel),
                        OnnxGraphBuilder.Attr("pads", [padding[0], padding[1], padding[0], padding[1]]),
                        OnnxGraphBuilder.Attr("dilations", Pair(pool.dilation, 1)),
                        OnnxGraphBuilder.Attr("ceil_mode", pool.ceil_mode ? 1L : 0L));
                }

            case AdaptiveAvgPool2d adaptive when adaptive.output_size.All(s => s == 1):
                return b.Node("GlobalAveragePool", [input], "avgpool");
            case Flatten flatten when flatten.start_dim == 1 && flatten.end_dim == -1:
                return b.Node("Flatten", [input], "flatten", OnnxGraphBuilder.Attr("axis", 1L));
            default:
                throw new NotSupportedException(
                    $"the layer '{name}' is a {Describe(module)}, which the ONNX export cannot write.");
        }
    }

    /// <summary>A TorchSharp Conv2d (zero padding; explicit, 'valid' or 'same').</summary>
    public static string Conv(OnnxGraphBuilder b, Conv2d conv, string input)
    {
        if (conv.padding_mode != PaddingModes.Zeros)
        {
            throw new NotSupportedException($"a Conv2d pads with mode {conv.padding_mode}; the ONNX export writes zero padding only.");
        }

        var kernel = conv.kernel_size;
        var dilation = Pair(conv.dilation, 1);
        long[] pads;
        if (conv.padding_type == Padding.Same)
        {
            // PyTorch 'same' (stride 1): the extra row/column goes at the end.
            var total = new[] { dilation[0] * (kernel[0] - 1), dilation[1] * (kernel[1] - 1) };
            pads = [total[0] / 2, total[1] / 2, total[0] - (total[0] / 2), total[1] - (total[1] / 2)];
        }
        else if (conv.padding_type == Padding.Valid)
        {
            pads = [0, 0, 0, 0];
        }
        else
        {
            var p = Pair(conv.padding, 0);
            pads = [p[0], p[1], p[0], p[1]];
        }

        return b.Conv(input, conv.weight!, conv.bias, Pair(conv.stride, 1), pads, dilation, conv.groups, "conv");
    }

    private static long[] Pair(long[]? values, long fallback) => values switch
    {
        null or { Length: 0 } => [fallback, fallback],
        { Length: 1 } => [values[0], values[0]],
        _ => [values[0], values[1]],
    };

    internal static string Describe(nn.Module module)
    {
        var type = module.GetType();
        return type.Namespace is "TorchSharp.Modules" ? type.Name : type.FullName ?? type.Name;
    }
}
