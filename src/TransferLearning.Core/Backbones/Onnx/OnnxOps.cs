using Onnx;
using TorchSharp;
using TransferLearning.Native;
using static TorchSharp.torch;
using DataType = Onnx.TensorProto.Types.DataType;
using F = TorchSharp.torch.nn.functional;

namespace TransferLearning.Backbones.Onnx;

/// <summary>Operator implementations (compiled per node at load time, so unsupported operators fail at load).</summary>
internal sealed partial class OnnxGraphModule
{
    /// <summary>
    /// The operators the importer executes, by ONNX op type: each entry compiles one node at load time (reading its
    /// attributes once) into the function that runs it. The keys are the supported list; adding an operator is one entry.
    /// </summary>
    private static readonly Dictionary<string, OperatorCompiler> Operators = new(StringComparer.Ordinal)
    {
        ["Conv"] = (node, opset, constants) => (x, _) => [RunConv(node, x[0], x[1], Opt(x, 2))],
        ["BatchNormalization"] = (node, opset, constants) =>
        {
            var eps = node.Float("epsilon", 1e-5f);
            var momentum = node.Float("momentum", 0.9f);
            return (x, m) => [F.batch_norm(x[0], x[3], x[4], x[1], x[2], m?.training ?? false, 1.0 - momentum, eps)];
        },
        ["Relu"] = (node, opset, constants) => (x, _) => [x[0].relu()],
        ["LeakyRelu"] = (node, opset, constants) =>
        {
            var alpha = node.Float("alpha", 0.01f);
            return (x, _) => [F.leaky_relu(x[0], alpha)];
        },
        ["PRelu"] = (node, opset, constants) => (x, _) =>
        {
            using var pos = x[0].clamp_min(0);
            using var neg = x[0].clamp_max(0);
            using var scaled = neg * x[1];
            return [pos + scaled];
        },
        ["Clip"] = (node, opset, constants) =>
        {
            if (opset < 11)
            {
                var min = node.Float("min", float.NegativeInfinity);
                var max = node.Float("max", float.PositiveInfinity);
                return (x, _) => [Clamp(x[0], min, max)];
            }

            return (x, _) =>
            {
                var min = Opt(x, 1) is { } lo ? Scalar(lo) : float.NegativeInfinity;
                var max = Opt(x, 2) is { } hi ? Scalar(hi) : float.PositiveInfinity;
                return [Clamp(x[0], min, max)];
            };
        },
        ["Sigmoid"] = (node, opset, constants) => (x, _) => [x[0].sigmoid()],
        ["Tanh"] = (node, opset, constants) => (x, _) => [x[0].tanh()],
        ["Softplus"] = (node, opset, constants) => (x, _) => [F.softplus(x[0])],
        ["HardSigmoid"] = (node, opset, constants) =>
        {
            var alpha = node.Float("alpha", 0.2f);
            var beta = node.Float("beta", 0.5f);
            return (x, _) =>
            {
                using var lin = x[0] * alpha + beta;
                return [lin.clamp(0f, 1f)];
            };
        },
        ["HardSwish"] = (node, opset, constants) => (x, _) => [F.hardswish(x[0])],
        // With an alpha this process keeps (see KeptScalars): TorchSharp's `a + b` passes a temporary Scalar 1.
        ["Add"] = (node, opset, constants) => (x, _) => [x[0].add(x[1], KeptScalars.One)],
        ["Sub"] = (node, opset, constants) => (x, _) => [x[0] - x[1]],
        ["Mul"] = (node, opset, constants) => (x, _) => [x[0] * x[1]],
        ["Div"] = (node, opset, constants) => (x, _) => [!torch.is_floating_point(x[0]) && !torch.is_floating_point(x[1]) ? x[0].div(x[1], RoundingMode.trunc) : x[0] / x[1]],
        ["Pow"] = (node, opset, constants) => (x, _) => [x[0].pow(x[1])],
        ["Neg"] = (node, opset, constants) => (x, _) => [x[0].neg()],
        ["Exp"] = (node, opset, constants) => (x, _) => [x[0].exp()],
        ["Sqrt"] = (node, opset, constants) => (x, _) => [x[0].sqrt()],
        ["Abs"] = (node, opset, constants) => (x, _) => [x[0].abs()],
        ["Erf"] = (node, opset, constants) => (x, _) => [x[0].erf()],
        ["Max"] = CompileMinMax,
        ["Min"] = CompileMinMax,
        ["MaxPool"] = CompilePool,
        ["AveragePool"] = CompilePool,
        ["GlobalAveragePool"] = (node, opset, constants) => (x, _) => [x[0].mean(Enumerable.Range(2, (int)x[0].dim() - 2).Select(i => (long)i).ToArray(), keepdim: true)],
        ["GlobalMaxPool"] = (node, opset, constants) => (x, _) => [x[0].amax(Enumerable.Range(2, (int)x[0].dim() - 2).Select(i => (long)i).ToArray(), keepdim: true)],
        ["Flatten"] = (node, opset, constants) =>
        {
            var axis = node.Int("axis", 1);
            return (x, _) =>
            {
                var a = axis < 0 ? axis + x[0].dim() : axis;
                var outer = x[0].shape.Take((int)a).Aggregate(1L, (p, d) => p * d);
                return [x[0].reshape(outer, -1)];
            };
        },
        ["Reshape"] = (node, opset, constants) =>
        {
            var allowZero = node.Int("allowzero", 0) != 0;
            return (x, _) => [x[0].reshape(ReshapeTarget(x[0], Longs(x[1]), allowZero))];
        },
        ["Transpose"] = (node, opset, constants) =>
        {
            var perm = node.Ints("perm");
            return (x, _) => [x[0].permute(perm ?? Enumerable.Range(0, (int)x[0].dim()).Reverse().Select(i => (long)i).ToArray())];
        },
        ["Squeeze"] = (node, opset, constants) =>
        {
            var attrAxes = node.Ints("axes");
            return (x, _) =>
            {
                var axes = opset >= 13 ? (Opt(x, 1) is { } a ? Longs(a) : null) : attrAxes;
                var rank = x[0].dim();
                var dims = axes is null
                    ? Enumerable.Range(0, (int)rank).Where(d => x[0].shape[d] == 1).Select(d => (long)d).ToArray()
                    : axes.Select(d => d < 0 ? d + rank : d).ToArray();
                var result = x[0].alias();
                foreach (var d in dims.Order().Reverse())
                {
                    var next = result.squeeze(d);
                    result.Dispose();
                    result = next;
                }

                return [result];
            };
        },
        ["Unsqueeze"] = (node, opset, constants) =>
        {
            var attrAxes = node.Ints("axes");
            return (x, _) =>
            {
                var axes = opset >= 13 ? Longs(x[1]) : attrAxes ?? throw new InvalidDataException($"Unsqueeze node '{node.Name}' has no axes.");
                var rank = x[0].dim() + axes.Length;
                var result = x[0].alias();
                foreach (var d in axes.Select(d => d < 0 ? d + rank : d).Order())
                {
                    var next = result.unsqueeze(d);
                    result.Dispose();
                    result = next;
                }

                return [result];
            };
        },
        ["Concat"] = (node, opset, constants) =>
        {
            var axis = node.Int("axis", 0);
            return (x, _) => [torch.cat(x.Where(t => t is not null).ToArray(), axis)];
        },
        ["Split"] = (node, opset, constants) =>
        {
            var axis = node.Int("axis", 0);
            var attrSplit = node.Ints("split");
            var outputs = node.Output.Count;
            return (x, _) =>
            {
                var a = axis < 0 ? axis + x[0].dim() : axis;
                var dim = x[0].shape[a];
                var sizes = opset >= 13 ? (Opt(x, 1) is { } s ? Longs(s) : null) : attrSplit;
                if (sizes is null)
                {
                    var chunk = (dim + outputs - 1) / outputs;
                    sizes = Enumerable.Range(0, outputs).Select(i => Math.Max(0, Math.Min(chunk, dim - (i * chunk)))).ToArray();
                }

                return x[0].split(sizes, a);
            };
        },
        ["Slice"] = (node, opset, constants) =>
        {
            var attrStarts = node.Ints("starts");
            var attrEnds = node.Ints("ends");
            var attrAxes = node.Ints("axes");
            return (x, _) =>
            {
                long[] starts, ends;
                long[]? axes, steps = null;
                if (opset < 10)
                {
                    starts = attrStarts!;
                    ends = attrEnds!;
                    axes = attrAxes;
                }
                else
                {
                    starts = Longs(x[1]);
                    ends = Longs(x[2]);
                    axes = Opt(x, 3) is { } ax ? Longs(ax) : null;
                    steps = Opt(x, 4) is { } st ? Longs(st) : null;
                }

                return [RunSlice(x[0], starts, ends, axes, steps)];
            };
        },
        ["Pad"] = (node, opset, constants) =>
        {
            var mode = node.Str("mode", "constant");
            var attrPads = node.Ints(opset < 11 ? "pads" : "__none");
            var attrPadsV1 = node.Ints("paddings");
            var attrValue = node.Float("value", 0f);
            return (x, _) =>
            {
                long[] pads;
                var value = attrValue;
                long[]? axes = null;
                if (opset < 11)
                {
                    pads = attrPads ?? attrPadsV1 ?? throw new InvalidDataException($"Pad node '{node.Name}' has no pads.");
                }
                else
                {
                    pads = Longs(x[1]);
                    value = Opt(x, 2) is { } v ? Scalar(v) : 0f;
                    axes = Opt(x, 3) is { } a ? Longs(a) : null;
                }

                return [RunPad(x[0], pads, axes, mode, value)];
            };
        },
        ["ReduceMean"] = CompileReduce,
        ["ReduceSum"] = CompileReduce,
        ["ReduceMax"] = CompileReduce,
        ["Gemm"] = (node, opset, constants) =>
        {
            var transA = node.Int("transA", 0) != 0;
            var transB = node.Int("transB", 0) != 0;
            var alpha = node.Float("alpha", 1f);
            var beta = node.Float("beta", 1f);
            return (x, _) =>
            {
                var c = Opt(x, 2);
                if (!transA && transB && alpha == 1f && (c is null || (beta == 1f && c.dim() == 1)))
                {
                    return [F.linear(x[0], x[1], c)];
                }

                using var a = transA ? x[0].t() : x[0].alias();
                using var b = transB ? x[1].t() : x[1].alias();
                using var prod = a.matmul(b);
                using var scaled = alpha == 1f ? prod.alias() : prod * alpha;
                if (c is null || beta == 0f)
                {
                    return [scaled.alias()];
                }

                using var bias = beta == 1f ? c.alias() : c * beta;
                return [scaled + bias];
            };
        },
        ["MatMul"] = (node, opset, constants) => (x, _) => [x[0].matmul(x[1])],
        ["Softmax"] = (node, opset, constants) =>
        {
            var axis = node.Int("axis", opset < 13 ? 1 : -1);
            return (x, _) =>
            {
                var a = axis < 0 ? axis + x[0].dim() : axis;
                if (opset >= 13)
                {
                    return [x[0].softmax(a)];
                }

                var outer = x[0].shape.Take((int)a).Aggregate(1L, (p, d) => p * d);
                using var flat = x[0].reshape(outer, -1);
                using var soft = flat.softmax(1);
                return [soft.reshape(x[0].shape)];
            };
        },
        ["Constant"] = (node, opset, constants) =>
        {
            var value = ConstantValue(node);
            constants.Add(value);
            return (_, _) => [value.alias()];
        },
        ["Shape"] = (node, opset, constants) =>
        {
            var start = node.Int("start", 0);
            var end = node.Attr("end") is { } e ? e.I : long.MaxValue;
            return (x, _) =>
            {
                var shape = x[0].shape;
                var s = (int)Math.Clamp(start < 0 ? start + shape.Length : start, 0, shape.Length);
                var en = (int)Math.Clamp(end < 0 ? end + shape.Length : end, 0, shape.Length);
                return [torch.tensor(shape[s..Math.Max(s, en)], ScalarType.Int64)];
            };
        },
        ["Gather"] = (node, opset, constants) =>
        {
            var axis = node.Int("axis", 0);
            return (x, _) =>
            {
                var data = x[0];
                var a = axis < 0 ? axis + data.dim() : axis;
                var dim = data.shape[a];
                using var idx = x[1].to_type(ScalarType.Int64);
                using var wrapped = torch.where(idx < 0, idx + dim, idx);
                using var flat = wrapped.flatten();
                using var picked = data.index_select(a, flat);
                var shape = data.shape[..(int)a].Concat(x[1].shape).Concat(data.shape[((int)a + 1)..]).ToArray();
                return [picked.reshape(shape)];
            };
        },
        ["Identity"] = (node, opset, constants) => (x, _) => [x[0].alias()],
        ["Dropout"] = (node, opset, constants) => (x, _) => node.Output.Count > 1 ? [x[0].alias(), torch.ones_like(x[0], ScalarType.Bool)] : [x[0].alias()],
        ["Cast"] = (node, opset, constants) =>
        {
            var to = (DataType)node.Int("to", (long)DataType.Float);
            var type = to switch
            {
                DataType.Float or DataType.Float16 or DataType.Double => ScalarType.Float32,
                DataType.Bool => ScalarType.Bool,
                DataType.Uint8 => ScalarType.Byte,
                _ => ScalarType.Int64,
            };
            return (x, _) => [x[0].to_type(type)];
        },
    };

