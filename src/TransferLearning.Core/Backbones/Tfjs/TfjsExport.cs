using System.Text.Json.Nodes;
using TransferLearning.Backbones.Onnx.Export;
using static TorchSharp.torch;

namespace TransferLearning.Backbones.Tfjs;

/// <summary>
/// ONNX export of a TF.js layers network: one group of NCHW nodes per Keras layer call, as the network runs it (rank-4
/// values NCHW, other ranks in Keras order). TensorFlow's SAME padding becomes explicit, possibly asymmetric pads
/// computed for the export's input size, exactly as the layers compute them at run time; Flatten and Reshape go through
/// NHWC order as Keras does. Each value's shape comes from one forward pass on a zero image of the input's size.
/// </summary>
internal sealed partial class TfjsNetwork : IOnnxExportable
{
    /// <inheritdoc />
    public string Export(OnnxGraphBuilder builder, string input)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var inputShape = builder.ShapeOf(input) is { Length: 4 } s && s.Skip(1).All(d => d > 0)
            ? s
            : throw new InvalidOperationException($"The TF.js network's export needs the static [N, C, H, W] shape of '{input}'.");
        var shapes = ProbeShapes(inputShape);
        var names = new string[_valueCount];
        names[0] = input;
        for (var i = 0; i < _layers.Count; i++)
        {
            var (step, module) = _layers[i];
            using var scope = builder.Scope(step.Name);
            names[step.Output] = TfjsExport.Layer(builder, step, module, step.Inputs.Select(v => names[v]).ToArray(), step.Inputs.Select(v => shapes[v]).ToArray());
        }

        var result = names[_output];
        if (_globalPoolOutput && shapes[_output].Length == 4)
        {
            result = builder.Node("ReduceMean", [result], "features_pool", OnnxGraphBuilder.Attr("axes", [2L, 3L]), OnnxGraphBuilder.Attr("keepdims", 0L));
        }

        return result;
    }

    /// <summary>The shape of every value for one zero image of the input's size (batch dimension 1).</summary>
    private long[][] ProbeShapes(long[] inputShape)
    {
        var shapes = new long[_valueCount][];
        var wasTraining = training;
        eval();
        try
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            var values = new Tensor[_valueCount];
            var device = parameters().FirstOrDefault()?.device ?? CPU;
            values[0] = zeros([1, inputShape[1], inputShape[2], inputShape[3]], device: device);
            shapes[0] = values[0].shape;
            foreach (var (run, inputs, output) in _steps)
            {
                values[output] = run(inputs.Select(v => values[v]).ToArray(), false);
                shapes[output] = values[output].shape;
            }
        }
        finally
        {
            train(wasTraining);
        }

        return shapes;
    }
}

