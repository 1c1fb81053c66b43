using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using TransferLearning.Native;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace TransferLearning.Backbones.Tfjs;

/// <summary>
/// A TF.js layers model run by TorchSharp: input <c>[N, C, H, W]</c>; 4-D outputs are NCHW, others in Keras order.
/// One child module per Keras layer with weights, in topological order, named after the layer.
/// </summary>
internal sealed partial class TfjsNetwork : nn.Module<Tensor, Tensor>, IRebuildableModule
{
    private readonly List<(Func<Tensor[], bool, Tensor> Run, int[] Inputs, int Output)> _steps = [];

    // Per step: the Keras layer call and the module holding its weights (null for layers without weights); for export.
    private readonly List<(TfjsStep Step, nn.Module<Tensor, Tensor>? Module)> _layers = [];
    private readonly int _output;
    private readonly bool _globalPoolOutput;
    private readonly int _valueCount;

    // For each step, the values whose last reader it is (freed right after it runs to keep peak memory low).
    private readonly List<int[]> _releaseAfter = [];

    // In-place variants (plain ReLU/ReLU6) used when nothing else reads the input and no gradient is recorded for it.
    private readonly List<Action<Tensor>?> _inPlace = [];

    // Values produced by layers that always return new storage (never a view of another value), so in-place is safe.
    private readonly HashSet<int> _freshValues = [];

    private static readonly HashSet<string> FreshProducers = new(
        ["Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense", "BatchNormalization", "Add", "Subtract", "Multiply", "Average",
         "Maximum", "Minimum", "Concatenate", "ZeroPadding2D", "AveragePooling2D", "MaxPooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D"],
        StringComparer.Ordinal);

    /// <summary>The model.json this network was read from (saved models keep it to rebuild the layers); null when unknown.</summary>
    internal byte[]? ModelJson { get; set; }

    /// <inheritdoc />
    public BackboneArchitecture? Describe(Backbone backbone) =>
        ModelJson is null ? null : TfjsFormat.Describe(ModelJson, _output, _globalPoolOutput, backbone.FeatureSize);

    public TfjsNetwork(TfjsGraph graph, int output, IReadOnlyDictionary<string, TfjsWeight> weights, string source, bool globalPoolOutput = false)
        : base("tfjs")
    {
        _globalPoolOutput = globalPoolOutput;
        _output = output;
        var needed = new HashSet<int> { output };
        var used = new List<TfjsStep>();
        for (var i = graph.Steps.Count - 1; i >= 0; i--)
        {
            var step = graph.Steps[i];
            if (needed.Contains(step.Output))
            {
                used.Add(step);
                needed.UnionWith(step.Inputs);
            }
        }

        used.Reverse();
        var modules = new Dictionary<string, nn.Module<Tensor, Tensor>>(StringComparer.Ordinal);
        var moduleNames = new HashSet<string>(StringComparer.Ordinal);
        foreach (var step in used)
        {
            Func<Tensor[], bool, Tensor> run;
            nn.Module<Tensor, Tensor>? layerModule;
            if (modules.TryGetValue(step.Name, out var shared))
            {
                layerModule = shared;
                run = (x, _) => shared.forward(x[0]);
            }
            else
            {
                var module = TfjsLayerFactory.CreateModule(step, weights, source);
                layerModule = module;
                if (module is not null)
                {
                    modules[step.Name] = module;
                    register_module(UniqueName(Sanitize(step.Name), moduleNames), module);
                    run = (x, _) => module.forward(x[0]);
                }
                else
                {
                    run = TfjsLayerFactory.CreateOp(step, source);
                }
            }

            _steps.Add((run, step.Inputs, step.Output));
            _layers.Add((step, layerModule));
            _inPlace.Add(TfjsLayerFactory.CreateInPlaceOp(step));
            if (FreshProducers.Contains(step.ClassName))
            {
                _freshValues.Add(step.Output);
            }

        }

        _valueCount = graph.Steps.Count == 0 ? 1 : graph.Steps.Max(s => s.Output) + 1;
        var lastUse = new Dictionary<int, int>();
        for (var i = 0; i < _steps.Count; i++)
        {
            foreach (var v in _steps[i].Inputs)
            {
                lastUse[v] = i;
            }
        }

        for (var i = 0; i < _steps.Count; i++)
        {
            _releaseAfter.Add(lastUse.Where(kv => kv.Value == i && kv.Key != 0 && kv.Key != _output).Select(kv => kv.Key).Distinct().ToArray());
        }
    }

    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        var values = new Tensor[_valueCount];
        values[0] = input;
        for (var s = 0; s < _steps.Count; s++)
        {
            var (run, inputs, output) = _steps[s];
            var args = new Tensor[inputs.Length];
            for (var i = 0; i < inputs.Length; i++)
            {
                args[i] = values[inputs[i]];
            }

            Tensor produced;
            if (_inPlace[s] is { } inPlace && _freshValues.Contains(inputs[0]) && _releaseAfter[s].Contains(inputs[0]) && (!is_grad_enabled() || !args[0].requires_grad))
            {
                inPlace(args[0]);
                produced = args[0];
            }
            else
            {
                produced = run(args, training);
            }

            values[output] = produced;
            foreach (var v in _releaseAfter[s])
            {
                if (!ReferenceEquals(values[v], produced))
                {
                    values[v].Dispose();
                }

                values[v] = null!;
            }
        }

