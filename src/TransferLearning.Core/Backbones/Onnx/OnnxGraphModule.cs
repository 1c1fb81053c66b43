using System.Text;
using Onnx;
using TransferLearning.Backbones.Onnx.Export;
using TorchSharp;
using DataType = Onnx.TensorProto.Types.DataType;
using static TorchSharp.torch;

namespace TransferLearning.Backbones.Onnx;

/// <summary>Holds the weights of one ONNX graph node (a child module, so freezing works per node).</summary>
internal sealed class OnnxNodeModule : nn.Module
{
    public OnnxNodeModule(string name)
        : base(name)
    {
    }

    /// <summary>ONNX initializer name → the parameter or buffer registered here.</summary>
    public Dictionary<string, Tensor> Weights { get; } = [];

    /// <summary>For a Conv followed by a BatchNormalization: the folded weight/bias used in frozen eval mode.</summary>
    public (Tensor Weight, Tensor Bias)? Folded { get; set; }

    /// <summary>Disposes and forgets <see cref="Folded"/> (the weights it was folded from changed, or went away).</summary>
    public void DropFolded()
    {
        if (Folded is { } f)
        {
            f.Weight.Dispose();
            f.Bias.Dispose();
            Folded = null;
        }
    }

    public void AddParameter(string onnxName, Tensor value, bool trainable)
    {
        var local = OnnxGraphModule.Sanitize(onnxName);
        var p = new TorchSharp.Modules.Parameter(value, trainable);
        register_parameter(local, p);
        Weights[onnxName] = p;
    }

    public void AddBuffer(string onnxName, Tensor value)
    {
        var local = OnnxGraphModule.Sanitize(onnxName);
        register_buffer(local, value);
        Weights[onnxName] = value;
    }

    /// <summary>Converts the weights, then points <see cref="Weights"/> at the converted ones and drops the folded cache.</summary>
    protected override nn.Module _to(ScalarType dtype, bool non_blocking)
    {
        var result = base._to(dtype, non_blocking);
        var parameters = named_parameters(recurse: false).ToDictionary(p => p.name, p => (Tensor)p.parameter, StringComparer.Ordinal);
        var buffers = named_buffers(recurse: false).ToDictionary(b => b.name, b => b.buffer, StringComparer.Ordinal);
        foreach (var onnxName in Weights.Keys.ToList())
        {
            var local = OnnxGraphModule.Sanitize(onnxName);
            Weights[onnxName] = parameters.TryGetValue(local, out var p) ? p : buffers[local];
        }

        DropFolded();
        return result;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            DropFolded();
        }

        base.Dispose(disposing);
    }
}

/// <summary>
/// Executes an ONNX graph with TorchSharp operations. Float weights of Conv/Gemm/MatMul/BatchNormalization/arithmetic
/// nodes become trainable parameters in one child module per node (topological order, named after the node);
/// BatchNormalization statistics are buffers and follow train/eval mode.
/// </summary>
internal sealed partial class OnnxGraphModule : nn.Module<Tensor, Tensor>, IOnnxExportable, IRebuildableModule
{
    private readonly List<Step> _steps = [];
    private readonly Dictionary<string, Tensor> _constants = [];

    // Float constants as read, kept once the module is converted to another float type (see _to).
    private readonly Dictionary<string, Tensor> _constantsAsRead = new(StringComparer.Ordinal);

    // The initializers that stay constants, as read (their exact element types are written back on export and kept in saved models).
    private readonly Dictionary<string, TensorProto> _constantProtos = [];
    private readonly ValueInfoProto? _inputInfo;
    private readonly string _input;
    private readonly string _output;
    private bool _foldingEnabled = true;

    private sealed record Step(NodeProto Node, OnnxNodeModule? Module, Func<Tensor[], OnnxNodeModule?, Tensor[]> Run, string[] Release);