/// <summary>Writes one Keras layer call as ONNX nodes.</summary>
internal static class TfjsExport
{
    /// <summary>Writes <paramref name="step"/> applied to <paramref name="x"/> (shapes with batch 1) and returns its output value.</summary>
    public static string Layer(OnnxGraphBuilder b, TfjsStep step, nn.Module<Tensor, Tensor>? module, string[] x, long[][] shapes)
    {
        var c = step.Config;
        var rank = shapes[0].Length;
        switch (step.ClassName)
        {
            case "Conv2D" or "DepthwiseConv2D":
                {
                    var conv = (TfjsConv2d)module!;
                    var pads = Pads(shapes[0], conv.Weight.shape[2..], conv.Strides, conv.Dilation, conv.Same);
                    var y = b.Conv(x[0], conv.Weight, conv.Bias, conv.Strides, pads, conv.Dilation, conv.Groups, "conv");
                    return Activation(b, (string?)c["activation"], y, 4, step);
                }

            case "SeparableConv2D":
                {
                    var conv = (TfjsSeparableConv2d)module!;
                    var pads = Pads(shapes[0], conv.DepthwiseWeight.shape[2..], conv.Strides, conv.Dilation, conv.Same);
                    var dw = b.Conv(x[0], conv.DepthwiseWeight, null, conv.Strides, pads, conv.Dilation, shapes[0][1], "depthwise");
                    var pw = b.Conv(dw, conv.PointwiseWeight, conv.Bias, [1, 1], [0, 0, 0, 0], [1, 1], 1, "pointwise");
                    return Activation(b, (string?)c["activation"], pw, 4, step);
                }

            case "Dense":
                {
                    var dense = (TfjsDense)module!;
                    string y;
                    if (rank == 2)
                    {
                        y = b.Linear(x[0], dense.Weight, dense.Bias, "dense");
                    }
                    else if (rank == 4)
                    {
                        // Keras applies Dense to the channels of NHWC: a 1×1 convolution on NCHW.
                        using var kernel = dense.Weight.reshape(dense.Weight.shape[0], dense.Weight.shape[1], 1, 1);
                        y = b.Conv(x[0], kernel, dense.Bias, [1, 1], [0, 0, 0, 0], [1, 1], 1, "dense");
                    }
                    else
                    {
                        using var transposed = dense.Weight.t();
                        y = b.Node("MatMul", [x[0], b.Initializer("dense.kernel", transposed)], "dense.matmul");
                        if (dense.Bias is not null)
                        {
                            y = b.Node("Add", [y, b.Initializer("dense.bias", dense.Bias)], "dense");
                        }
                    }

                    return Activation(b, (string?)c["activation"], y, rank, step);
                }

            case "BatchNormalization":
                return BatchNorm(b, (TfjsBatchNorm)module!, x[0], rank, step);
            case "ReLU":
                return Relu(b, x[0], c["max_value"] is JsonNode m ? (double)m : null, Number(c, "negative_slope", 0), Number(c, "threshold", 0), step);
            case "LeakyReLU":
                {
                    var alpha = c["alpha"] is null ? Number(c, "negative_slope", 0.3) : Number(c, "alpha", 0.3);
                    return b.Node("LeakyRelu", [x[0]], "leaky_relu", OnnxGraphBuilder.Attr("alpha", (float)alpha));
                }

            case "Activation":
                return Activation(b, (string?)c["activation"], x[0], rank, step);
            case "Softmax":
                {
                    var axis = c["axis"] is JsonArray a ? (long)a[0]! : (long?)c["axis"] ?? -1;
                    return b.Node("Softmax", [x[0]], "softmax", OnnxGraphBuilder.Attr("axis", TfjsOps.MapAxis(axis, rank)));
                }

            case "Add":
                return Fold(b, "Add", x);
            case "Multiply":
                return Fold(b, "Mul", x);
            case "Subtract":
                return b.Node("Sub", [x[0], x[1]], "sub");
            case "Maximum":
                return b.Node("Max", x, "max");
            case "Minimum":
                return b.Node("Min", x, "min");
            case "Average":
                return b.Node("Div", [Fold(b, "Add", x), b.Scalar(x.Length)], "average");
            case "Concatenate":
                return b.Node("Concat", x, "concat", OnnxGraphBuilder.Attr("axis", TfjsOps.MapAxis((long?)c["axis"] ?? -1, rank)));
            case "GlobalAveragePooling2D" or "GlobalMaxPooling2D":
                return b.Node(step.ClassName == "GlobalAveragePooling2D" ? "ReduceMean" : "ReduceMax", [x[0]], "pool",
                    OnnxGraphBuilder.Attr("axes", [2L, 3L]), OnnxGraphBuilder.Attr("keepdims", Flag(c, "keepdims") ? 1L : 0L));
            case "AveragePooling2D" or "MaxPooling2D":
                {
                    var pool = Pair(c, "pool_size", 2);
                    var strides = c["strides"] is null ? pool : Pair(c, "strides", 1);
                    var same = (string?)c["padding"] == "same";
                    var pads = Pads(shapes[0], pool, strides, [1, 1], same);
                    return step.ClassName == "MaxPooling2D"
                        ? b.Node("MaxPool", [x[0]], "pool", OnnxGraphBuilder.Attr("kernel_shape", pool), OnnxGraphBuilder.Attr("strides", strides), OnnxGraphBuilder.Attr("pads", pads))
                        : b.Node("AveragePool", [x[0]], "pool", OnnxGraphBuilder.Attr("kernel_shape", pool), OnnxGraphBuilder.Attr("strides", strides),
                            OnnxGraphBuilder.Attr("pads", pads), OnnxGraphBuilder.Attr("count_include_pad", 0L)); // TensorFlow ignores padded cells
                }

            case "ZeroPadding2D":
                {
                    var (top, bottom, left, right) = ZeroPadding(c["padding"], step);
                    return b.Node("Pad", [x[0], b.Int64s("pads", [0, 0, top, left, 0, 0, bottom, right])], "pad");
                }

            case "Flatten":
                {
                    var keras = rank == 4 ? ToKerasOrder(b, x[0]) : x[0];
                    return b.Node("Flatten", [keras], "flatten", OnnxGraphBuilder.Attr("axis", 1L));
                }

            case "Reshape":
                {
                    var target = (c["target_shape"] as JsonArray ?? throw new InvalidDataException($"Reshape '{step.Name}' has no target_shape."))
                        .Select(d => (long)d!).ToArray();
                    var keras = rank == 4 ? ToKerasOrder(b, x[0]) : x[0];
                    var reshaped = b.Node("Reshape", [keras, b.Int64s("shape", [0, .. target])], "reshape");
                    return target.Length + 1 == 4
                        ? b.Node("Transpose", [reshaped], "to_nchw", OnnxGraphBuilder.Attr("perm", [0L, 3L, 1L, 2L]))
                        : reshaped;
                }

            case "Dropout" or "SpatialDropout2D":
                return x[0];
            case "Rescaling":
                {
                    var scale = Number(c, "scale", 1);
                    var offset = Number(c, "offset", 0);
                    var y = scale == 1 ? x[0] : b.Node("Mul", [x[0], b.Scalar((float)scale)], "scale");
                    return offset == 0 ? y : b.Node("Add", [y, b.Scalar((float)offset)], "offset");
                }

            default:
                throw new NotSupportedException($"layer '{step.Name}' has class '{step.ClassName}', which the ONNX export cannot write.");
        }
    }