    /// <summary>Compiles one node: its attributes, the default-domain opset, and where node constants are kept (disposed with the module).</summary>
    private delegate Func<Tensor[], OnnxNodeModule?, Tensor[]> OperatorCompiler(NodeProto node, long opset, List<Tensor> constants);

    /// <summary>Operators the importer executes.</summary>
    internal static IReadOnlyCollection<string> SupportedOperators => Operators.Keys;

    private readonly List<Tensor> _nodeConstants = [];

    private Func<Tensor[], OnnxNodeModule?, Tensor[]> Compile(NodeProto node, long opset, string source)
    {
        if ((node.Domain.Length > 0 && node.Domain != "ai.onnx") || !Operators.TryGetValue(node.OpType, out var compile))
        {
            throw new NotSupportedException(
                $"ONNX operator '{(node.Domain.Length > 0 ? node.Domain + "." : "")}{node.OpType}' (node '{node.Name}', opset {opset}) in '{source}' is not supported. " +
                $"Supported operators: {string.Join(", ", SupportedOperators.Order(StringComparer.Ordinal))}.");
        }

        return compile(node, opset, _nodeConstants);
    }

    private static Func<Tensor[], OnnxNodeModule?, Tensor[]> CompileMinMax(NodeProto node, long opset, List<Tensor> constants)
    {
                var isMax = node.OpType == "Max";
                return (x, _) =>
                {
                    var acc = x[0].alias();
                    for (var i = 1; i < x.Length; i++)
                    {
                        var next = isMax ? acc.maximum(x[i]) : acc.minimum(x[i]);
                        acc.Dispose();
                        acc = next;
                    }
    
                    return [acc];
                };
            }

