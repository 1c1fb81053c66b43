using Onnx;
using TorchSharp;
using static TorchSharp.torch;

namespace TransferLearning.Backbones.Onnx;

/// <summary>
/// Int8 inference for a frozen graph through PyTorch's x86 quantized kernels. On quantized tensors: Conv (grouped and
/// depthwise included, any explicit pads, with a following BatchNormalization folded in and a following Relu or
/// Clip(0, max) — ReLU6 — fused), Add (+Relu), HardSwish, Relu, MaxPool and zero Pad. Every other operator (Sigmoid, Mul,
/// HardSigmoid, pooling to 1×1, …) runs in float on dequantized inputs, and a Conv whose input is 1×1 (squeeze-excitation)
/// stays in float. Weights are quantized per output channel (symmetric int8); activations per tensor (unsigned, 8-bit
/// or 7-bit range as <see cref="Int8Kernels"/> says for the convolution reading them), from ranges observed on
/// calibration images.
/// </summary>
internal sealed partial class OnnxGraphModule : IInt8Module
{
    private Dictionary<string, (double Min, double Max)>? _observer;
    private Dictionary<string, (float[] Min, float[] Max)>? _channelRanges;

    // A float forward pass while int8 is enabled (the reference when choosing the convolutions kept in float).
    private bool _floatPass;
    private HashSet<string>? _observed;
    private HashSet<string>? _unquantizable;
    private Int8State? _int8;
    private Int8Lowering? _lowering;

    private enum Fused
    {
        None,
        Relu,
        Clip,
    }

    /// <summary>A Conv that can run in int8: its input, its last output (after folded BN and fused activation) and how many steps it absorbs.</summary>
    private sealed record ConvLowering(string Input, string Output, int Absorbed, Fused Activation, long[] Begin, long[] End, long Group);

    /// <summary>An Add of two values that can run in int8, with a Relu after it fused when it alone reads the sum.</summary>
    private sealed record AddLowering(string Output, bool Relu);

    /// <summary>
    /// The graph's input reordered by channel (a Split on axis 1 into single channels, then a Concat of them in another
    /// order), minus a constant (Sub), read only by one int8 Conv: ML.NET's ResNet18 preprocessing (RGB to BGR, minus a
    /// mean image). In int8 the reordering is not run: the constant and the Conv's input channels are reordered once
    /// instead, so the input is shifted and quantized in place of three copies.
    /// </summary>
    /// <param name="Split">Step of the Split (the Concat and the Sub follow it).</param>
    /// <param name="Conv">Step of the Conv reading the Sub's output.</param>
    /// <param name="Inverse">Concat channel read by each input channel: input channel j is the Sub's channel Inverse[j].</param>
    /// <param name="Offset">Name of the value subtracted (a constant, or a weight: int8 runs on frozen weights).</param>
    private sealed record InputStem(int Split, int Conv, long[] Inverse, string Offset);

    /// <summary>What of the graph can run in int8 (fixed by the graph; found once).</summary>
    private sealed class Int8Lowering
    {
        public Dictionary<int, ConvLowering> Convs { get; } = [];

        public Dictionary<int, AddLowering> Adds { get; } = [];

        /// <summary>Pad steps that pad H and W with zeros (run on quantized tensors): left, right, top, bottom.</summary>
        public Dictionary<int, long[]> ZeroPads { get; } = [];

        /// <summary>The channel reordering and shift of the input before the first Conv, when the graph has one.</summary>
        public InputStem? Stem { get; set; }

        /// <summary>The values whose scales int8 execution needs.</summary>
        public HashSet<string> Values { get; } = new(StringComparer.Ordinal);

        /// <summary>
        /// Values that one int8 Conv writes and only one int8 Conv reads (directly or through a zero Pad), with a Relu,
        /// Clip(0, max) or nothing between: their channels can be rescaled (see <see cref="Int8Parameters.ChannelScales"/>).
        /// </summary>
        public Dictionary<string, (int Producer, int Reader)> Chains { get; } = new(StringComparer.Ordinal);

        /// <summary>Value → the most groups of a Conv reading it (directly or through Relu, MaxPool or Pad, which keep its scale).</summary>
        public Dictionary<string, long> ConvGroups { get; } = new(StringComparer.Ordinal);

        /// <summary>The levels a value may use here: the full range only when every Conv reading it takes it without saturating.</summary>
        public int Levels(string value) =>
            Int8Kernels.ActivationLevels == Int8Kernels.EightBit && ConvGroups.TryGetValue(value, out var groups)
                ? Int8Kernels.InputLevels(groups)
                : Int8Kernels.ActivationLevels;
    }

    /// <summary>A Conv packed for int8: its index in the TorchScript module and the geometry of its padding.</summary>
    /// <param name="Index">Index of the packed weights.</param>
    /// <param name="Kernel">Kernel size (H, W).</param>
    /// <param name="Strides">Strides (H, W).</param>
    /// <param name="Dilations">Dilations (H, W).</param>
    /// <param name="Begin">ONNX pads at the start (H, W).</param>
    /// <param name="End">ONNX pads at the end (H, W).</param>
    /// <param name="ExplicitPad">Zero padding applied to the quantized input first (left, right, top, bottom), or null.</param>
    private sealed record PackedConv(long Index, long[] Kernel, long[] Strides, long[] Dilations, long[] Begin, long[] End, long[]? ExplicitPad);

