using Onnx;
using TorchSharp;
using static TorchSharp.torch;

namespace TransferLearning.Backbones.Onnx;

/// <summary>
/// Int8 inference for a frozen graph: Conv (with a following BatchNormalization folded in and a following Relu fused),
/// Add (+Relu), MaxPool and Relu run on quantized tensors through PyTorch's x86 quantized kernels; every other
/// operator runs in float on dequantized inputs. Weights are quantized per output channel (symmetric int8);
/// activations per tensor (unsigned, 7-bit range as the x86 kernels without VNNI need), from ranges observed on
/// calibration images.
/// </summary>
internal sealed partial class OnnxGraphModule : IInt8Module
{
    /// <summary>Largest 8-bit value used: the x86 kernels' u8×s8 products saturate without VNNI at the full range.</summary>
    private const int ActivationLevels = 127;

    private Dictionary<string, (double Min, double Max)>? _observer;
    private HashSet<string>? _observed;
    private Int8State? _int8;

    /// <summary>A Conv packed for int8: its index in the TorchScript module and the geometry to cut begin-heavy padding.</summary>
    private sealed record PackedConv(long Index, long[] Kernel, long[] Strides, long[] Dilations, long[] Begin, long[] End);

    private sealed class Int8State(jit.ScriptModule ops, Dictionary<int, PackedConv> packed, IReadOnlyDictionary<string, ActivationQuantization> activations, Dictionary<int, string> fusedRelu) : IDisposable
    {
        public jit.ScriptModule Ops { get; } = ops;

        /// <summary>Conv or Add step index → output of the Relu fused into it (fixed by the graph; found once).</summary>
        public Dictionary<int, string> FusedRelu { get; } = fusedRelu;

        /// <summary>Conv step index → its packed int8 weights in <see cref="Ops"/>.</summary>
        public Dictionary<int, PackedConv> Packed { get; } = packed;

        public IReadOnlyDictionary<string, ActivationQuantization> Activations { get; } = activations;

        public void Dispose() => Ops.Dispose();
    }

    /// <summary>The activation parameters in use, or null when the graph runs in float.</summary>
    public IReadOnlyDictionary<string, ActivationQuantization>? Int8Activations => _int8?.Activations;

    /// <summary>Number of Conv nodes that run in int8 (0 when int8 is off).</summary>
    internal int Int8ConvCount => _int8?.Packed.Count ?? 0;

    /// <summary>
    /// Runs the float graph (eval mode, no grad) on the batches and derives each value's 8-bit scale and zero point from
    /// the range it took (widened to include 0).
    /// </summary>
    public Dictionary<string, ActivationQuantization> Calibrate(IEnumerable<Tensor> batches, Func<Tensor, Tensor>? prepare = null)
    {
        if (_int8 is not null)
        {
            throw new InvalidOperationException("The graph already runs in int8; calibrate before enabling it.");
        }

        var ranges = new Dictionary<string, (double Min, double Max)>();
        _observed = Int8Values();
        if (_observed.Count == 0)
        {
            throw new NotSupportedException("The graph has no Conv or Add node that int8 can run (explicit pads, 2-D kernels), so int8 would change nothing.");
        }

        var seen = 0;
        _observer = ranges;
        try
        {
            using var noGrad = torch.no_grad();
            foreach (var batch in batches)
            {
                seen++;
                using var scope = torch.NewDisposeScope();
                _ = forward(prepare is null ? batch : prepare(batch));
            }
        }
        finally
        {
            _observer = null;
            _observed = null;
        }

        if (seen == 0)
        {
            throw new ArgumentException("Calibration needs at least one batch of images.", nameof(batches));
        }

        return ranges.ToDictionary(kv => kv.Key, kv => Quantization(kv.Value.Min, kv.Value.Max));
    }

    /// <summary>The values whose scales int8 execution needs: Conv inputs and outputs (after a fused Relu), Add inputs and outputs.</summary>
    private HashSet<string> Int8Values()
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (var s = 0; s < _steps.Count; s++)
        {
            var node = _steps[s].Node;
            if (node.OpType == "Conv" && Int8Padding(node, out _, out _))
            {
                var output = _foldsWithNext[s] ? _steps[s + 1].Node.Output[0] : node.Output[0];
                names.Add(node.Input[0]);
                names.Add(FusedReluOutput(s, output) ?? output);
            }
            else if (node.OpType == "Add" && node.Input.Count == 2)
            {
                names.UnionWith(node.Input);
                names.Add(FusedAddRelu(s) ?? node.Output[0]);
            }
        }

