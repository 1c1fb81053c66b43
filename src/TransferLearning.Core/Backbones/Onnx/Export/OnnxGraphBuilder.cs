using System.Runtime.InteropServices;
using System.Text;
using Google.Protobuf;
using Onnx;
using static TorchSharp.torch;
using AttributeType = Onnx.AttributeProto.Types.AttributeType;
using DataType = Onnx.TensorProto.Types.DataType;

namespace TransferLearning.Backbones.Onnx.Export;

/// <summary>
/// Writes an ONNX graph (IR 8, default domain at opset 17) with the classes generated from <c>onnx.proto</c>: unique
/// value and node names, float32 initializers copied from TorchSharp tensors (raw_data, little-endian), nodes with
/// attributes, and graph inputs/outputs with shapes (a negative dimension is written as the symbolic batch <c>N</c>).
/// Exporters may record a value's static shape (<see cref="SetShape"/>) for the layers after them that need it.
/// </summary>
internal sealed class OnnxGraphBuilder
{
    /// <summary>The opset of the default domain every exported graph imports.</summary>
    public const long Opset = 17;

    /// <summary>IR version 8 (ONNX 1.12/1.13; read by ONNX Runtime 1.31 and ML.NET's ApplyOnnxModel).</summary>
    public const long IrVersion = 8;

    /// <summary>Name of the symbolic batch dimension.</summary>
    public const string BatchDimension = "N";

    private readonly GraphProto _graph;
    private readonly HashSet<string> _valueNames = new(StringComparer.Ordinal);
    private readonly HashSet<string> _nodeNames = new(StringComparer.Ordinal);
    private readonly Dictionary<Tensor, string> _tensorInitializers = new(ReferenceEqualityComparer.Instance);
    private readonly Dictionary<string, string> _constantInitializers = new(StringComparer.Ordinal);
    private readonly Dictionary<string, long[]> _shapes = new(StringComparer.Ordinal);
    private readonly List<string> _scopes = [];

    /// <summary>Starts an empty graph.</summary>
    /// <param name="graphName">Name of the graph.</param>
    public OnnxGraphBuilder(string graphName)
    {
        _graph = new GraphProto { Name = graphName };
    }

    /// <summary>The graph written so far.</summary>
    public GraphProto Graph => _graph;

    /// <summary>Number of nodes written so far.</summary>
    public int NodeCount => _graph.Node.Count;

    /// <summary>
    /// Prefixes the names of the values and nodes created until the returned scope is disposed (nested scopes join
    /// with '.'), so that the graph reads like the module tree it came from.
    /// </summary>
    /// <param name="name">Scope name, e.g. a module name.</param>
    public IDisposable Scope(string name)
    {
        _scopes.Add(name);
        return new ScopeExit(this, _scopes.Count);
    }

    /// <summary>Declares a float32 graph input; negative dimensions become the symbolic batch <c>N</c>.</summary>
    /// <param name="name">The exact input name (must be free).</param>
    /// <param name="shape">Dimensions; -1 for the dynamic batch.</param>
    /// <returns>The input's value name (<paramref name="name"/>).</returns>
    public string AddInput(string name, long[] shape)
    {
        if (!_valueNames.Add(name))
        {
            throw new InvalidOperationException($"The ONNX value name '{name}' is already taken.");
        }

        _graph.Input.Add(ValueInfo(name, shape));
        _shapes[name] = [.. shape];
        return name;
    }

    /// <summary>
    /// Declares a graph output called <paramref name="name"/> holding <paramref name="value"/> (an Identity node renames
    /// it when the names differ).
    /// </summary>
    /// <param name="value">The value to output.</param>
    /// <param name="name">The output name.</param>
    /// <param name="shape">Declared dimensions (-1 for the dynamic batch).</param>
    public void AddOutput(string value, string name, long[] shape)
    {
        if (value != name)
        {
            if (!_valueNames.Add(name))
            {
                throw new InvalidOperationException($"The ONNX value name '{name}' is already taken.");
            }

            _graph.Node.Add(NewNode("Identity", [value], [name], UniqueNodeName(name)));
        }

        _graph.Output.Add(ValueInfo(name, shape));
        _shapes[name] = [.. shape];
    }

    /// <summary>Records the static shape of a value (-1 for the batch dimension).</summary>
    public void SetShape(string value, long[] shape) => _shapes[value] = [.. shape];

