using Onnx;
using TransferLearning.Backbones.Onnx.Export;

namespace TransferLearning.Backbones.Onnx;

/// <summary>
/// Writing the imported graph back as ONNX: the nodes the module runs (pruned to the feature output, in order), with
/// the current weights (fine-tuned ones included) as float32 initializers and the constant initializers as they were
/// read. BatchNormalization stays a node of its own (the fold into the preceding Conv is done at run time by the
/// importer and by ONNX Runtime alike). Nodes of older opsets are rewritten to their opset-17 form (attributes that
/// became inputs, Dropout as Identity, opset &lt; 13 Softmax as Flatten → Softmax → Reshape).
/// </summary>
internal sealed partial class OnnxGraphModule
{
    /// <inheritdoc />
    public string Export(OnnxGraphBuilder builder, string input)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var names = new Dictionary<string, string>(StringComparer.Ordinal) { [_input] = input };
        var consumed = new HashSet<string>(_steps.SelectMany(s => s.Node.Input), StringComparer.Ordinal) { _output };

        string Value(string original)
        {
            if (original.Length == 0)
            {
                return string.Empty;
            }

            if (names.TryGetValue(original, out var known))
            {
                return known;
            }

            string name;
            if (_weights.TryGetValue(original, out var weight))
            {
                name = builder.Initializer(original, weight);
            }
            else if (_constantProtos.TryGetValue(original, out var constant))
            {
                name = builder.CopyInitializer(original, constant);
            }
            else
            {
                throw new InvalidOperationException($"ONNX value '{original}' is read before any node produced it.");
            }

            names[original] = name;
            return name;
        }

        foreach (var step in _steps)
        {
            var node = step.Node;
            var outputs = node.Output.Select(o => o.Length == 0 ? string.Empty : names[o] = builder.NewValueName(o)).ToArray();
            var hint = node.Name.Length > 0 ? node.Name : node.OpType;
            WriteNode(builder, node, hint, node.Input.Select(Value).ToArray(), outputs, consumed);
        }