        var result = values[_output];
        if (_globalPoolOutput && result.dim() == 4)
        {
            return result.mean([2, 3]).MoveToOuterDisposeScope();
        }

        return ReferenceEquals(result, input) ? input.alias().MoveToOuterDisposeScope() : result.MoveToOuterDisposeScope();
    }

    internal static string Sanitize(string name)
    {
        var sb = new StringBuilder(name.Length);
        foreach (var c in name)
        {
            sb.Append(char.IsAsciiLetterOrDigit(c) || c == '_' ? c : '_');
        }

        return sb.Length == 0 ? "layer" : sb.ToString();
    }

    private static string UniqueName(string name, HashSet<string> taken)
    {
        var candidate = name;
        for (var i = 2; !taken.Add(candidate); i++)
        {
            candidate = name + "_" + i.ToString(CultureInfo.InvariantCulture);
        }

        return candidate;
    }
}

/// <summary>Creates TorchSharp modules (layers with weights) and functions (layers without) from Keras layer configs.</summary>
internal static class TfjsLayerFactory
{
    public static nn.Module<Tensor, Tensor>? CreateModule(TfjsStep step, IReadOnlyDictionary<string, TfjsWeight> weights, string source)
    {
        var c = step.Config;
        var name = step.Name;
        switch (step.ClassName)
        {
            case "Conv2D":
            {
                var kernel = Weight(weights, step, "kernel", source, 4);
                var bias = Bool(c, "use_bias", true) ? Weight(weights, step, "bias", source, 1) : null;
                using var k = tensor(kernel.Values, kernel.Shape);
                return new TfjsConv2d(name, k.permute(3, 2, 0, 1).contiguous(), bias is null ? null : tensor(bias.Values, bias.Shape),
                    Pair(c, "strides", 1), Pair(c, "dilation_rate", 1), Same(c, step, source), Int(c, "groups", 1),
                    TfjsOps.Activation((string?)c["activation"], name, source));
            }

            case "DepthwiseConv2D":
            {
                var kernel = Weight(weights, step, "depthwise_kernel", source, 4);
                var bias = Bool(c, "use_bias", true) ? Weight(weights, step, "bias", source, 1) : null;
                return new TfjsConv2d(name, Depthwise(kernel), bias is null ? null : tensor(bias.Values, bias.Shape),
                    Pair(c, "strides", 1), Pair(c, "dilation_rate", 1), Same(c, step, source), kernel.Shape[2],
                    TfjsOps.Activation((string?)c["activation"], name, source));
            }

            case "SeparableConv2D":
            {
                var depthwise = Weight(weights, step, "depthwise_kernel", source, 4);
                var pointwise = Weight(weights, step, "pointwise_kernel", source, 4);
                var bias = Bool(c, "use_bias", true) ? Weight(weights, step, "bias", source, 1) : null;
                using var p = tensor(pointwise.Values, pointwise.Shape);
                return new TfjsSeparableConv2d(name, Depthwise(depthwise), p.permute(3, 2, 0, 1).contiguous(),
                    bias is null ? null : tensor(bias.Values, bias.Shape), Pair(c, "strides", 1), Pair(c, "dilation_rate", 1),
                    Same(c, step, source), TfjsOps.Activation((string?)c["activation"], name, source));
            }

            case "Dense":
            {
                var kernel = Weight(weights, step, "kernel", source, 2);
                var bias = Bool(c, "use_bias", true) ? Weight(weights, step, "bias", source, 1) : null;
                using var k = tensor(kernel.Values, kernel.Shape);
                return new TfjsDense(name, k.t().contiguous(), bias is null ? null : tensor(bias.Values, bias.Shape),
                    TfjsOps.Activation((string?)c["activation"], name, source));
            }

            case "BatchNormalization":
            {
                var gamma = Bool(c, "scale", true) ? Weight(weights, step, "gamma", source, 1) : null;
                var beta = Bool(c, "center", true) ? Weight(weights, step, "beta", source, 1) : null;
                var mean = Weight(weights, step, "moving_mean", source, 1);
                var variance = Weight(weights, step, "moving_variance", source, 1);
                var axis = c["axis"] is JsonArray a ? (a.Count == 1 ? (long)a[0]! : throw new NotSupportedException($"{source}: BatchNormalization '{name}' normalises several axes; only one channel axis is supported.")) : (long?)c["axis"] ?? -1;
                return new TfjsBatchNorm(name, gamma is null ? null : tensor(gamma.Values), beta is null ? null : tensor(beta.Values),
                    tensor(mean.Values), tensor(variance.Values), Double(c, "epsilon", 1e-3), Double(c, "momentum", 0.99), axis, source);
            }

            default:
                return null;
        }
    }