    private static Func<Tensor[], OnnxNodeModule?, Tensor[]> CompilePool(NodeProto node, long opset, List<Tensor> constants) =>
        (x, _) => [RunPool(node, x[0])];

    private static Func<Tensor[], OnnxNodeModule?, Tensor[]> CompileReduce(NodeProto node, long opset, List<Tensor> constants)
    {
                var keep = node.Int("keepdims", 1) != 0;
                var noopEmpty = node.Int("noop_with_empty_axes", 0) != 0;
                var attrAxes = node.Ints("axes");
                var axesFromInput = node.OpType == "ReduceSum" ? opset >= 13 : opset >= 18;
                var op = node.OpType;
                return (x, _) =>
                {
                    var axes = axesFromInput ? (Opt(x, 1) is { } a ? Longs(a) : null) : attrAxes;
                    if (axes is null || axes.Length == 0)
                    {
                        if (noopEmpty)
                        {
                            return [x[0].alias()];
                        }
    
                        axes = Enumerable.Range(0, (int)x[0].dim()).Select(i => (long)i).ToArray();
                    }
    
                    return op switch
                    {
                        "ReduceMean" => [x[0].mean(axes, keep)],
                        "ReduceSum" => [x[0].sum(axes, keep)],
                        _ => [x[0].amax(axes, keep)],
                    };
                };
            }