    private sealed class Int8State(jit.ScriptModule ops, Dictionary<int, PackedConv> packed, Int8Parameters parameters, Int8Parameters source, Tensor? stemOffset) : IDisposable
    {
        public jit.ScriptModule Ops { get; } = ops;

        /// <summary>The parameters this state was enabled with, as passed in (before moving them to this CPU's levels).</summary>
        public Int8Parameters Source { get; } = source;

        /// <summary>The <see cref="InputStem"/>'s constant in input channel order and channels-last, when the stem runs reordered.</summary>
        public Tensor? StemOffset { get; } = stemOffset;

        /// <summary>Conv step index → its packed int8 weights in <see cref="Ops"/>.</summary>
        public Dictionary<int, PackedConv> Packed { get; } = packed;

        public Int8Parameters Parameters { get; } = parameters;

        public IReadOnlyDictionary<string, ActivationQuantization> Activations => Parameters.Activations;

        public void Dispose()
        {
            Ops.Dispose();
            StemOffset?.Dispose();
        }
    }

    /// <summary>The int8 parameters in use, or null when the graph runs in float.</summary>
    public Int8Parameters? Int8Parameters => _int8?.Parameters;

    /// <summary>Number of Conv nodes that run in int8 (0 when int8 is off).</summary>
    internal int Int8ConvCount => _int8?.Packed.Count ?? 0;

    /// <summary>Whether int8 runs the <see cref="InputStem"/> without its channel reordering (false when the graph has none, or int8 is off).</summary>
    internal bool Int8StemReordered => _int8?.StemOffset is not null;

    /// <summary>Number of Conv nodes in the graph.</summary>
    internal int ConvCount => _steps.Count(s => s.Node.OpType == "Conv");

    private Int8Lowering Lowering => _lowering ??= FindInt8Lowering();

    /// <summary>
    /// Runs the float graph (eval mode, no grad) on the batches and derives each value's 8-bit scale and zero point from
    /// the range it took (widened to include 0), in the levels <see cref="Int8Kernels"/> allows for its readers.
    /// </summary>
    public Int8Parameters Calibrate(IEnumerable<Tensor> batches, Func<Tensor, Tensor>? prepare = null)
    {
        if (_int8 is not null)
        {
            throw new InvalidOperationException("The graph already runs in int8; calibrate before enabling it.");
        }

        var lowering = Lowering;
        if (lowering.Convs.Count == 0 && lowering.Adds.Count == 0)
        {
            throw new NotSupportedException("The graph has no Conv or Add node that int8 can run (2-D kernels, explicit pads), so int8 would change nothing.");
        }

        var ranges = new Dictionary<string, (double Min, double Max)>();
        var unquantizable = new HashSet<string>(StringComparer.Ordinal);
        var seen = 0;
        var kept = new List<Tensor>();
        _observed = lowering.Values;
        _unquantizable = unquantizable;
        _observer = ranges;
        var channelRanges = new Dictionary<string, (float[] Min, float[] Max)>(StringComparer.Ordinal);
        _channelRanges = channelRanges;
        try
        {
            using var noGrad = torch.no_grad();
            foreach (var batch in batches)
            {
                seen++;
                using var scope = torch.NewDisposeScope();
                var prepared = prepare is null ? batch : prepare(batch);
                var have = kept.Sum(t => t.shape[0]);
                if (have < SensitivityImages && prepared.dim() == 4 && prepared.shape[0] > 0)
                {
                    kept.Add(prepared.narrow(0, 0, Math.Min(prepared.shape[0], SensitivityImages - have)).clone().DetachFromDisposeScope());
                }

                _ = forward(prepared);
            }
        }
        finally
        {
            _observer = null;
            _observed = null;
            _unquantizable = null;
            _channelRanges = null;
        }

        try
        {
            if (seen == 0)
            {
                throw new ArgumentException("Calibration needs at least one batch of images.", nameof(batches));
            }

            var activations = ranges.Where(kv => !unquantizable.Contains(kv.Key)).ToDictionary(
                kv => kv.Key,
                kv => Quantization(kv.Value.Min, kv.Value.Max, lowering.Levels(kv.Key)),
                StringComparer.Ordinal);
            var parameters = new Int8Parameters(activations, ChannelScales(lowering, activations, channelRanges), new HashSet<string>(StringComparer.Ordinal));
            if (kept.Count == 0)
            {
                return parameters;
            }

            using var images = torch.cat(kept.ToArray());
            return KeepSensitiveConvsInFloat(parameters, images);
        }
        finally
        {
            foreach (var t in kept)
            {
                t.Dispose();
            }
        }
    }

    private Int8Lowering FindInt8Lowering()
    {
        var lowering = new Int8Lowering();
        var readers = new Dictionary<string, int>(StringComparer.Ordinal);
        var producer = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var s = 0; s < _steps.Count; s++)
        {
            foreach (var name in _steps[s].Node.Input)
            {
                readers[name] = readers.GetValueOrDefault(name) + 1;
            }

            foreach (var name in _steps[s].Node.Output)
            {
                producer[name] = s;
            }
        }