        var result = names.TryGetValue(_output, out var output) ? output : Value(_output);
        return FlattenOutput ? builder.Node("Flatten", [result], "features_flatten", OnnxGraphBuilder.Attr("axis", 1L)) : result;
    }

    /// <summary>Writes one imported node in its opset-17 form.</summary>
    private void WriteNode(OnnxGraphBuilder b, NodeProto node, string hint, string[] inputs, string[] outputs, HashSet<string> consumed)
    {
        var opset = Opset;
        var attributes = node.Attribute.Where(a => a.Name is not ("consumed_inputs" or "broadcast")).ToList();
        NotSupportedException Unsupported(string why) => new(
            $"the ONNX node '{node.Name}' ({node.OpType}, opset {opset}) cannot be written at opset {OnnxGraphBuilder.Opset}: {why}.");

        void Write(string opType, IEnumerable<string> nodeInputs, IEnumerable<AttributeProto>? nodeAttributes = null, string[]? nodeOutputs = null) =>
            b.NodeWithOutputs(opType, nodeInputs.ToList(), nodeOutputs ?? outputs, hint, nodeAttributes ?? attributes);

        List<AttributeProto> Without(params string[] removed) => attributes.Where(a => !removed.Contains(a.Name)).ToList();

        string Longs(string what, long[]? values) => values is null ? string.Empty : b.Int64s($"{hint}.{what}", values);

        // Outputs beyond the first that a later node reads (inference graphs normally have none).
        bool ExtraOutputsUsed() => node.Output.Skip(1).Any(o => o.Length > 0 && consumed.Contains(o));

        switch (node.OpType)
        {
            case "Dropout":
                if (ExtraOutputsUsed())
                {
                    throw Unsupported("its mask output is used");
                }

                Write("Identity", [inputs[0]], [], [outputs[0]]);
                return;

            case "BatchNormalization":
                if (node.Int("spatial", 1) == 0)
                {
                    throw Unsupported("it normalises per element (spatial = 0)");
                }

                if (ExtraOutputsUsed())
                {
                    throw Unsupported("its training-mode statistics outputs are used");
                }

                Write("BatchNormalization", inputs, Without("spatial", "is_test", "training_mode", "momentum"), [outputs[0]]);
                return;

            case "Clip" when opset < 11:
                {
                    var min = node.Attr("min") is { } lo ? b.Scalar(lo.F) : string.Empty;
                    var max = node.Attr("max") is { } hi ? b.Scalar(hi.F) : string.Empty;
                    Write("Clip", [inputs[0], min, max], []);
                    return;
                }

            case "Split":
                {
                    var splitInputs = inputs.ToList();
                    if (opset < 13 && node.Ints("split") is { } sizes)
                    {
                        splitInputs = [inputs[0], Longs("split", sizes)];
                    }

                    Write("Split", splitInputs, Without("split", "num_outputs"));
                    return;
                }

            case "Squeeze" or "Unsqueeze" when opset < 13:
                Write(node.OpType, node.Ints("axes") is { } squeezeAxes ? [inputs[0], Longs("axes", squeezeAxes)] : [inputs[0]], Without("axes"));
                return;

            case "ReduceSum" when opset < 13:
                Write("ReduceSum", node.Ints("axes") is { } sumAxes ? [inputs[0], Longs("axes", sumAxes)] : [inputs[0]], Without("axes"));
                return;

            case "ReduceMean" or "ReduceMax" when opset >= 18:
                {
                    var reduceAttributes = attributes.ToList();
                    if (node.Input.Count > 1 && node.Input[1].Length > 0)
                    {
                        var axes = ConstantLongs(node.Input[1]) ?? throw Unsupported("its axes are computed in the graph");
                        reduceAttributes.Add(OnnxGraphBuilder.Attr("axes", axes));
                    }

                    Write(node.OpType, [inputs[0]], reduceAttributes);
                    return;
                }

            case "Slice" when opset < 10:
                {
                    var sliceInputs = new List<string>
                    {
                        inputs[0],
                        Longs("starts", node.Ints("starts") ?? throw Unsupported("it has no starts")),
                        Longs("ends", node.Ints("ends") ?? throw Unsupported("it has no ends")),
                    };
                    if (node.Ints("axes") is { } sliceAxes)
                    {
                        sliceInputs.Add(Longs("axes", sliceAxes));
                    }

                    Write("Slice", sliceInputs, []);
                    return;
                }

            case "Pad" when opset < 11:
                {
                    var pads = node.Ints("pads") ?? node.Ints("paddings") ?? throw Unsupported("it has no pads");
                    Write("Pad", [inputs[0], Longs("pads", pads), b.Scalar(node.Float("value", 0f))], Without("pads", "paddings", "value"));
                    return;
                }

            case "Pad" when node.Input.Count > 3 && node.Input[3].Length > 0:
                throw Unsupported("it pads selected axes (the axes input of opset 18)");

            case "Softmax" when opset < 13:
                {
                    // Before opset 13, Softmax works on the input flattened to 2-D at `axis` (default 1).
                    var axis = node.Int("axis", 1);
                    var flat = b.Node("Flatten", [inputs[0]], hint + ".flatten", OnnxGraphBuilder.Attr("axis", axis));
                    var soft = b.Node("Softmax", [flat], hint + ".softmax", OnnxGraphBuilder.Attr("axis", 1L));
                    var shape = b.Node("Shape", [inputs[0]], hint + ".shape");
                    Write("Reshape", [soft, shape], []);
                    return;
                }

            case "Reshape" when node.Int("allowzero", 0) == 0 && ConstantLongs(node.Input[1]) is [1, ..] target:
                {
                    // The importer keeps the batch where a model exported with batch 1 reshapes to [1, …]; 0 (copy the
                    // input's dim) is the same for every batch size in ONNX terms.
                    target[0] = 0;
                    Write("Reshape", [inputs[0], b.Int64s(hint + ".shape", target)]);
                    return;
                }

            case "AveragePool" when node.Ints("dilations") is { } dilations:
                if (dilations.Any(d => d != 1))
                {
                    throw Unsupported("it is dilated (opset 19)");
                }

                Write("AveragePool", inputs, Without("dilations"));
                return;

            case "Concat" when node.Attr("axis") is null:
                Write("Concat", inputs, [.. attributes, OnnxGraphBuilder.Attr("axis", 1L)]);
                return;

            default:
                Write(node.OpType, inputs);
                return;
        }
    }

    /// <summary>The values of a constant int64 initializer, or null when the value is computed in the graph.</summary>
    private long[]? ConstantLongs(string name) =>
        _constantProtos.TryGetValue(name, out var proto) ? proto.ToInt64s() : null;
}