    /// <summary>ONNX pads [top, left, bottom, right]: TensorFlow SAME (extra row/column at the end) or none.</summary>
    private static long[] Pads(long[] inputShape, long[] kernel, long[] strides, long[] dilation, bool same)
    {
        if (!same)
        {
            return [0, 0, 0, 0];
        }

        var (top, bottom) = TfjsOps.SamePadding(inputShape[2], kernel[0], strides[0], dilation[0]);
        var (left, right) = TfjsOps.SamePadding(inputShape[3], kernel[1], strides[1], dilation[1]);
        return [top, left, bottom, right];
    }

    /// <summary>Keras BatchNormalization over the channels: a BatchNormalization node on NCHW, scale and shift over the last axis otherwise.</summary>
    private static string BatchNorm(OnnxGraphBuilder b, TfjsBatchNorm bn, string x, int rank, TfjsStep step)
    {
        var axis = bn.Axis < 0 ? bn.Axis + rank : bn.Axis;
        if (axis != rank - 1 || rank < 2)
        {
            throw new NotSupportedException($"BatchNormalization '{step.Name}' normalises axis {bn.Axis} of a rank-{rank} tensor; only the channel axis is supported.");
        }

        if (rank == 4)
        {
            return b.BatchNorm(x, bn.Gamma, bn.Beta, bn.MovingMean, bn.MovingVariance, bn.Epsilon, "bn");
        }

        // Keras order keeps the channels last: y = x·s + t with s = γ/√(var + ε), t = β − mean·s (computed in double).
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var variance = bn.MovingVariance.detach().to_type(ScalarType.Float64);
        var s = (bn.Gamma?.detach().to_type(ScalarType.Float64) ?? ones_like(variance)) / (variance + bn.Epsilon).sqrt();
        var t = (bn.Beta?.detach().to_type(ScalarType.Float64) ?? zeros_like(variance)) - (bn.MovingMean.detach().to_type(ScalarType.Float64) * s);
        var scaled = b.Node("Mul", [x, b.Initializer("bn.scale", s)], "bn.mul");
        return b.Node("Add", [scaled, b.Initializer("bn.shift", t)], "bn");
    }

    /// <summary>Keras ReLU: plain, capped (max_value) or leaky below 0; a threshold other than 0 has no export.</summary>
    private static string Relu(OnnxGraphBuilder b, string x, double? maxValue, double negativeSlope, double threshold, TfjsStep step)
    {
        if (threshold != 0)
        {
            throw new NotSupportedException($"ReLU '{step.Name}' has threshold {threshold}; the ONNX export writes ReLU with threshold 0 only.");
        }

        if (negativeSlope == 0)
        {
            return maxValue is double m ? b.Clip(x, 0f, (float)m, "relu") : b.Node("Relu", [x], "relu");
        }

        var leaky = b.Node("LeakyRelu", [x], maxValue is null ? "relu" : "relu.leaky", OnnxGraphBuilder.Attr("alpha", (float)negativeSlope));
        if (maxValue is not double max)
        {
            return leaky;
        }

        if (max <= 0 || negativeSlope < 0)
        {
            throw new NotSupportedException($"ReLU '{step.Name}' (max_value {max}, negative_slope {negativeSlope}) has no ONNX export.");
        }

        return b.Node("Min", [leaky, b.Scalar((float)max)], "relu");
    }