        return names;
    }

    private static ActivationQuantization Quantization(double min, double max)
    {
        min = Math.Min(min, 0);
        max = Math.Max(max, 0);
        var scale = (max - min) / ActivationLevels;
        if (!(scale > 1e-12) || !double.IsFinite(scale))
        {
            return new ActivationQuantization(1e-6, 0);
        }

        var zeroPoint = (long)Math.Clamp(Math.Round(-min / scale), 0, ActivationLevels);
        return new ActivationQuantization(scale, zeroPoint);
    }

    private void Observe(string name, Tensor value)
    {
        if (_observer is null || _observed?.Contains(name) != true || !value.is_floating_point() || value.numel() == 0)
        {
            return;
        }

        using var scope = torch.NewDisposeScope();
        var (low, high) = torch.aminmax(value);
        var (min, max) = ((double)low.item<float>(), (double)high.item<float>());
        _observer[name] = _observer.TryGetValue(name, out var seen) ? (Math.Min(seen.Min, min), Math.Max(seen.Max, max)) : (min, max);
    }

    /// <summary>
    /// Switches eval-mode forward passes to int8 with the given activation parameters (from <see cref="Calibrate"/>, or
    /// a saved model). The weights must not change while it is on (freeze first); <see cref="DisableInt8"/> goes back.
    /// </summary>
    public void EnableInt8(IReadOnlyDictionary<string, ActivationQuantization> activations)
    {
        ArgumentNullException.ThrowIfNull(activations);
        DisableInt8();
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
            for (var s = 0; s < _steps.Count; s++)
            {
                var node = _steps[s].Node;
                if (node.OpType != "Conv" || !Int8Padding(node, out var begin, out var end) || !values.ContainsKey(node.Input[1]))
                {
                    continue;
                }

                var output = _foldsWithNext[s] ? _steps[s + 1].Node.Output[0] : node.Output[0];
                if (!activations.ContainsKey(node.Input[0]) || !activations.ContainsKey(FusedReluOutput(s, output) ?? output))
                {
                    continue;
                }

                using var scope = torch.NewDisposeScope();
                var (w, b) = _foldsWithNext[s]
                    ? FoldConvBatchNorm(s, values)
                    : (values[node.Input[1]].detach(), node.Input.Count > 2 && node.Input[2].Length > 0 ? values[node.Input[2]].detach() : torch.zeros(values[node.Input[1]].shape[0]));
                using var weight = w; // the folded pair is detached from the scope; packing copies what it needs
                using var bias = b;
                if (w.dim() != 4)
                {
                    continue;
                }

                var wScale = (w.abs().amax([1, 2, 3]) / 127.0).clamp_min(1e-8);
                var strides = node.Ints("strides") ?? [1, 1];
                var dilations = node.Ints("dilations") ?? [1, 1];
                var group = node.Int("group", 1);
                var index = ops.invoke<Scalar>("add_conv", w.contiguous(), b.contiguous(), wScale, strides[0], strides[1], begin[0], begin[1], dilations[0], dilations[1], group).ToInt64();
                packed[s] = new PackedConv(index, [w.shape[2], w.shape[3]], strides, dilations, begin, end);
            }
        }
        catch
        {
            ops.Dispose();
            throw;
        }

        var fused = new Dictionary<int, string>();
        for (var s = 0; s < _steps.Count; s++)
        {
            var node = _steps[s].Node;
            var relu = node.OpType switch
            {
                "Conv" => FusedReluOutput(s, _foldsWithNext[s] ? _steps[s + 1].Node.Output[0] : node.Output[0]),
                "Add" => FusedAddRelu(s),
                _ => null,
            };
            if (relu is not null)
            {
                fused[s] = relu;
            }
        }

        _int8 = new Int8State(ops, packed, new Dictionary<string, ActivationQuantization>(activations), fused);
    }

    /// <summary>Back to float forward passes.</summary>
    public void DisableInt8()
    {
        _int8?.Dispose();
        _int8 = null;
    }

    private static jit.ScriptModule LoadInt8Ops()
    {
        using var stream = typeof(OnnxGraphModule).Assembly.GetManifestResourceStream("TransferLearning.Int8Ops.pt")
            ?? throw new InvalidOperationException("The Int8Ops.pt resource is missing from TransferLearning.Core.");
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return torch.jit.load(copy.ToArray());
    }

    /// <summary>
    /// The node's explicit pads (begin, end per spatial dim) when int8 can reproduce them: symmetric, or begin-heavy
    /// (run as symmetric <c>begin</c> padding plus a cut, see <see cref="SymmetricCover"/>); false for auto_pad SAME.
    /// </summary>
    private static bool Int8Padding(NodeProto node, out long[] begin, out long[] end)
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
        return begin[0] >= end[0] && begin[1] >= end[1];
    }

    /// <summary>The output of the Relu that alone reads <paramref name="value"/> right after step <paramref name="s"/> (or its folded BN).</summary>
    private string? FusedReluOutput(int s, string value)
    {
        var next = _foldsWithNext[s] ? s + 2 : s + 1;
        if (next >= _steps.Count || _steps[next].Node.OpType != "Relu" || _steps[next].Node.Input[0] != value || value == _output)
        {
            return null;
        }

        var readers = _steps.Count(st => st.Node.Input.Contains(value));
        return readers == 1 ? _steps[next].Node.Output[0] : null;
    }

    private Tensor ForwardInt8(Tensor input)
    {
        var state = _int8!;
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

            return quantized[name] = state.Ops.invoke<Tensor>("quantize", f, p.Scale, p.ZeroPoint);
        }

        Tensor? result = null;
        for (var s = 0; s < _steps.Count && result is null; s++)
        {
            var step = _steps[s];
            var node = step.Node;
            if (state.Packed.TryGetValue(s, out var conv) && Quantized(node.Input[0]) is { } qx)
            {
                var output = _foldsWithNext[s] ? _steps[s + 1].Node.Output[0] : node.Output[0];
                var relu = state.FusedRelu.GetValueOrDefault(s);
                var p = state.Activations[relu ?? output];
                var y = state.Ops.invoke<Tensor>("conv", qx, conv.Index, relu is not null, p.Scale, p.ZeroPoint);
                if (!conv.Begin.SequenceEqual(conv.End) && SymmetricCover(qx, conv.Begin, conv.End, conv.Kernel, conv.Strides, conv.Dilations) is { } size)
                {
                    y = NarrowTo(y, size);
                }

                quantized[relu ?? output] = y;
                s += (_foldsWithNext[s] ? 1 : 0) + (relu is null ? 0 : 1);
                result = (relu ?? output) == _output ? y.dequantize() : null;
                continue;
            }

            if (node.OpType == "Add" && node.Input.Count == 2)
            {
                var relu = state.FusedRelu.GetValueOrDefault(s);
                if (state.Activations.TryGetValue(relu ?? node.Output[0], out var p)
                    && Quantized(node.Input[0]) is { } qa && Quantized(node.Input[1]) is { } qb && qa.shape.SequenceEqual(qb.shape))
                {
                    var y = state.Ops.invoke<Tensor>("add", qa, qb, relu is not null, p.Scale, p.ZeroPoint);
                    quantized[relu ?? node.Output[0]] = y;
                    s += relu is null ? 0 : 1;
                    result = (relu ?? node.Output[0]) == _output ? y.dequantize() : null;
                    continue;
                }
            }

            if ((node.OpType == "Relu" || (node.OpType == "MaxPool" && PoolsWithoutPadCopy(node, kernelRank: 2)))
                && quantized.TryGetValue(node.Input[0], out var qin) && node.Output.Count == 1)
            {
                var y = node.OpType == "Relu" ? qin.relu() : RunPool(node, qin);
                quantized[node.Output[0]] = y;
                result = node.Output[0] == _output ? y.dequantize() : null;
                continue;
            }

            var inputs = node.Input.Select(n => n.Length == 0 ? null! : Float(n)).ToArray();
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

    /// <summary>The output of a Relu right after Add step <paramref name="s"/> that alone reads the sum.</summary>
    private string? FusedAddRelu(int s)
    {
        var sum = _steps[s].Node.Output[0];
        if (s + 1 >= _steps.Count || _steps[s + 1].Node.OpType != "Relu" || _steps[s + 1].Node.Input[0] != sum || sum == _output)
        {
            return null;
        }

        return _steps.Count(st => st.Node.Input.Contains(sum)) == 1 ? _steps[s + 1].Node.Output[0] : null;
    }
}