    private static Tensor? Opt(Tensor[] x, int i) => i < x.Length ? x[i] : null;

    private static float Scalar(Tensor t)
    {
        using var f = t.to_type(ScalarType.Float32);
        return f.item<float>();
    }

    internal static long[] Longs(Tensor t)
    {
        using var l = t.to_type(ScalarType.Int64).contiguous();
        return l.data<long>().ToArray();
    }

    private static Tensor Clamp(Tensor x, float min, float max) =>
        (float.IsNegativeInfinity(min), float.IsPositiveInfinity(max)) switch
        {
            (true, true) => x.alias(),
            (true, false) => x.clamp_max(max),
            (false, true) => x.clamp_min(min),
            _ => x.clamp(min, max),
        };

    /// <summary>Resolves a Reshape target: 0 copies the input dim (unless allowzero); a leading 1 follows the input batch.</summary>
    internal static long[] ReshapeTarget(Tensor x, long[] shape, bool allowZero)
    {
        var target = (long[])shape.Clone();
        for (var i = 0; i < target.Length; i++)
        {
            if (target[i] == 0 && !allowZero && i < x.dim())
            {
                target[i] = x.shape[i];
            }
        }

        // Models exported with a fixed batch of 1 often reshape to [1, ...]; keep the real batch instead.
        if (target.Length > 0 && target[0] == 1 && x.dim() > 0 && x.shape[0] != 1)
        {
            target[0] = x.shape[0];
        }

        return target;
    }