    /// <summary>The recorded shape of a value, or null when no exporter recorded one.</summary>
    public long[]? ShapeOf(string value) => _shapes.TryGetValue(value, out var shape) ? shape : null;

    /// <summary>A value name derived from <paramref name="hint"/> (within the current scope) that is not yet used.</summary>
    /// <param name="hint">Readable base name.</param>
    public string NewValueName(string hint) => Unique(Scoped(hint), _valueNames);

    /// <summary>
    /// A float32 initializer holding the current values of <paramref name="tensor"/> (copied now; any layout, device
    /// or floating type). The same tensor object given twice yields the same initializer (shared layers).
    /// </summary>
    /// <param name="hint">Readable base name.</param>
    /// <param name="tensor">The values.</param>
    public string Initializer(string hint, Tensor tensor)
    {
        if (_tensorInitializers.TryGetValue(tensor, out var existing))
        {
            return existing;
        }

        var name = Initializer(hint, FloatsOf(tensor), tensor.shape);
        _tensorInitializers[tensor] = name;
        return name;
    }

    /// <summary>A float32 initializer with the given values and dimensions.</summary>
    public string Initializer(string hint, float[] values, long[] dims)
    {
        var name = NewValueName(hint);
        _graph.Initializer.Add(new TensorProto
        {
            Name = name,
            DataType = (int)DataType.Float,
            Dims = { dims },
            RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(values.AsSpan())),
        });
        return name;
    }

    /// <summary>An int64 initializer (1-D unless <paramref name="dims"/> is given); identical constants are shared.</summary>
    public string Int64s(string hint, long[] values, long[]? dims = null)
    {
        dims ??= [values.Length];
        var key = "i64:" + string.Join(',', dims) + ":" + string.Join(',', values);
        if (_constantInitializers.TryGetValue(key, out var existing))
        {
            return existing;
        }

        var name = NewValueName(hint);
        _graph.Initializer.Add(new TensorProto
        {
            Name = name,
            DataType = (int)DataType.Int64,
            Dims = { dims },
            RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(values.AsSpan())),
        });
        _constantInitializers[key] = name;
        return name;
    }

    /// <summary>A float32 scalar initializer (rank 0); identical scalars are shared.</summary>
    public string Scalar(float value)
    {
        var key = "f32:" + BitConverter.SingleToInt32Bits(value).ToString(System.Globalization.CultureInfo.InvariantCulture);
        if (_constantInitializers.TryGetValue(key, out var existing))
        {
            return existing;
        }

        var name = Unique("const_" + Sanitize(value.ToString("G9", System.Globalization.CultureInfo.InvariantCulture)), _valueNames);
        _graph.Initializer.Add(new TensorProto
        {
            Name = name,
            DataType = (int)DataType.Float,
            RawData = ByteString.CopyFrom(BitConverter.GetBytes(value)),
        });
        _constantInitializers[key] = name;
        return name;
    }

    /// <summary>Adds an initializer as given (its name is made unique); for constants copied from another graph.</summary>
    /// <param name="hint">Readable base name.</param>
    /// <param name="tensor">The tensor (not modified; a copy is renamed).</param>
    public string CopyInitializer(string hint, TensorProto tensor)
    {
        var copy = tensor.Clone();
        copy.Name = NewValueName(hint);
        _graph.Initializer.Add(copy);
        return copy.Name;
    }

    /// <summary>Adds a node with one output and returns the output's value name.</summary>
    /// <param name="opType">Operator (default domain).</param>
    /// <param name="inputs">Input value names ("" for an omitted optional input).</param>
    /// <param name="hint">Readable base name of the output and node (default: the operator).</param>
    /// <param name="attributes">Attributes (see <see cref="Attr(string, long)"/> and its overloads).</param>
    public string Node(string opType, IReadOnlyList<string> inputs, string? hint = null, params AttributeProto[] attributes) =>
        Node(opType, inputs, 1, hint, attributes)[0];

    /// <summary>Adds a node with <paramref name="outputCount"/> outputs and returns their value names.</summary>
    public string[] Node(string opType, IReadOnlyList<string> inputs, int outputCount, string? hint = null, params AttributeProto[] attributes)
    {
        var baseName = hint ?? opType;
        var outputs = new string[outputCount];
        for (var i = 0; i < outputCount; i++)
        {
            outputs[i] = NewValueName(outputCount == 1 ? baseName : $"{baseName}_{i}");
        }

        var node = NewNode(opType, inputs, outputs, UniqueNodeName(baseName));
        node.Attribute.AddRange(attributes);
        _graph.Node.Add(node);
        return outputs;
    }

    /// <summary>Adds a node whose outputs are already named (names must come from <see cref="NewValueName"/>).</summary>
    public void NodeWithOutputs(string opType, IReadOnlyList<string> inputs, IReadOnlyList<string> outputs, string hint, IEnumerable<AttributeProto> attributes)
    {
        var node = NewNode(opType, inputs, outputs, UniqueNodeName(hint));
        node.Attribute.AddRange(attributes);
        _graph.Node.Add(node);
    }

    /// <summary>An INT attribute.</summary>
    public static AttributeProto Attr(string name, long value) => new() { Name = name, Type = AttributeType.Int, I = value };

    /// <summary>A FLOAT attribute.</summary>
    public static AttributeProto Attr(string name, float value) => new() { Name = name, Type = AttributeType.Float, F = value };

    /// <summary>A STRING attribute (UTF-8).</summary>
    public static AttributeProto Attr(string name, string value) => new() { Name = name, Type = AttributeType.String, S = ByteString.CopyFromUtf8(value) };

    /// <summary>An INTS attribute.</summary>
    public static AttributeProto Attr(string name, long[] values) => new() { Name = name, Type = AttributeType.Ints, Ints = { values } };

    /// <summary>A FLOATS attribute.</summary>
    public static AttributeProto Attr(string name, float[] values) => new() { Name = name, Type = AttributeType.Floats, Floats = { values } };

    /// <summary>Wraps the graph in a model (IR 8, opset 17) with the given producer and metadata.</summary>
    public ModelProto ToModel(string producerName, string producerVersion, string docString, IEnumerable<KeyValuePair<string, string>> metadata)
    {
        var model = new ModelProto
        {
            IrVersion = IrVersion,
            ProducerName = producerName,
            ProducerVersion = producerVersion,
            DocString = docString,
            Graph = _graph,
        };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = string.Empty, Version = Opset });
        foreach (var (key, value) in metadata)
        {
            model.MetadataProps.Add(new StringStringEntryProto { Key = key, Value = value });
        }

        return model;
    }

    /// <summary>Replaces characters ONNX tools dislike in names with '_'.</summary>
    internal static string Sanitize(string name)
    {
        var sb = new StringBuilder(name.Length);
        foreach (var c in name)
        {
            sb.Append(char.IsAsciiLetterOrDigit(c) || c is '_' or '.' or '/' or '-' ? c : '_');
        }

        return sb.Length == 0 ? "_" : sb.ToString();
    }

    private static float[] FloatsOf(Tensor tensor)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var values = tensor.detach().cpu().to_type(ScalarType.Float32).contiguous();
        return values.data<float>().ToArray();
    }

    private static ValueInfoProto ValueInfo(string name, long[] shape)
    {
        var tensorShape = new TensorShapeProto();
        foreach (var d in shape)
        {
            tensorShape.Dim.Add(d >= 0
                ? new TensorShapeProto.Types.Dimension { DimValue = d }
                : new TensorShapeProto.Types.Dimension { DimParam = BatchDimension });
        }

        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)DataType.Float, Shape = tensorShape } },
        };
    }

    private static NodeProto NewNode(string opType, IReadOnlyList<string> inputs, IReadOnlyList<string> outputs, string name)
    {
        var node = new NodeProto { OpType = opType, Name = name };
        node.Input.AddRange(inputs);
        node.Output.AddRange(outputs);
        return node;
    }

    private string UniqueNodeName(string hint) => Unique(Scoped(hint), _nodeNames);

    private string Scoped(string hint)
    {
        var name = Sanitize(hint);
        return _scopes.Count == 0 ? name : string.Join('.', _scopes.Select(Sanitize)) + "." + name;
    }

    private static string Unique(string name, HashSet<string> taken)
    {
        if (taken.Add(name))
        {
            return name;
        }

        for (var i = 1; ; i++)
        {
            var candidate = $"{name}_{i}";
            if (taken.Add(candidate))
            {
                return candidate;
            }
        }
    }

    private sealed class ScopeExit(OnnxGraphBuilder builder, int depth) : IDisposable
    {
        private bool _done;

        public void Dispose()
        {
            if (_done)
            {
                return;
            }

            _done = true;
            if (builder._scopes.Count == depth)
            {
                builder._scopes.RemoveAt(depth - 1);
            }
        }
    }
}