    /// <summary>An in-place version of a plain ReLU / ReLU6 / clipped ReLU layer, or null.</summary>
    public static Action<Tensor>? CreateInPlaceOp(TfjsStep step)
    {
        var c = step.Config;
        var activation = step.ClassName switch
        {
            "ReLU" when Double(c, "negative_slope", 0) == 0 && Double(c, "threshold", 0) == 0 =>
                c["max_value"] is JsonNode m ? ((double)m == 6 ? "relu6" : null) : "relu",
            "Activation" => ((string?)c["activation"])?.ToUpperInvariant() switch { "RELU" => "relu", "RELU6" => "relu6", _ => null },
            _ => null,
        };
        return activation switch
        {
            "relu" => x => x.relu_(),
            "relu6" => x => x.clamp_(KeptScalars.Zero, KeptScalars.Six),
            _ => null,
        };
    }

    public static Func<Tensor[], bool, Tensor> CreateOp(TfjsStep step, string source)
    {
        var c = step.Config;
        var name = step.Name;
        switch (step.ClassName)
        {
            case "ZeroPadding2D":
            {
                var (top, bottom, left, right) = ZeroPadding(c["padding"], name, source);
                return (x, _) => F.pad(x[0], [left, right, top, bottom]);
            }

            case "ReLU":
            {
                var max = c["max_value"] is JsonNode m ? (double?)(double)m : null;
                var slope = Double(c, "negative_slope", 0);
                var threshold = Double(c, "threshold", 0);
                return (x, _) => TfjsOps.KerasRelu(x[0], max, slope, threshold);
            }

            case "LeakyReLU":
            {
                var alpha = c["alpha"] is null ? Double(c, "negative_slope", 0.3) : Double(c, "alpha", 0.3);
                return (x, _) => F.leaky_relu(x[0], alpha);
            }

            case "Activation":
            {
                var activation = TfjsOps.Activation((string?)c["activation"], name, source);
                return (x, _) => activation(x[0]);
            }

            case "Softmax":
            {
                var axis = c["axis"] is JsonArray a ? (long)a[0]! : (long?)c["axis"] ?? -1;
                return (x, _) => F.softmax(x[0], TfjsOps.MapAxis(axis, x[0].dim()));
            }

            case "Add":
                return (x, _) => Fold(x, (a, b) => a.add(b, KeptScalars.One));
            case "Subtract":
                return (x, _) => x[0] - x[1];
            case "Multiply":
                return (x, _) => Fold(x, (a, b) => a * b);
            case "Maximum":
                return (x, _) => Fold(x, maximum);
            case "Minimum":
                return (x, _) => Fold(x, minimum);
            case "Average":
                return (x, _) =>
                {
                    using var sum = Fold(x, (a, b) => a.add(b, KeptScalars.One));
                    return sum / x.Length;
                };
            case "Concatenate":
            {
                var axis = (long?)c["axis"] ?? -1;
                return (x, _) => cat(x, TfjsOps.MapAxis(axis, x[0].dim()));
            }

            case "GlobalAveragePooling2D":
            {
                var keep = Bool(c, "keepdims", false);
                return (x, _) => x[0].mean([2, 3], keep);
            }

            case "GlobalMaxPooling2D":
            {
                var keep = Bool(c, "keepdims", false);
                return (x, _) => x[0].amax([2, 3], keep);
            }

            case "AveragePooling2D" or "MaxPooling2D":
            {
                var max = step.ClassName == "MaxPooling2D";
                var pool = Pair(c, "pool_size", 2);
                var strides = c["strides"] is null ? pool : Pair(c, "strides", 1);
                var same = Same(c, step, source);
                return (x, _) => TfjsOps.Pool(x[0], max, pool, strides, same);
            }

            case "Flatten":
                return (x, _) =>
                {
                    using var keras = TfjsOps.ToKerasOrder(x[0]);
                    return keras.reshape(keras.shape[0], -1);
                };
            case "Reshape":
            {
                var target = (c["target_shape"] as JsonArray ?? throw new InvalidDataException($"{source}: Reshape '{name}' has no target_shape."))
                    .Select(d => (long)d!).ToArray();
                return (x, _) =>
                {
                    using var keras = TfjsOps.ToKerasOrder(x[0]);
                    using var reshaped = keras.reshape([keras.shape[0], .. target]);
                    return TfjsOps.FromKerasOrder(reshaped);
                };
            }

            case "Dropout" or "SpatialDropout2D":
            {
                var rate = Double(c, "rate", 0.5);
                var spatial = step.ClassName == "SpatialDropout2D";
                return (x, training) => spatial ? F.dropout2d(x[0], rate, training) : F.dropout(x[0], rate, training);
            }

            case "Rescaling":
            {
                var scale = Double(c, "scale", 1);
                var offset = Double(c, "offset", 0);
                return (x, _) => (x[0] * scale) + offset;
            }

            default:
                throw new NotSupportedException($"{source}: layer '{name}' has class '{step.ClassName}', which the TF.js loader does not support.");
        }
    }