        for (var s = 0; s < _steps.Count; s++)
        {
            var node = _steps[s].Node;
            switch (node.OpType)
            {
                case "Conv" when node.Input.Count >= 2 && (_weights.ContainsKey(node.Input[1]) || _constants.ContainsKey(node.Input[1]))
                    && Int8Pads(node, out var begin, out var end):
                {
                    var absorbed = _foldsWithNext[s] ? 1 : 0;
                    var output = _steps[s + absorbed].Node.Output[0];
                    var activation = FusedActivation(s + absorbed + 1, output, readers);
                    if (activation != Fused.None)
                    {
                        absorbed++;
                        output = _steps[s + absorbed].Node.Output[0];
                    }

                    var group = node.Int("group", 1);
                    lowering.Convs[s] = new ConvLowering(node.Input[0], output, absorbed, activation, begin, end, group);
                    lowering.Values.Add(node.Input[0]);
                    lowering.Values.Add(output);
                    for (var value = node.Input[0]; ; value = _steps[producer[value]].Node.Input[0])
                    {
                        lowering.ConvGroups[value] = Math.Max(group, lowering.ConvGroups.GetValueOrDefault(value));
                        if (!producer.TryGetValue(value, out var p) || _steps[p].Node.OpType is not ("Relu" or "MaxPool" or "Pad"))
                        {
                            break;
                        }
                    }

                    break;
                }

                case "Add" when node.Input.Count == 2 && node.Input[0] != node.Input[1]:
                {
                    var relu = FusedActivation(s + 1, node.Output[0], readers) == Fused.Relu;
                    var output = relu ? _steps[s + 1].Node.Output[0] : node.Output[0];
                    lowering.Adds[s] = new AddLowering(output, relu);
                    lowering.Values.UnionWith(node.Input);
                    lowering.Values.Add(output);
                    break;
                }

                case "HardSwish":
                    lowering.Values.Add(node.Output[0]);
                    break;

                case "Pad" when ZeroSpatialPad(node) is { } pads:
                    lowering.ZeroPads[s] = pads;
                    break;
            }
        }