    private static Tensor ConstantValue(NodeProto node)
    {
        foreach (var a in node.Attribute)
        {
            switch (a.Name)
            {
                case "value" when a.T is not null: return ToTensor(a.T);
                case "value_float": return torch.tensor(a.F);
                case "value_floats": return torch.tensor(a.Floats.ToArray());
                case "value_int": return torch.tensor(a.I);
                case "value_ints": return torch.tensor(a.Ints.ToArray());
                default: break;
            }
        }

        throw new NotSupportedException($"Constant node '{node.Name}' has no supported value attribute (value, value_float(s), value_int(s)).");
    }

    private static (long[] Begin, long[] End) ResolvePads(NodeProto node, Tensor x, long[] kernel, long[] strides, long[] dilations)
    {
        var n = kernel.Length;
        var autoPad = node.Str("auto_pad", "NOTSET");
        var begin = new long[n];
        var end = new long[n];
        if (autoPad is "SAME_UPPER" or "SAME_LOWER")
        {
            for (var i = 0; i < n; i++)
            {
                var input = x.shape[2 + i];
                var output = (input + strides[i] - 1) / strides[i];
                var total = Math.Max(0, ((output - 1) * strides[i]) + ((kernel[i] - 1) * dilations[i]) + 1 - input);
                var small = total / 2;
                (begin[i], end[i]) = autoPad == "SAME_UPPER" ? (small, total - small) : (total - small, small);
            }
        }
        else if (autoPad != "VALID" && node.Ints("pads") is { } pads)
        {
            for (var i = 0; i < n; i++)
            {
                begin[i] = pads[i];
                end[i] = pads[n + i];
            }
        }

        return (begin, end);
    }