    private static Tensor Fold(Tensor[] x, Func<Tensor, Tensor, Tensor> op)
    {
        var acc = op(x[0], x[1]);
        for (var i = 2; i < x.Length; i++)
        {
            var next = op(acc, x[i]);
            acc.Dispose();
            acc = next;
        }

        return acc;
    }

    private static Tensor Depthwise(TfjsWeight kernel)
    {
        // [kh, kw, C, m] -> [C * m, 1, kh, kw]; output channel c * m + j as in TensorFlow.
        using var k = tensor(kernel.Values, kernel.Shape);
        using var p = k.permute(2, 3, 0, 1);
        return p.reshape(kernel.Shape[2] * kernel.Shape[3], 1, kernel.Shape[0], kernel.Shape[1]).contiguous();
    }

    internal static TfjsWeight Weight(IReadOnlyDictionary<string, TfjsWeight> weights, TfjsStep step, string weightName, string source, int rank)
    {
        var key = step.Name + "/" + weightName;
        if (!weights.TryGetValue(key, out var w))
        {
            var suffix = "/" + key;
            var matches = weights.Keys.Where(k => k.EndsWith(suffix, StringComparison.Ordinal)).ToList();
            if (matches.Count != 1)
            {
                throw new InvalidDataException(
                    $"{source}: layer '{step.Name}' ({step.ClassName}) needs the weight '{key}', but the weightsManifest has {(matches.Count == 0 ? "no such entry" : "several: " + string.Join(", ", matches))}.");
            }

            w = weights[matches[0]];
        }

        if (w.Shape.Length != rank)
        {
            throw new InvalidDataException($"{source}: weight '{w.Name}' of layer '{step.Name}' has shape [{string.Join(", ", w.Shape)}]; expected rank {rank}.");
        }

        return w;
    }

    private static bool Same(JsonObject c, TfjsStep step, string source)
    {
        var padding = (string?)c["padding"] ?? "valid";
        return padding switch
        {
            "same" => true,
            "valid" => false,
            _ => throw new NotSupportedException($"{source}: layer '{step.Name}' ({step.ClassName}) uses padding '{padding}'; only 'same' and 'valid' are supported."),
        };
    }

    private static long[] Pair(JsonObject c, string key, long fallback) => c[key] switch
    {
        null => [fallback, fallback],
        JsonArray a when a.Count == 2 => [(long)a[0]!, (long)a[1]!],
        JsonArray a when a.Count == 1 => [(long)a[0]!, (long)a[0]!],
        JsonNode n => [(long)n, (long)n],
    };

    private static bool Bool(JsonObject c, string key, bool fallback) => c[key] is JsonNode n ? (bool)n : fallback;

    private static long Int(JsonObject c, string key, long fallback) => c[key] is JsonNode n ? (long)n : fallback;

    private static double Double(JsonObject c, string key, double fallback) => c[key] is JsonNode n ? (double)n : fallback;

    private static (long Top, long Bottom, long Left, long Right) ZeroPadding(JsonNode? padding, string name, string source)
    {
        switch (padding)
        {
            case null:
                return (1, 1, 1, 1);
            case JsonArray { Count: 2 } a when a[0] is JsonArray h && a[1] is JsonArray w:
                return ((long)h[0]!, (long)h[1]!, (long)w[0]!, (long)w[1]!);
            case JsonArray { Count: 2 } a:
                return ((long)a[0]!, (long)a[0]!, (long)a[1]!, (long)a[1]!);
            case JsonValue v:
                return ((long)v, (long)v, (long)v, (long)v);
            default:
                throw new InvalidDataException($"{source}: ZeroPadding2D '{name}' has an unreadable padding {padding.ToJsonString()}.");
        }
    }
}