    /// <summary>Builds the module.</summary>
    /// <param name="model">Parsed model.</param>
    /// <param name="source">File name or description used in error messages.</param>
    /// <param name="inputName">Graph input to feed (null: the first non-initializer input).</param>
    /// <param name="outputName">Value to return (null: the first graph output).</param>
    /// <param name="weightsTrainable">False to keep every weight a frozen constant (e.g. preprocessing graphs).</param>
    /// <param name="namePrefix">Prefix for child module names.</param>
    /// <param name="constantInitializers">Float initializers to keep as constants rather than parameters.</param>
    /// <param name="fromSkeleton">
    /// True when <paramref name="model"/> is a <see cref="Skeleton"/> saved with a model: initializers without data are
    /// the weights (made as zeros, to be overwritten), initializers with data are constants.
    /// </param>
    /// <param name="floatType">
    /// The type of the float weights and constants (null: float32). A bfloat16 graph takes bfloat16 inputs; its
    /// BatchNormalization folding is computed in float32 and then rounded.
    /// </param>
    public OnnxGraphModule(ModelProto model, string source, string? inputName = null, string? outputName = null, bool weightsTrainable = true, string namePrefix = "", IReadOnlySet<string>? constantInitializers = null, bool fromSkeleton = false, ScalarType? floatType = null)
        : base("OnnxGraph")
    {
        Opset = model.DefaultOpset();
        var graph = model.Graph;
        var initializers = graph.Initializer.ToDictionary(t => t.Name);
        _input = inputName ?? graph.Input.Select(i => i.Name).FirstOrDefault(n => !initializers.ContainsKey(n))
            ?? throw new InvalidDataException($"The ONNX model '{source}' has no graph input.");
        _output = outputName ?? graph.Output.FirstOrDefault()?.Name
            ?? throw new InvalidDataException($"The ONNX model '{source}' has no graph output.");
        _inputInfo = graph.Input.FirstOrDefault(i => i.Name == _input);
        InputShape = _inputInfo?.Shape();

        var nodes = TopologicalOrder(graph.Node, initializers.Keys.Append(_input).Concat(graph.Input.Select(i => i.Name)), source);
        nodes = PruneTo(nodes, _output, source);
        if (!nodes.SelectMany(n => n.Input).Contains(_input) && _input != _output)
        {
            throw new InvalidDataException($"The output '{_output}' of the ONNX model '{source}' does not depend on the input '{_input}'.");
        }

        // Initializers that are weights (float data at weight positions) go to the first node using them.
        var owned = new Dictionary<string, OnnxNodeModule>();
        var usedNames = new HashSet<string>();
        var lastUse = new Dictionary<string, int>();
        for (var i = 0; i < nodes.Count; i++)
        {
            foreach (var name in nodes[i].Input)
            {
                lastUse[name] = i;
            }
        }

        for (var i = 0; i < nodes.Count; i++)
        {
            var node = nodes[i];
            OnnxNodeModule? module = null;
            for (var k = 0; k < node.Input.Count; k++)
            {
                var name = node.Input[k];
                if (name.Length == 0 || !initializers.TryGetValue(name, out var init) || _constants.ContainsKey(name) || owned.ContainsKey(name))
                {
                    continue;
                }

                if (init.DataLocation == TensorProto.Types.DataLocation.External)
                {
                    var location = init.ExternalData.FirstOrDefault(e => e.Key == "location")?.Value ?? "?";
                    throw new NotSupportedException(
                        $"The ONNX model '{source}' keeps the data of initializer '{name}' in an external file ('{location}'), which the importer does not read. " +
                        "Save the model with its weights inside the .onnx file (Python: onnx.save_model(model, path, save_as_external_data=False)).");
                }

                var isFloat = init.ElementType() is DataType.Float or DataType.Double or DataType.Float16;
                var isWeight = fromSkeleton
                    ? IsPlaceholder(init)
                    : isFloat && IsWeightPosition(node.OpType, k) && constantInitializers?.Contains(name) != true;
                if (isWeight)
                {
                    if (module is null)
                    {
                        var baseName = namePrefix + Sanitize(node.Name.Length > 0 ? node.Name : $"{node.OpType}_{i}");
                        var unique = baseName;
                        for (var n = 2; !usedNames.Add(unique); n++)
                        {
                            unique = $"{baseName}_{n}";
                        }

                        module = new OnnxNodeModule(unique);
                    }

                    var value = Cast(fromSkeleton ? zeros(init.Dims.ToArray(), float32) : ToTensor(init), floatType);
                    if (node.OpType == "BatchNormalization" && k >= 3)
                    {
                        module.AddBuffer(name, value);
                    }
                    else
                    {
                        module.AddParameter(name, value, weightsTrainable);
                    }

                    owned[name] = module;
                }
                else
                {
                    _constants[name] = Cast(ToTensor(init), floatType);
                    _constantProtos[name] = init;
                }
            }

            if (module is not null)
            {
                register_module(module.GetName(), module);
            }

            var run = Compile(node, Opset, source);
            var release = node.Input.Where(n => n.Length > 0 && lastUse[n] == i && n != _output && n != _input
                && !initializers.ContainsKey(n)).Distinct().ToArray();
            _steps.Add(new Step(node, module, run, release));
        }

        _weights = owned.ToDictionary(kv => kv.Key, kv => kv.Value.Weights[kv.Key]);

        _inPlace = InPlaceSteps(_steps, _input, _output);

        // Conv steps whose output feeds only the BatchNormalization right after them (fixed by the graph; checked once).
        _foldsWithNext = new bool[_steps.Count];
        for (var s = 0; s + 1 < _steps.Count; s++)
        {
            var (conv, bn) = (_steps[s], _steps[s + 1]);
            _foldsWithNext[s] = conv.Node.OpType == "Conv" && conv.Module is not null && bn.Node.OpType == "BatchNormalization"
                && bn.Module is not null && bn.Node.Input[0] == conv.Node.Output[0] && conv.Node.Output[0] != _output
                && !_steps.Skip(s + 2).Any(x => x.Node.Input.Contains(conv.Node.Output[0]));
        }
    }

