using TorchSharp;
using TransferLearning.Backbones.Onnx.Export;
using static TorchSharp.torch;

namespace TransferLearning.Backbones.TorchVision;

/// <summary>
/// Building blocks shared by the architectures written here (EfficientNet, MobileNetV3). Child names follow torchvision's
/// modules so that torchvision state dicts load with <c>strict: true</c>.
/// </summary>
internal static class TorchVisionLayers
{
    /// <summary>torchvision's channel rounding: nearest multiple of <paramref name="divisor"/>, never more than 10% below <paramref name="value"/>.</summary>
    public static long MakeDivisible(double value, long divisor = 8, long? minValue = null)
    {
        var min = minValue ?? divisor;
        var rounded = Math.Max(min, (long)(value + (divisor / 2.0)) / divisor * divisor);
        if (rounded < 0.9 * value)
        {
            rounded += divisor;
        }

        return rounded;
    }

    /// <summary>
    /// torchvision's <c>Conv2dNormActivation</c>: children <c>0</c> (conv, no bias), <c>1</c> (BatchNorm2d), <c>2</c> (activation, optional);
    /// padding <c>(kernel - 1) / 2 * dilation</c>. Conv and BatchNorm run folded in inference mode, ReLU/ReLU6 in place.
    /// </summary>
    public static nn.Module<Tensor, Tensor> ConvNormAct(
        long inChannels,
        long outChannels,
        long kernel,
        long stride,
        long groups,
        double eps,
        double momentum,
        Func<nn.Module<Tensor, Tensor>>? activation,
        long dilation = 1)
    {
        var padding = (kernel - 1) / 2 * dilation;
        var conv = nn.Conv2d(inChannels, outChannels, kernel, stride: stride, padding: padding, dilation: dilation, groups: groups, bias: false);
        var norm = nn.BatchNorm2d(outChannels, eps: eps, momentum: momentum);
        return activation is null ? new FoldingSequential(conv, norm) : new FoldingSequential(conv, norm, activation());
    }

    /// <summary>Initialises weights as torchvision does (Kaiming-normal fan-out convs, unit/zero norms); linears are left to the caller.</summary>
    public static void InitConvAndNorm(nn.Module model)
    {
        using var noGrad = torch.no_grad();
        foreach (var m in model.modules())
        {
            switch (m)
            {
                case TorchSharp.Modules.Conv2d conv:
                    nn.init.kaiming_normal_(conv.weight, mode: nn.init.FanInOut.FanOut);
                    if (conv.bias is not null)
                    {
                        nn.init.zeros_(conv.bias);
                    }

                    break;
                case TorchSharp.Modules.BatchNorm2d norm:
                    nn.init.ones_(norm.weight);
                    nn.init.zeros_(norm.bias);
                    break;
            }
        }
    }
}

/// <summary>
/// torchvision's <c>SqueezeExcitation</c>: global average → <c>fc1</c> (1×1 conv) → activation → <c>fc2</c> (1×1 conv) → gate,
/// then the input is scaled channel-wise by the gate.
/// </summary>
internal sealed class SqueezeExcitation : nn.Module<Tensor, Tensor>, IOnnxExportable
{
    private readonly TorchSharp.Modules.Conv2d _fc1;
    private readonly TorchSharp.Modules.Conv2d _fc2;
    private readonly nn.Module<Tensor, Tensor> _activation;
    private readonly nn.Module<Tensor, Tensor> _gate;

    public SqueezeExcitation(long channels, long squeezeChannels, nn.Module<Tensor, Tensor> activation, nn.Module<Tensor, Tensor> gate)
        : base(nameof(SqueezeExcitation))
    {
        _fc1 = nn.Conv2d(channels, squeezeChannels, 1);
        _fc2 = nn.Conv2d(squeezeChannels, channels, 1);
        _activation = activation;
        _gate = gate;
        register_module("fc1", _fc1);
        register_module("fc2", _fc2);
        register_module("activation", _activation);
        register_module("scale_activation", _gate);
    }

    public override Tensor forward(Tensor input)
    {
        using var pooled = input.mean([2, 3], keepdim: true);
        using var squeezed = Conv2dOps.Conv2d(pooled, _fc1.weight!, _fc1.bias, [1, 1], [0, 0], [1, 1], 1);
        using var activated = _activation.forward(squeezed);
        using var expanded = Conv2dOps.Conv2d(activated, _fc2.weight!, _fc2.bias, [1, 1], [0, 0], [1, 1], 1);
        using var scale = _gate.forward(expanded);
        return input * scale;
    }

    /// <inheritdoc />
    public string Export(OnnxGraphBuilder builder, string input)
    {
        var exporter = new TorchModuleExporter(builder);
        var pooled = builder.Node("GlobalAveragePool", [input], "pool");
        var squeezed = exporter.Emit(_fc1, pooled, "fc1");
        var activated = exporter.Emit(_activation, squeezed, "activation");
        var expanded = exporter.Emit(_fc2, activated, "fc2");
        var scale = exporter.Emit(_gate, expanded, "scale_activation");
        return builder.Node("Mul", [input, scale], "scale");
    }
}