    private static long[] TorchPad(long[] begin, long[] end)
    {
        var result = new long[begin.Length * 2];
        for (var i = 0; i < begin.Length; i++)
        {
            var d = begin.Length - 1 - i;
            result[2 * i] = begin[d];
            result[(2 * i) + 1] = end[d];
        }

        return result;
    }

    internal static Tensor RunConv(NodeProto node, Tensor x, Tensor w, Tensor? b)
    {
        if (x.dim() != 4)
        {
            throw new NotSupportedException($"Conv node '{node.Name}': only 2-D convolutions (4-D input) are supported; the input has {x.dim()} dims.");
        }

        var kernel = node.Ints("kernel_shape") ?? w.shape[2..];
        var strides = node.Ints("strides") ?? [1, 1];
        var dilations = node.Ints("dilations") ?? [1, 1];
        var group = node.Int("group", 1);
        var (begin, end) = ResolvePads(node, x, kernel, strides, dilations);
        if (begin.SequenceEqual(end))
        {
            return Conv2dOps.Conv2d(x, w, b, strides, begin, dilations, group);
        }

        if (SymmetricCover(x, begin, end, kernel, strides, dilations) is { } outputSize)
        {
            // Padding every side by `begin` gives the same windows (plus, maybe, extra trailing ones): no padded copy.
            using var wide = Conv2dOps.Conv2d(x, w, b, strides, begin, dilations, group);
            return NarrowTo(wide, outputSize);
        }

        using var padded = F.pad(x, TorchPad(begin, end));
        return Conv2dOps.Conv2d(padded, w, b, strides, [0, 0], dilations, group);
    }

    /// <summary>
    /// For asymmetric pads with begin ≥ end in every spatial dim: the output size the ONNX pads give. Padding each side
    /// by <c>begin</c> instead places every window at the same input offset, and since those windows lie inside the
    /// asymmetrically padded range, the first outputs are identical; any extra trailing outputs are cut off.
    /// Null when some dim pads more at the end (the windows would shift).
    /// </summary>
    internal static long[]? SymmetricCover(Tensor x, long[] begin, long[] end, long[] kernel, long[] strides, long[] dilations)
    {
        var size = new long[begin.Length];
        for (var i = 0; i < begin.Length; i++)
        {
            if (begin[i] < end[i])
            {
                return null;
            }

            var span = x.shape[2 + i] + begin[i] + end[i] - (((kernel[i] - 1) * dilations[i]) + 1);
            if (span < 0)
            {
                return null;
            }

            size[i] = (span / strides[i]) + 1;
        }

        return size;
    }

    private static Tensor NarrowTo(Tensor wide, long[] size)
    {
        var result = wide.alias();
        for (var i = 0; i < size.Length; i++)
        {
            if (result.shape[2 + i] != size[i])
            {
                var cut = result.narrow(2 + i, 0, size[i]);
                result.Dispose();
                result = cut;
            }
        }

        return result;
    }