        var readerOf = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var s = 0; s < _steps.Count; s++)
        {
            foreach (var name in _steps[s].Node.Input)
            {
                readerOf[name] = s;
            }
        }

        foreach (var (producerStep, conv) in lowering.Convs)
        {
            var value = conv.Output;
            if (value == _output || readers.GetValueOrDefault(value) != 1 || !readerOf.TryGetValue(value, out var reader))
            {
                continue;
            }

            if (lowering.ZeroPads.ContainsKey(reader))
            {
                var padded = _steps[reader].Node.Output[0];
                if (padded == _output || readers.GetValueOrDefault(padded) != 1 || !readerOf.TryGetValue(padded, out reader))
                {
                    continue;
                }
            }

            if (lowering.Convs.ContainsKey(reader))
            {
                lowering.Chains[value] = (producerStep, reader);
            }
        }

        lowering.Stem = FindInputStem(lowering, readers);
        return lowering;
    }

    /// <summary>The <see cref="InputStem"/> at the graph's start, when its steps are exactly that pattern; else null.</summary>
    private InputStem? FindInputStem(Int8Lowering lowering, Dictionary<string, int> readers)
    {
        var s = _steps.FindIndex(step => step.Node.Input.Contains(_input));
        if (s < 0 || s + 3 >= _steps.Count || readers.GetValueOrDefault(_input) != 1)
        {
            return null;
        }

        var (split, concat, sub) = (_steps[s].Node, _steps[s + 1].Node, _steps[s + 2].Node);
        static bool ChannelAxis(NodeProto node) => node.Int("axis", 0) is 1 or -3;
        if (split.OpType != "Split" || !ChannelAxis(split) || split.Input[0] != _input || split.Output.Count != 3
            || SplitSizes(split) is not [1, 1, 1] || split.Output.Any(o => readers.GetValueOrDefault(o) != 1)
            || concat.OpType != "Concat" || !ChannelAxis(concat) || concat.Input.Count != 3 || concat.Output.Count != 1
            || readers.GetValueOrDefault(concat.Output[0]) != 1
            || sub.OpType != "Sub" || sub.Input.Count != 2 || sub.Input[0] != concat.Output[0] || sub.Output.Count != 1
            || !(_constants.TryGetValue(sub.Input[1], out var offset) || _weights.TryGetValue(sub.Input[1], out offset)) || readers.GetValueOrDefault(sub.Output[0]) != 1
            || !lowering.Convs.TryGetValue(s + 3, out var conv) || conv.Input != sub.Output[0] || conv.Group != 1)
        {
            return null;
        }

        // The Concat's k-th channel is input channel order[k]; the offset must hold one value set per channel.
        var order = concat.Input.Select(name => (long)split.Output.IndexOf(name)).ToArray();
        if (order.Any(o => o < 0) || order.Distinct().Count() != 3 || OffsetChannels(offset) != 3)
        {
            return null;
        }

        var inverse = new long[3];
        for (var k = 0; k < 3; k++)
        {
            inverse[order[k]] = k;
        }

        return new InputStem(s, s + 3, inverse, sub.Input[1]);
    }

    /// <summary>The sizes a Split node cuts into when they are fixed (attribute or constant input), or [1, 1, 1] for an even split of a 3-channel input.</summary>
    private long[]? SplitSizes(NodeProto split)
    {
        if (Opset < 13)
        {
            return split.Ints("split") ?? (InputChannels() == 3 ? [1, 1, 1] : null);
        }

        if (split.Input.Count < 2 || split.Input[1].Length == 0)
        {
            return InputChannels() == 3 ? [1, 1, 1] : null;
        }

        return _constants.TryGetValue(split.Input[1], out var sizes) ? Longs(sizes) : null;
    }

    /// <summary>The channel count of the graph's declared input (dimension 1 of 4), or -1 when not declared.</summary>
    private long InputChannels() => InputShape is [_, > 0 and var channels, _, _] ? channels : -1;

    /// <summary>How many channels a constant subtracted from an [N, C, H, W] value varies over: C for [1, C, H, W] or [C, H, W] shapes, else -1.</summary>
    private static long OffsetChannels(Tensor offset) => offset.dim() switch
    {
        4 when offset.shape[0] == 1 => offset.shape[1],
        3 => offset.shape[0],
        _ => -1,
    };

    /// <summary>Relu, or Clip(0, max &gt; 0), at step <paramref name="next"/> reading <paramref name="value"/>, which nothing else reads.</summary>
    private Fused FusedActivation(int next, string value, Dictionary<string, int> readers)
    {
        if (next >= _steps.Count || value == _output || readers.GetValueOrDefault(value) != 1)
        {
            return Fused.None;
        }

        var node = _steps[next].Node;
        if (node.Input.Count == 0 || node.Input[0] != value || node.Output.Count != 1)
        {
            return Fused.None;
        }

        return node.OpType switch
        {
            "Relu" => Fused.Relu,
            "Clip" when ClipBounds(node) is (0f, > 0f) => Fused.Clip,
            _ => Fused.None,
        };
    }

    /// <summary>A Clip node's bounds when they are fixed (attributes, or constant inputs); null when computed in the graph.</summary>
    private (float Min, float Max)? ClipBounds(NodeProto node)
    {
        if (Opset < 11)
        {
            return (node.Float("min", float.NegativeInfinity), node.Float("max", float.PositiveInfinity));
        }

        float? Bound(int i, float absent) =>
            i >= node.Input.Count || node.Input[i].Length == 0 ? absent
            : _constants.TryGetValue(node.Input[i], out var t) && t.numel() == 1 ? Scalar(t)
            : null;
        return Bound(1, float.NegativeInfinity) is { } min && Bound(2, float.PositiveInfinity) is { } max ? (min, max) : null;
    }

    /// <summary>A constant-mode Pad with value 0 that pads only H and W (by ≥ 0): its left, right, top, bottom; else null.</summary>
    private long[]? ZeroSpatialPad(NodeProto node)
    {
        if (node.Str("mode", "constant") != "constant")
        {
            return null;
        }

        long[]? pads;
        if (Opset < 11)
        {
            pads = node.Float("value", 0f) == 0f ? node.Ints("pads") ?? node.Ints("paddings") : null;
        }
        else
        {
            var fixedInputs = node.Input.Count >= 2 && node.Input.Count <= 3 && _constants.ContainsKey(node.Input[1])
                && (node.Input.Count == 2 || node.Input[2].Length == 0 || (_constants.TryGetValue(node.Input[2], out var v) && v.numel() == 1 && Scalar(v) == 0f));
            pads = fixedInputs ? Longs(_constants[node.Input[1]]) : null;
        }

        if (pads is not { Length: 8 } p || p[0] != 0 || p[1] != 0 || p[4] != 0 || p[5] != 0 || p.Any(v => v < 0))
        {
            return null;
        }

        return [p[3], p[7], p[2], p[6]];
    }

    private static ActivationQuantization Quantization(double min, double max, int levels)
    {
        min = Math.Min(min, 0);
        max = Math.Max(max, 0);
        var scale = (max - min) / levels;
        if (!(scale > 1e-12) || !double.IsFinite(scale))
        {
            return new ActivationQuantization(1e-6, 0, levels);
        }

        var zeroPoint = (long)Math.Clamp(Math.Round(-min / scale), 0, levels);
        return new ActivationQuantization(scale, zeroPoint, levels);
    }

    private void Observe(string name, Tensor value)
    {
        _valueProbe?.Invoke(name, value);
        if (_observer is null || _observed?.Contains(name) != true)
        {
            return;
        }

        if (value.dtype != ScalarType.Float32 || value.dim() != 4 || value.shape[2] * value.shape[3] <= 1 || value.numel() == 0)
        {
            _unquantizable?.Add(name); // int8 takes 4-D float maps; 1×1 ones (squeeze-excitation) stay float
            return;
        }

        using var scope = torch.NewDisposeScope();
        var (low, high) = torch.aminmax(value);
        var (min, max) = ((double)low.item<float>(), (double)high.item<float>());
        _observer[name] = _observer.TryGetValue(name, out var seen) ? (Math.Min(seen.Min, min), Math.Max(seen.Max, max)) : (min, max);
        if (_channelRanges is not null && Lowering.Chains.ContainsKey(name))
        {
            var (lows, highs) = (value.amin([0, 2, 3]).data<float>().ToArray(), value.amax([0, 2, 3]).data<float>().ToArray());
            if (_channelRanges.TryGetValue(name, out var known))
            {
                for (var c = 0; c < lows.Length; c++)
                {
                    (lows[c], highs[c]) = (Math.Min(lows[c], known.Min[c]), Math.Max(highs[c], known.Max[c]));
                }
            }

            _channelRanges[name] = (lows, highs);
        }
    }

    /// <summary>Largest factor a channel is scaled by (a nearly dead channel would otherwise vanish from the reader's weights).</summary>
    private const float MaxChannelScale = 64f;

    /// <summary>
    /// Per chain (see <see cref="Int8Lowering.Chains"/>): how much to scale each channel so that its observed range fills
    /// the value's quantized range (cross-layer equalisation, Nagel et al. 2019, with activation ranges). A depthwise
    /// reader takes any factor without loss (its weights are quantized per channel); a dense reader shares one weight
    /// scale among its input channels, so the factor is the geometric mean of filling the range and keeping the reader's
    /// weights for that channel as large as its largest ones.
    /// </summary>
    private Dictionary<string, float[]> ChannelScales(Int8Lowering lowering, Dictionary<string, ActivationQuantization> activations, Dictionary<string, (float[] Min, float[] Max)> ranges)
    {
        var scales = new Dictionary<string, float[]>(StringComparer.Ordinal);
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        foreach (var (value, (producer, reader)) in lowering.Chains)
        {
            if (!ranges.TryGetValue(value, out var range) || !activations.TryGetValue(value, out var q)
                || !Packable(lowering, activations, producer) || !Packable(lowering, activations, reader))
            {
                continue;
            }

            var (low, high) = (-q.ZeroPoint * q.Scale, (q.Levels - q.ZeroPoint) * q.Scale);
            var node = _steps[reader].Node;
            var weight = _weights.TryGetValue(node.Input[1], out var w) ? w : _constants[node.Input[1]];
            var channels = range.Max.Length;
            var perGroup = weight.shape[1];
            if (weight.dim() != 4 || channels != perGroup * lowering.Convs[reader].Group)
            {
                continue;
            }

            // Reader weights by input channel, relative to the largest weight of the same output channel (the one that sets its scale).
            var magnitude = weight.abs().amax([2, 3]); // [out, in/groups]
            var relative = (magnitude / magnitude.amax([1], keepdim: true).clamp_min(1e-12)).reshape(lowering.Convs[reader].Group, -1, perGroup).amax([1]).reshape(-1);
            var share = relative.data<float>().ToArray();
            var factors = new float[channels];
            for (var c = 0; c < channels; c++)
            {
                var fill = Math.Min(range.Max[c] > 0 ? high / range.Max[c] : double.PositiveInfinity, range.Min[c] < 0 ? low / range.Min[c] : double.PositiveInfinity);
                fill = double.IsFinite(fill) ? Math.Min(fill, MaxChannelScale) : 1;
                var factor = perGroup == 1 ? fill : Math.Sqrt(fill * share[c]);
                factors[c] = (float)Math.Clamp(factor, 1, Math.Max(1, fill));
            }

            if (factors.Any(f => f > 1.01f))
            {
                scales[value] = factors;
            }
        }

        return scales;
    }

    /// <summary>Whether the Conv at <paramref name="step"/> gets packed with these activations (its input and output have scales).</summary>
    private static bool Packable(Int8Lowering lowering, Dictionary<string, ActivationQuantization> activations, int step, IReadOnlySet<string>? floatConvs = null) =>
        lowering.Convs.TryGetValue(step, out var conv) && activations.ContainsKey(conv.Input) && activations.ContainsKey(conv.Output)
        && floatConvs?.Contains(conv.Output) != true;

    /// <summary>
    /// Switches eval-mode forward passes to int8 with the given activation parameters (from <see cref="Calibrate"/>, or
    /// a saved model; each moved to the levels this CPU's kernels take). The weights must not change while it is on
    /// (freeze first); <see cref="DisableInt8"/> goes back.
    /// </summary>
    public void EnableInt8(Int8Parameters parameters)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (ReferenceEquals(_int8?.Source, parameters))
        {
            return; // enabled with these already (the last check of KeepSensitiveConvsInFloat)
        }

        DisableInt8();
        var activations = parameters.Activations;
        var lowering = Lowering;
        if (activations.Count > 0 && !activations.Keys.Any(lowering.Values.Contains))
        {
            throw new InvalidDataException(
                $"None of the {activations.Count} int8 activation scales names a value this graph runs in int8 (e.g. '{activations.Keys.First()}'): they were calibrated for another network.");
        }

        var moved = activations.ToDictionary(kv => kv.Key, kv => kv.Value.WithLevels(lowering.Levels(kv.Key)), StringComparer.Ordinal);

        // Channel scales apply only where both convolutions of the chain run in int8 (else the float one would not compensate).
        var producerScales = new Dictionary<int, float[]>();
        var readerScales = new Dictionary<int, float[]>();
        foreach (var (value, factors) in parameters.ChannelScales)
        {
            if (lowering.Chains.TryGetValue(value, out var chain) && Packable(lowering, moved, chain.Producer, parameters.FloatConvs)
                && Packable(lowering, moved, chain.Reader, parameters.FloatConvs))
            {
                producerScales[chain.Producer] = factors;
                readerScales[chain.Reader] = factors;
            }
        }

        var values = new Dictionary<string, Tensor>(_constants);
        foreach (var (k, v) in _weights)
        {
            values[k] = v;
        }

        var ops = LoadInt8Ops();
        var packed = new Dictionary<int, PackedConv>();
        try
        {
            using var noGrad = torch.no_grad();
            foreach (var (s, conv) in lowering.Convs)
            {
                var node = _steps[s].Node;
                if (!Packable(lowering, moved, s, parameters.FloatConvs))
                {
                    continue;
                }

                using var scope = torch.NewDisposeScope();
                var (folded, foldedBias) = _foldsWithNext[s]
                    ? FoldConvBatchNorm(s, values)
                    : (values[node.Input[1]].detach(), node.Input.Count > 2 && node.Input[2].Length > 0 ? values[node.Input[2]].detach() : torch.zeros(values[node.Input[1]].shape[0]));
                using var weight = folded; // the folded pair is detached from the scope; packing copies what it needs
                using var bias = foldedBias;
                if (folded.dim() != 4)
                {
                    continue;
                }

                var (w, b) = (folded, foldedBias);
                if (producerScales.TryGetValue(s, out var up) && up.Length == w.shape[0])
                {
                    var factor = torch.tensor(up);
                    (w, b) = (w * factor.reshape(-1, 1, 1, 1), b * factor);
                }

                if (lowering.Stem is { } stem && stem.Conv == s)
                {
                    w = w.index_select(1, torch.tensor(stem.Inverse)); // input channels in the graph input's order
                }

                if (readerScales.TryGetValue(s, out var down) && down.Length == w.shape[1] * conv.Group)
                {
                    var factor = torch.tensor(down).reshape(conv.Group, 1, -1, 1, 1);
                    w = (w.reshape(conv.Group, -1, w.shape[1], w.shape[2], w.shape[3]) / factor).reshape(w.shape);
                }

                var (begin, end) = (conv.Begin, conv.End);
                var cut = !begin.SequenceEqual(end) && begin.Zip(end).All(p => p.First >= p.Second); // see SymmetricCover
                long[] pad = begin.SequenceEqual(end) || cut ? begin : [Math.Min(begin[0], end[0]), Math.Min(begin[1], end[1])];
                long[]? explicitPad = begin.SequenceEqual(end) || cut ? null : [begin[1] - pad[1], end[1] - pad[1], begin[0] - pad[0], end[0] - pad[0]];
                var wScale = (w.abs().amax([1, 2, 3]) / 127.0).clamp_min(1e-8);
                var strides = node.Ints("strides") ?? [1, 1];
                var dilations = node.Ints("dilations") ?? [1, 1];
                var index = Invoke<Scalar>(ops, "add_conv", w.contiguous(), b.contiguous(), wScale, strides[0], strides[1], pad[0], pad[1], dilations[0], dilations[1], conv.Group).ToInt64();
                packed[s] = new PackedConv(index, [w.shape[2], w.shape[3]], strides, dilations, begin, end, explicitPad);
            }
        }
        catch
        {
            ops.Dispose();
            throw;
        }

        Tensor? stemOffset = null;
        if (lowering.Stem is { } inputStem && packed.ContainsKey(inputStem.Conv))
        {
            using var scope = torch.NewDisposeScope();
            var offset = values[inputStem.Offset].detach(); // a constant, or a frozen weight
            var channels = offset.dim() == 3 ? offset.unsqueeze(0) : offset;
            stemOffset = channels.index_select(1, torch.tensor(inputStem.Inverse)).permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2).DetachFromDisposeScope();
        }

        _int8 = new Int8State(ops, packed, new Int8Parameters(moved, parameters.ChannelScales, parameters.FloatConvs), parameters, stemOffset);
    }

    /// <summary>Back to float forward passes.</summary>
    public void DisableInt8()
    {
        _int8?.Dispose();
        _int8 = null;
    }

    /// <summary>
    /// Calls a method of the int8 TorchScript module. TorchSharp 0.107's <c>ScriptModule.invoke</c> turns long and double
    /// arguments into temporary Scalars and passes their handles on without keeping the Scalars alive, so a garbage
    /// collection during the call can free them (seen once in a long featurizing run as "Expected false to be true" from
    /// <c>c10::Scalar::toLong</c>). Here they go in as Scalars owned by this call and alive until it returns.
    /// </summary>
    private static T Invoke<T>(jit.ScriptModule ops, string method, params object[] args)
    {
        var owned = new List<Scalar>(args.Length);
        try
        {
            for (var i = 0; i < args.Length; i++)
            {
                Scalar? scalar = args[i] switch
                {
                    long l => l,
                    double d => d,
                    _ => null,
                };
                if (scalar is not null)
                {
                    owned.Add(scalar);
                    args[i] = scalar;
                }
            }

            var result = ops.invoke<T>(method, args);
            GC.KeepAlive(args);
            GC.KeepAlive(owned);
            return result;
        }
        finally
        {
            foreach (var scalar in owned)
            {
                scalar.Dispose();
            }
        }
    }

    private static jit.ScriptModule LoadInt8Ops()
    {
        using var stream = typeof(OnnxGraphModule).Assembly.GetManifestResourceStream("TransferLearning.Int8Ops.pt")
            ?? throw new InvalidOperationException("The Int8Ops.pt resource is missing from TransferLearning.Core.");
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return torch.jit.load(copy.ToArray());
    }

    /// <summary>The node's explicit pads (begin, end per spatial dim; zero for VALID) when int8 can run it: 2-D kernel, no auto_pad SAME.</summary>
    private static bool Int8Pads(NodeProto node, out long[] begin, out long[] end)
    {
        begin = [0, 0];
        end = [0, 0];
        var autoPad = node.Str("auto_pad", "NOTSET");
        if (autoPad is "SAME_UPPER" or "SAME_LOWER" || (node.Ints("kernel_shape") ?? [0, 0]).Length != 2)
        {
            return false;
        }

        if (autoPad == "VALID" || node.Ints("pads") is not { Length: 4 } p)
        {
            return true;
        }

        begin = [p[0], p[1]];
        end = [p[2], p[3]];
        return p.All(v => v >= 0);
    }

    private Tensor ForwardInt8(Tensor input)
    {
        var state = _int8!;
        var lowering = Lowering;
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var values = new Dictionary<string, Tensor>(_constants) { [_input] = input };
        foreach (var (k, v) in _weights)
        {
            values[k] = v;
        }

        var quantized = new Dictionary<string, Tensor>();
        Tensor Float(string name) => values.TryGetValue(name, out var f) ? f
            : quantized.TryGetValue(name, out var q) ? values[name] = q.dequantize()
            : throw new InvalidOperationException($"ONNX value '{name}' was never produced.");
        Tensor? Quantized(string name)
        {
            if (quantized.TryGetValue(name, out var q))
            {
                return q;
            }

            if (!state.Activations.TryGetValue(name, out var p) || !values.TryGetValue(name, out var f) || f.dtype != ScalarType.Float32 || f.dim() != 4)
            {
                return null;
            }

            return quantized[name] = Invoke<Tensor>(state.Ops, "quantize", f, p.Scale, p.ZeroPoint);
        }

        // Frees the values whose last reader is among steps from..to (intermediates only; weights and constants stay).
        void Release(int from, int to)
        {
            for (var k = from; k <= to; k++)
            {
                foreach (var name in _steps[k].Release)
                {
                    if (values.Remove(name, out var f))
                    {
                        f.Dispose();
                    }

                    if (quantized.Remove(name, out var q))
                    {
                        q.Dispose();
                    }
                }
            }
        }

        Tensor? result = null;
        for (var s = 0; s < _steps.Count && result is null; s++)
        {
            var step = _steps[s];
            var node = step.Node;
            var first = s;
            if (state.StemOffset is { } stemOffset && lowering.Stem is { } stem && s == stem.Split && input.dtype == ScalarType.Float32 && input.dim() == 4
                && state.Activations.TryGetValue(lowering.Convs[stem.Conv].Input, out var sp))
            {
                // The channel reordering is in the first Conv's weights and the offset: shift, quantize, go on at the Conv.
                using var shifted = input - stemOffset;
                quantized[lowering.Convs[stem.Conv].Input] = Invoke<Tensor>(state.Ops, "quantize", shifted, sp.Scale, sp.ZeroPoint);
                s = stem.Conv - 1;
                Release(first, s);
                continue;
            }

            if (state.Packed.ContainsKey(s) && lowering.Convs[s] is var conv && Quantized(conv.Input) is { } qx)
            {
                var y = RunPackedConv(state, s, qx);
                quantized[conv.Output] = y;
                s += conv.Absorbed;
                result = conv.Output == _output ? y.dequantize() : null;
                Release(first, s);
                continue;
            }

            // A residual addition runs in int8 when at least one summand already is int8: between convolutions kept in
            // float it stays in float (quantizing it there would add rounding that no int8 convolution saves time for).
            if (lowering.Adds.TryGetValue(s, out var add) && state.Activations.TryGetValue(add.Output, out var ap)
                && (quantized.ContainsKey(node.Input[0]) || quantized.ContainsKey(node.Input[1]))
                && Quantized(node.Input[0]) is { } qa && Quantized(node.Input[1]) is { } qb && qa.shape.SequenceEqual(qb.shape))
            {
                var y = Invoke<Tensor>(state.Ops, "add", qa, qb, add.Relu, ap.Scale, ap.ZeroPoint);
                quantized[add.Output] = y;
                s += add.Relu ? 1 : 0;
                result = add.Output == _output ? y.dequantize() : null;
                Release(first, s);
                continue;
            }

            if (node.Output.Count == 1 && node.Input.Count > 0 && quantized.TryGetValue(node.Input[0], out var qin))
            {
                Tensor? y = node.OpType switch
                {
                    "Relu" => qin.relu(),
                    "MaxPool" when PoolsWithoutPadCopy(node, kernelRank: 2) => RunPool(node, qin),
                    "Pad" when lowering.ZeroPads.TryGetValue(s, out var e) => Invoke<Tensor>(state.Ops, "pad", qin, e[0], e[1], e[2], e[3]),
                    "HardSwish" when state.Activations.TryGetValue(node.Output[0], out var hp) => Invoke<Tensor>(state.Ops, "hardswish", qin, hp.Scale, hp.ZeroPoint),
                    _ => null,
                };
                if (y is not null)
                {
                    quantized[node.Output[0]] = y;
                    result = node.Output[0] == _output ? y.dequantize() : null;
                    Release(first, s);
                    continue;
                }
            }

            var inputs = node.Input.Select(n => n.Length == 0 ? null! : Float(n)).ToArray();
            if (TryFolded(s, values, out var folded))
            {
                // A float Conv (kept in float, or not lowerable) with its BatchNormalization folded in, as in float mode.
                var bn = _steps[s + 1].Node;
                values[bn.Output[0]] = folded;
                result = bn.Output[0] == _output ? folded : null;
                s++;
                Release(first, s);
                continue;
            }

            var outputs = step.Run(inputs, step.Module);
            for (var o = 0; o < outputs.Length && o < node.Output.Count; o++)
            {
                if (node.Output[o].Length > 0)
                {
                    values[node.Output[o]] = outputs[o];
                    if (node.Output[o] == _output)
                    {
                        result = outputs[o];
                    }
                }
            }

            Release(first, s);
        }

        if (result is null)
        {
            throw new InvalidOperationException($"The ONNX graph never produced '{_output}'.");
        }

        if (FlattenOutput && result.dim() > 2)
        {
            result = result.flatten(1);
        }

        return result.contiguous().MoveToOuterDisposeScope();
    }

    /// <summary>Runs the packed Conv at step <paramref name="s"/> on a quantized input; its quantized output (after the fused activation).</summary>
    private Tensor RunPackedConv(Int8State state, int s, Tensor qx)
    {
        var conv = Lowering.Convs[s];
        var packed = state.Packed[s];
        var p = state.Activations[conv.Output];
        var x = packed.ExplicitPad is { } e ? Invoke<Tensor>(state.Ops, "pad", qx, e[0], e[1], e[2], e[3]) : qx;
        var y = Invoke<Tensor>(state.Ops, "conv", x, packed.Index, conv.Activation == Fused.Relu, p.Scale, p.ZeroPoint);
        if (packed.ExplicitPad is null && !packed.Begin.SequenceEqual(packed.End)
            && SymmetricCover(qx, packed.Begin, packed.End, packed.Kernel, packed.Strides, packed.Dilations) is { } size)
        {
            y = NarrowTo(y, size);
        }

        return y;
    }

    /// <summary>Images of the calibration set used to find the convolutions int8 should leave in float.</summary>
    private const int SensitivityImages = 8;

    /// <summary>
    /// Largest relative squared feature error (‖Δf‖² / ‖f‖²) allowed per calibration image: 0.012, about a cosine
    /// similarity of 0.994 between int8 and float features there (0.98 or better on other photos, measured on the
    /// Teachable Machine MobileNetV2, the most sensitive backbone tried).
    /// </summary>
    private const double FeatureErrorBudget = 0.012;

    /// <summary>
    /// Mixed precision, measured: when every convolution in int8 moves some calibration image's features by more than
    /// <see cref="FeatureErrorBudget"/>, each convolution's own effect is measured (it alone in int8, one pass over 8
    /// images), and the most damaging ones stay in float — the fewest, in that order, that bring every image within the
    /// budget, found by bisection. Which ones matter depends on the network: on the Teachable Machine MobileNetV2 at 7
    /// bits, its first 26 convolutions in float left the error at 0.27 while its last one alone gave 0.077; on the tests'
    /// torchvision MobileNetV2 (width 0.25) one late convolution gave almost all of it.
    /// </summary>
    private Int8Parameters KeepSensitiveConvsInFloat(Int8Parameters parameters, Tensor images)
    {
        EnableInt8(parameters);
        var keepEnabled = false;
        try
        {
            var lowering = Lowering;
            var convs = _int8!.Packed.Keys.Order().Select(s => lowering.Convs[s].Output).ToList();
            if (convs.Count == 0 || images.numel() == 0)
            {
                return parameters;
            }

            using var scope = torch.NewDisposeScope();
            Tensor reference;
            _floatPass = true;
            try
            {
                using var noGrad = torch.no_grad();
                reference = forward(images).reshape(images.shape[0], -1);
            }
            finally
            {
                _floatPass = false;
            }

            if (WorstFeatureError(reference, images) <= FeatureErrorBudget)
            {
                keepEnabled = true; // enabling these again (the caller's next step) then costs nothing
                return parameters;
            }

            Int8Parameters With(IEnumerable<string> inFloat) => parameters with { FloatConvs = inFloat.Concat(parameters.FloatConvs).ToHashSet(StringComparer.Ordinal) };

            // Each convolution alone in int8 (every other one in float): its own error in the features.
            var alone = new double[convs.Count];
            for (var i = 0; i < convs.Count; i++)
            {
                EnableInt8(With(convs.Where((_, j) => j != i)));
                alone[i] = WorstFeatureError(reference, images);
            }

            // The smallest k whose k most damaging convolutions in float meet the budget (all in float meets it: no error).
            var worstFirst = Enumerable.Range(0, convs.Count).OrderByDescending(i => alone[i]).ThenBy(i => i).Select(i => convs[i]).ToList();
            var (low, high) = (1, convs.Count);
            while (low < high)
            {
                var middle = (low + high) / 2;
                EnableInt8(With(worstFirst.Take(middle)));
                if (WorstFeatureError(reference, images) <= FeatureErrorBudget)
                {
                    high = middle;
                }
                else
                {
                    low = middle + 1;
                }
            }

            return With(worstFirst.Take(low));
        }
        finally
        {
            if (!keepEnabled)
            {
                DisableInt8();
            }
        }
    }

    /// <summary>The largest ‖Δf‖² / ‖f‖² over the images between the int8 features (as enabled now) and <paramref name="reference"/>.</summary>
    private double WorstFeatureError(Tensor reference, Tensor images)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var int8 = forward(images).reshape(images.shape[0], -1);
        return ((int8 - reference).square().sum(1) / reference.square().sum(1).clamp_min(1e-12)).max().item<float>();
    }

    /// <summary>Whether a MaxPool runs as LibTorch's padded pooling (no padded copy, which quantized tensors lack).</summary>
    private static bool PoolsWithoutPadCopy(NodeProto node, int kernelRank)
    {
        var kernel = node.Ints("kernel_shape");
        if (kernel is null || kernel.Length != kernelRank || node.Int("ceil_mode", 0) != 0 || node.Str("auto_pad", "NOTSET") is "SAME_UPPER" or "SAME_LOWER")
        {
            return false;
        }

        var pads = node.Ints("pads") ?? new long[2 * kernelRank];
        for (var i = 0; i < kernelRank; i++)
        {
            if (pads[i] < pads[kernelRank + i] || pads[i] > kernel[i] / 2)
            {
                return false;
            }
        }

        return true;
    }
}