    private readonly Dictionary<string, Tensor> _weights;
    private readonly bool[] _foldsWithNext;
    private readonly bool[] _inPlace;
    private Action<string, Tensor>? _valueProbe;

    /// <summary>
    /// The 4-D values (feature maps) one zero image of <paramref name="height"/> × <paramref name="width"/> produces, with
    /// their shapes, in the order the graph computes them; the graph input is left out.
    /// </summary>
    internal List<(string Name, long[] Shape)> MapShapes(int height, int width)
    {
        var maps = new List<(string Name, long[] Shape)>();
        _valueProbe = (name, value) =>
        {
            if (value.dim() == 4 && name != _input)
            {
                maps.Add((name, value.shape));
            }
        };
        var wasTraining = training;
        try
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            eval();
            forward(zeros(1, 3, height, width));
        }
        finally
        {
            _valueProbe = null;
            if (wasTraining)
            {
                train();
            }
        }

        return maps;
    }

    /// <summary>Names of the Relu/Add nodes that overwrite their first input when no gradient is recorded.</summary>
    internal IEnumerable<string> InPlaceNodeNames => _steps.Where((_, i) => _inPlace[i]).Select(s => s.Node.Name);

    /// <summary>Whether the output is flattened to <c>[N, features]</c>.</summary>
    public bool FlattenOutput { get; init; }

    /// <summary>Opset of the default domain.</summary>
    public long Opset { get; }

    /// <summary>Declared shape of the input (-1 for symbolic dims), if any.</summary>
    public IReadOnlyList<long>? InputShape { get; }

    /// <summary>Whether frozen Conv+BatchNormalization pairs run with folded weights in eval mode.</summary>
    public bool FoldingEnabled
    {
        get => _foldingEnabled;
        set => _foldingEnabled = value;
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor input)
    {
        if (_int8 is not null && !training && !_floatPass)
        {
            return ForwardInt8(input);
        }

        Observe(_input, input);

        var values = new Dictionary<string, Tensor>(_constants) { [_input] = input };
        foreach (var (k, v) in _weights)
        {
            values[k] = v;
        }

        var owned = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
        Tensor? result = _input == _output ? input.alias() : null;
        var skip = new HashSet<NodeProto>(ReferenceEqualityComparer.Instance);
        for (var s = 0; s < _steps.Count && result is null; s++)
        {
            var step = _steps[s];
            if (skip.Contains(step.Node))
            {
                continue;
            }

            Tensor[] outputs;
            if (TryFolded(s, values, out var folded))
            {
                // The Conv ran with BatchNormalization folded in; the BN step is skipped and its output is the Conv's.
                var bn = _steps[s + 1].Node;
                skip.Add(bn);
                values[bn.Output[0]] = folded;
                Observe(bn.Output[0], folded);
                owned.Add(folded);
                if (bn.Output[0] == _output)
                {
                    result = folded;
                }

                Release(step);
                Release(_steps[s + 1]);
                continue;
            }

            var inputs = new Tensor[step.Node.Input.Count];
            for (var i = 0; i < inputs.Length; i++)
            {
                var name = step.Node.Input[i];
                if (name.Length == 0)
                {
                    inputs[i] = null!;
                    continue;
                }

                if (!values.TryGetValue(name, out var v))
                {
                    throw new InvalidOperationException($"ONNX node '{step.Node.Name}' ({step.Node.OpType}) needs '{name}', which no earlier node produced.");
                }

                inputs[i] = v;
            }

            if (CanRunInPlace(s, inputs))
            {
                // The first input dies here and nothing records it for a gradient: overwrite it instead of allocating.
                values.Remove(step.Node.Input[0]);
                owned.Remove(inputs[0]);
                outputs = [step.Node.OpType == "Relu" ? inputs[0].relu_() : inputs[0].add_(inputs[1])];
            }
            else
            {
                outputs = step.Run(inputs, step.Module);
            }
            for (var o = 0; o < outputs.Length && o < step.Node.Output.Count; o++)
            {
                if (step.Node.Output[o].Length == 0)
                {
                    continue;
                }

                values[step.Node.Output[o]] = outputs[o];
                Observe(step.Node.Output[o], outputs[o]);
                owned.Add(outputs[o]);
                if (step.Node.Output[o] == _output)
                {
                    result = outputs[o];
                }
            }

            Release(step);
        }

        // Frees the values whose last reader is this step (intermediates only; weights and constants stay).
        void Release(Step done)
        {
            foreach (var name in done.Release)
            {
                if (values.Remove(name, out var dead) && owned.Remove(dead) && !ReferenceEquals(dead, result))
                {
                    dead.Dispose();
                }
            }
        }

        if (result is null)
        {
            throw new InvalidOperationException($"The ONNX graph never produced '{_output}'.");
        }

        foreach (var t in owned)
        {
            if (!ReferenceEquals(t, result))
            {
                t.Dispose();
            }
        }

        if (FlattenOutput && result.dim() > 2)
        {
            var flat = result.flatten(1);
            result.Dispose();
            return flat;
        }

        return result;
    }

    /// <summary>
    /// Relu and Add may overwrite their first input when the graph allows it (see <see cref="_inPlace"/>), the shapes and
    /// types match, and no gradient is being recorded through it.
    /// </summary>
    private bool CanRunInPlace(int s, Tensor[] inputs)
    {
        if (!_inPlace[s])
        {
            return false;
        }

        var x = inputs[0];
        var recording = torch.is_grad_enabled();
        if ((recording && x.requires_grad) || !x.is_floating_point())
        {
            return false;
        }

        if (inputs.Length == 1)
        {
            return true;
        }

        var y = inputs[1];
        if (y.dtype != x.dtype || (recording && y.requires_grad) || y.dim() > x.dim())
        {
            return false;
        }

        for (var d = 1; d <= y.dim(); d++)
        {
            if (y.shape[^d] != x.shape[^d] && y.shape[^d] != 1)
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>
    /// Per step: whether a Relu/Add may write into its first input — an intermediate made fresh by an operator that
    /// allocates its result, read by no operator that may return a view of it, and last read by this step.
    /// </summary>
    private static bool[] InPlaceSteps(List<Step> steps, string graphInput, string graphOutput)
    {
        var producer = new Dictionary<string, string>();
        var readers = new Dictionary<string, List<string>>();
        foreach (var step in steps)
        {
            foreach (var o in step.Node.Output)
            {
                producer[o] = step.Node.OpType;
            }

            foreach (var i in step.Node.Input)
            {
                (readers.TryGetValue(i, out var list) ? list : readers[i] = []).Add(step.Node.OpType);
            }
        }

        return steps.Select(step =>
        {
            var node = step.Node;
            if (node.OpType is not ("Relu" or "Add") || node.Output.Count != 1 || node.Output[0] == graphOutput)
            {
                return false;
            }

            var x = node.Input[0];
            return x != graphInput && x != graphOutput && step.Release.Contains(x)
                && (node.OpType == "Relu" || (node.Input.Count == 2 && node.Input[1] != x))
                && producer.TryGetValue(x, out var op) && FreshResultOps.Contains(op)
                && readers[x].All(FreshResultOps.Contains);
        }).ToArray();
    }

    /// <summary>Operators whose implementation here always returns a newly allocated tensor (never a view of an input).</summary>
    private static readonly HashSet<string> FreshResultOps = new(StringComparer.Ordinal)
    {
        "Conv", "BatchNormalization", "Relu", "Add", "Sub", "Mul", "Div", "MaxPool", "AveragePool", "GlobalAveragePool",
        "Gemm", "MatMul", "Concat", "Sigmoid", "Tanh",
    };

    /// <summary>The weight and bias of Conv step <paramref name="s"/> with the BatchNormalization after it folded in (detached, no grad).</summary>
    private (Tensor Weight, Tensor Bias) FoldConvBatchNorm(int s, Dictionary<string, Tensor> values)
    {
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope(); // the arithmetic's temporaries; the two results are detached
        var conv = _steps[s].Node;
        var type = values[conv.Input[1]].dtype;
        Tensor Float(string name) => values[name].to(ScalarType.Float32); // folded in float32 even for a bfloat16 graph
        var w = Float(conv.Input[1]);
        var b = conv.Input.Count > 2 && conv.Input[2].Length > 0 ? Float(conv.Input[2]) : null;
        var bnNode = _steps[s + 1].Node;
        var scale = Float(bnNode.Input[1]);
        var shift = Float(bnNode.Input[2]);
        var mean = Float(bnNode.Input[3]);
        var variance = Float(bnNode.Input[4]);
        var eps = bnNode.Float("epsilon", 1e-5f);
        var factor = scale / (variance + eps).sqrt();
        var fw = (w * factor.reshape(-1, 1, 1, 1)).to(type).DetachFromDisposeScope();
        var baseBias = b is null ? torch.zeros_like(mean) : b;
        var fb = ((baseBias - mean) * factor + shift).to(type).DetachFromDisposeScope();
        return (fw, fb);
    }

    private bool TryFolded(int s, Dictionary<string, Tensor> values, out Tensor folded)
    {
        folded = null!;
        var step = _steps[s];
        if (!_foldingEnabled || !_foldsWithNext[s])
        {
            return false;
        }

        var next = _steps[s + 1];
        if (step.Module!.training || next.Module!.training
            || step.Module.parameters().Any(p => p.requires_grad) || next.Module.parameters().Any(p => p.requires_grad))
        {
            step.Module.DropFolded();
            return false;
        }

        if (step.Module.Folded is null)
        {
            var (fw, fb) = FoldConvBatchNorm(s, values);
            // Channels-last weights, like the inputs Backbone.Forward passes, let LibTorch pick its NHWC convolutions.
            using (fw)
            using (torch.NewDisposeScope())
            {
                step.Module.Folded = (fw.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2).DetachFromDisposeScope(), fb);
            }
        }

        var x = values[step.Node.Input[0]];
        folded = RunConv(step.Node, x, step.Module.Folded.Value.Weight, step.Module.Folded.Value.Bias);
        return true;
    }

    /// <summary>Drops cached folded Conv+BN weights (call after weights change).</summary>
    public void InvalidateFolding()
    {
        foreach (var step in _steps)
        {
            step.Module?.DropFolded();
        }
    }

    /// <summary>
    /// Converts the weights (each node module re-points its <see cref="OnnxNodeModule.Weights"/>), then the float constants
    /// (a mean image, say) from their values as read, so converting to bf16 and back leaves them as they were.
    /// </summary>
    protected override nn.Module _to(ScalarType dtype, bool non_blocking)
    {
        var result = base._to(dtype, non_blocking);
        _weights.Clear();
        foreach (var step in _steps)
        {
            foreach (var (name, weight) in step.Module?.Weights ?? [])
            {
                _weights[name] = weight;
            }
        }

        foreach (var name in _constants.Keys.ToList())
        {
            var current = _constants[name];
            if (!current.is_floating_point())
            {
                continue;
            }

            if (!_constantsAsRead.TryGetValue(name, out var read))
            {
                _constantsAsRead[name] = read = current;
            }
            else if (!ReferenceEquals(current, read))
            {
                current.Dispose();
            }

            _constants[name] = read.dtype == dtype ? read : read.to(dtype).DetachFromDisposeScope();
        }

        return result;
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            foreach (var t in _constants.Values.Concat(_constantsAsRead.Values))
            {
                t.Dispose();
            }

            _constants.Clear();
            _constantsAsRead.Clear();
            foreach (var t in _nodeConstants)
            {
                t.Dispose();
            }

            _nodeConstants.Clear();
            InvalidateFolding();
            DisableInt8();
        }

        base.Dispose(disposing);
    }

    /// <summary>A float tensor in <paramref name="type"/> (the same tensor when null or not float).</summary>
    private static Tensor Cast(Tensor value, ScalarType? type)
    {
        if (type is not { } t || !value.is_floating_point() || value.dtype == t)
        {
            return value;
        }

        using (value)
        {
            return value.to(t);
        }
    }

    internal static string Sanitize(string name)
    {
        var sb = new StringBuilder(name.Length);
        foreach (var c in name)
        {
            sb.Append(char.IsAsciiLetterOrDigit(c) || c == '_' ? c : '_');
        }

        return sb.Length == 0 ? "_" : sb.ToString();
    }

    /// <summary>
    /// The graph this module runs (pruned to its output), with the constants' data but without the weights' data
    /// (their names, shapes and element type only): what a saved model needs to rebuild the network, whose weights it
    /// stores separately. <see cref="OnnxGraphModule(ModelProto, string, string?, string?, bool, string, IReadOnlySet{string}?, bool, ScalarType?)"/>
    /// with <c>fromSkeleton: true</c> builds the same module (same child names, same weight names) from it.
    /// </summary>
    internal ModelProto Skeleton()
    {
        var graph = new GraphProto { Name = "backbone" };
        graph.Node.AddRange(_steps.Select(s => s.Node));
        graph.Initializer.AddRange(_constantProtos.Values);
        foreach (var (name, weight) in _weights)
        {
            var placeholder = new TensorProto { Name = name, DataType = (int)DataType.Float };
            placeholder.Dims.AddRange(weight.shape);
            graph.Initializer.Add(placeholder);
        }

        graph.Input.Add(_inputInfo ?? new ValueInfoProto { Name = _input });
        graph.Output.Add(new ValueInfoProto { Name = _output });
        var model = new ModelProto { IrVersion = 8, Graph = graph, ProducerName = "TransferLearning" };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = Opset });
        return model;
    }

    /// <inheritdoc />
    public BackboneArchitecture? Describe(Backbone backbone) => OnnxFormat.Describe(this, backbone.FeatureSize, backbone.FixedInputSize);

    /// <summary>An initializer with elements but no data: a weight in a <see cref="Skeleton"/>.</summary>
    private static bool IsPlaceholder(TensorProto t) =>
        t.ElementCount() > 0 && t.RawData.IsEmpty && t.FloatData.Count == 0 && t.DoubleData.Count == 0 && t.Int32Data.Count == 0
        && t.Int64Data.Count == 0 && t.DataLocation != TensorProto.Types.DataLocation.External;

    private static bool IsWeightPosition(string op, int index) => op switch
    {
        "Conv" or "ConvTranspose" => index is 1 or 2,
        "BatchNormalization" => index is >= 1 and <= 4,
        "Gemm" => index is 1 or 2,
        "MatMul" or "Add" or "Sub" or "Mul" or "Div" or "PRelu" => true,
        _ => false,
    };

    internal static Tensor ToTensor(TensorProto t)
    {
        var dims = t.Dims.ToArray();
        return t.ElementType() switch
        {
            DataType.Float or DataType.Double or DataType.Float16 => torch.tensor(t.ToFloats(), dims),
            DataType.Bool => torch.tensor(t.ToInt64s().Select(v => v != 0).ToArray(), dims),
            _ => torch.tensor(t.ToInt64s(), dims),
        };
    }

    private static List<NodeProto> TopologicalOrder(Google.Protobuf.Collections.RepeatedField<NodeProto> nodes, IEnumerable<string> available, string source)
    {
        var ready = new HashSet<string>(available) { "" };
        var pending = new List<NodeProto>(nodes);
        var ordered = new List<NodeProto>(nodes.Count);
        while (pending.Count > 0)
        {
            var progressed = false;
            for (var i = 0; i < pending.Count; i++)
            {
                if (pending[i].Input.All(ready.Contains))
                {
                    ordered.Add(pending[i]);
                    foreach (var o in pending[i].Output)
                    {
                        ready.Add(o);
                    }

                    pending.RemoveAt(i);
                    i--;
                    progressed = true;
                }
            }

            if (!progressed)
            {
                var n = pending[0];
                throw new InvalidDataException(
                    $"The ONNX model '{source}' has node '{n.Name}' ({n.OpType}) whose inputs {string.Join(", ", n.Input.Where(x => !ready.Contains(x)))} are never produced.");
            }
        }

        return ordered;
    }

    private static List<NodeProto> PruneTo(List<NodeProto> ordered, string output, string source)
    {
        var needed = new HashSet<string> { output };
        var keep = new List<NodeProto>();
        for (var i = ordered.Count - 1; i >= 0; i--)
        {
            if (ordered[i].Output.Any(needed.Contains))
            {
                keep.Add(ordered[i]);
                foreach (var x in ordered[i].Input)
                {
                    needed.Add(x);
                }
            }
        }

        if (keep.Count == 0 && !ordered.Any(n => n.Input.Contains(output)))
        {
            var names = string.Join(", ", ordered.SelectMany(n => n.Output).Take(20));
            throw new ArgumentException($"The ONNX model '{source}' has no node output named '{output}'. Some outputs: {names}, ...");
        }

        keep.Reverse();
        return keep;
    }
}