    private static Tensor RunPool(NodeProto node, Tensor x)
    {
        if (x.dim() != 4)
        {
            throw new NotSupportedException($"{node.OpType} node '{node.Name}': only 2-D pooling (4-D input) is supported; the input has {x.dim()} dims.");
        }

        var kernel = node.Ints("kernel_shape") ?? throw new InvalidDataException($"{node.OpType} node '{node.Name}' has no kernel_shape.");
        var strides = node.Ints("strides") ?? [1, 1];
        var dilations = node.Ints("dilations") ?? [1, 1];
        var ceil = node.Int("ceil_mode", 0) != 0;
        var (begin, end) = ResolvePads(node, x, kernel, strides, dilations);
        var symmetric = begin.SequenceEqual(end) && begin.Zip(kernel).All(p => p.First <= p.Second / 2);
        if (node.OpType == "MaxPool")
        {
            if (symmetric)
            {
                return F.max_pool2d(x, kernel, strides, begin, dilations, ceil);
            }

            if (!ceil && begin.Zip(kernel).All(p => p.First <= p.Second / 2) && SymmetricCover(x, begin, end, kernel, strides, dilations) is { } outputSize)
            {
                using var wide = F.max_pool2d(x, kernel, strides, begin, dilations, false);
                return NarrowTo(wide, outputSize);
            }

            using var padded = F.pad(x, TorchPad(begin, end), PaddingModes.Constant, double.NegativeInfinity);
            return F.max_pool2d(padded, kernel, strides, [0, 0], dilations, ceil);
        }

        var includePad = node.Int("count_include_pad", 0) != 0;
        if (symmetric)
        {
            return F.avg_pool2d(x, kernel, strides, begin, ceil, includePad);
        }

        using var xp = F.pad(x, TorchPad(begin, end));
        if (includePad)
        {
            return F.avg_pool2d(xp, kernel, strides, [0, 0], ceil, true);
        }

        using var ones = torch.ones(1, 1, x.shape[2], x.shape[3], dtype: x.dtype);
        using var onesPadded = F.pad(ones, TorchPad(begin, end));
        using var sum = F.avg_pool2d(xp, kernel, strides, [0, 0], ceil, true);
        using var count = F.avg_pool2d(onesPadded, kernel, strides, [0, 0], ceil, true);
        return sum / count;
    }

    private static Tensor RunSlice(Tensor x, long[] starts, long[] ends, long[]? axes, long[]? steps)
    {
        var result = x.alias();
        for (var i = 0; i < starts.Length; i++)
        {
            var axis = axes is null ? i : axes[i];
            if (axis < 0)
            {
                axis += x.dim();
            }

            var dim = x.shape[axis];
            var step = steps is null ? 1 : steps[i];
            var start = starts[i] < 0 ? starts[i] + dim : starts[i];
            var end = ends[i] < 0 ? ends[i] + dim : ends[i];
            Tensor next;
            if (step > 0)
            {
                start = Math.Clamp(start, 0, dim);
                end = Math.Clamp(end, 0, dim);
                next = end <= start ? result.narrow(axis, 0, 0) : result.slice(axis, start, end, step);
            }
            else
            {
                start = Math.Clamp(start, 0, dim - 1);
                end = Math.Clamp(end, -1, dim - 1);
                var idx = new List<long>();
                for (var k = start; k > end; k += step)
                {
                    idx.Add(k);
                }

                using var index = torch.tensor(idx.ToArray(), ScalarType.Int64);
                next = result.index_select(axis, index);
            }

            result.Dispose();
            result = next;
        }

        return result;
    }

    private static Tensor RunPad(Tensor x, long[] pads, long[]? axes, string mode, float value)
    {
        var rank = (int)x.dim();
        var begin = new long[rank];
        var end = new long[rank];
        var axisList = axes?.Select(a => a < 0 ? a + rank : a).ToArray() ?? Enumerable.Range(0, rank).Select(i => (long)i).ToArray();
        for (var i = 0; i < axisList.Length; i++)
        {
            begin[axisList[i]] = pads[i];
            end[axisList[i]] = pads[axisList.Length + i];
        }

        var torchPad = TorchPad(begin, end).ToList();
        while (torchPad.Count > 2 && torchPad[^1] == 0 && torchPad[^2] == 0)
        {
            torchPad.RemoveRange(torchPad.Count - 2, 2);
        }

        var padMode = mode switch
        {
            "reflect" => PaddingModes.Reflect,
            "edge" => PaddingModes.Replicate,
            "wrap" => PaddingModes.Circular,
            _ => PaddingModes.Constant,
        };
        return F.pad(x, torchPad.ToArray(), padMode, value);
    }
}