    /// <summary>A Keras activation by name (as the loader runs it).</summary>
    internal static string Activation(OnnxGraphBuilder b, string? name, string x, int rank, TfjsStep step)
    {
        var key = (name ?? "linear").Replace("_", string.Empty, StringComparison.Ordinal).ToUpperInvariant();
        return key switch
        {
            "LINEAR" or "" => x,
            "RELU" => b.Node("Relu", [x], "relu"),
            "RELU6" => b.Clip(x, 0f, 6f, "relu6"),
            "SIGMOID" => b.Node("Sigmoid", [x], "sigmoid"),
            "TANH" => b.Node("Tanh", [x], "tanh"),
            "SOFTMAX" => b.Node("Softmax", [x], "softmax", OnnxGraphBuilder.Attr("axis", rank == 4 ? 1L : -1L)),
            "SWISH" or "SILU" => b.Silu(x),
            "HARDSIGMOID" => b.Node("HardSigmoid", [x], "hard_sigmoid", OnnxGraphBuilder.Attr("alpha", 0.2f), OnnxGraphBuilder.Attr("beta", 0.5f)),
            "ELU" => b.Elu(x, 1f),
            "SELU" => b.Elu(x, 1.6732632423543772f, 1.0507009873554805f, "selu"),
            "SOFTSIGN" => b.Node("Div", [x, b.Node("Add", [b.Node("Abs", [x], "softsign.abs"), b.Scalar(1f)], "softsign.denominator")], "softsign"),
            "GELU" => b.Gelu(x),
            "SOFTPLUS" => b.Node("Softplus", [x], "softplus"),
            "MISH" => b.Node("Mul", [x, b.Node("Tanh", [b.Node("Softplus", [x], "mish.softplus")], "mish.tanh")], "mish"),
            _ => throw new NotSupportedException(
                $"layer '{step.Name}' uses activation '{name}', which the ONNX export cannot write."),
        };
    }

    private static string ToKerasOrder(OnnxGraphBuilder b, string x) =>
        b.Node("Transpose", [x], "to_nhwc", OnnxGraphBuilder.Attr("perm", [0L, 2L, 3L, 1L]));

    private static string Fold(OnnxGraphBuilder b, string op, string[] x)
    {
        var acc = x[0];
        for (var i = 1; i < x.Length; i++)
        {
            acc = b.Node(op, [acc, x[i]], op.ToLowerInvariant());
        }

        return acc;
    }

    private static long[] Pair(JsonObject c, string key, long fallback) => c[key] switch
    {
        null => [fallback, fallback],
        JsonArray a when a.Count == 2 => [(long)a[0]!, (long)a[1]!],
        JsonArray a when a.Count == 1 => [(long)a[0]!, (long)a[0]!],
        JsonNode n => [(long)n, (long)n],
    };

    private static double Number(JsonObject c, string key, double fallback) => c[key] is JsonNode n ? (double)n : fallback;

    private static bool Flag(JsonObject c, string key) => c[key] is JsonNode n && (bool)n;

    private static (long Top, long Bottom, long Left, long Right) ZeroPadding(JsonNode? padding, TfjsStep step) => padding switch
    {
        null => (1, 1, 1, 1),
        JsonArray { Count: 2 } a when a[0] is JsonArray h && a[1] is JsonArray w => ((long)h[0]!, (long)h[1]!, (long)w[0]!, (long)w[1]!),
        JsonArray { Count: 2 } a => ((long)a[0]!, (long)a[0]!, (long)a[1]!, (long)a[1]!),
        JsonValue v => ((long)v, (long)v, (long)v, (long)v),
        _ => throw new InvalidDataException($"ZeroPadding2D '{step.Name}' has an unreadable padding {padding.ToJsonString()}."),
    };
}
