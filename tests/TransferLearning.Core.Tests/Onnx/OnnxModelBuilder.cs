using Google.Protobuf;
using Onnx;
using TransferLearning.Backbones.Onnx;
using AttributeType = Onnx.AttributeProto.Types.AttributeType;
using DataType = Onnx.TensorProto.Types.DataType;

namespace TransferLearning.Core.Tests.Onnx;

/// <summary>Builds small ONNX models in memory for operator tests (with the classes generated from onnx.proto).</summary>
internal sealed class OnnxModelBuilder
{
    private readonly ModelProto _model = new() { Graph = new GraphProto { Name = "graph" } };
    private readonly Random _rng;
    private int _count;

    public OnnxModelBuilder(long opset, long[] inputShape, int seed = 1)
    {
        _rng = new Random(seed);
        Opset = opset;
        _model.IrVersion = opset >= 21 ? 10 : opset >= 19 ? 9 : 8;
        _model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = opset });
        _model.Graph.Input.Add(FloatValue("x", inputShape));
        InputShape = inputShape;
    }

    public long Opset { get; }

    public long[] InputShape { get; }

    public ModelProto Model => _model;

    public string Node(string op, string[] inputs, params AttributeProto[] attrs) => NodeN(op, inputs, 1, attrs)[0];

    public string[] NodeN(string op, string[] inputs, int outputs, params AttributeProto[] attrs)
    {
        var n = new NodeProto { OpType = op, Name = $"{op.ToLowerInvariant()}_{_count++}", Input = { inputs }, Attribute = { attrs } };
        for (var i = 0; i < outputs; i++)
        {
            n.Output.Add($"{n.Name}_out{i}");
        }

        _model.Graph.Node.Add(n);
        return [.. n.Output];
    }

    public string Weight(params long[] dims)
    {
        var name = $"w{_count++}";
        var count = dims.Aggregate(1L, (a, b) => a * b);
        _model.Graph.Initializer.Add(OnnxProtoExtensions.FromFloats(name, dims, Enumerable.Range(0, (int)count).Select(_ => (float)(_rng.NextDouble() * 2 - 1)).ToArray()));
        return name;
    }

    public string Positive(params long[] dims)
    {
        var name = $"p{_count++}";
        var count = dims.Aggregate(1L, (a, b) => a * b);
        _model.Graph.Initializer.Add(OnnxProtoExtensions.FromFloats(name, dims, Enumerable.Range(0, (int)count).Select(_ => (float)(0.5 + _rng.NextDouble())).ToArray()));
        return name;
    }

    public string Floats(long[] dims, params float[] values)
    {
        var name = $"f{_count++}";
        _model.Graph.Initializer.Add(OnnxProtoExtensions.FromFloats(name, dims, values));
        return name;
    }

    public string Ints(params long[] values)
    {
        var name = $"i{_count++}";
        _model.Graph.Initializer.Add(OnnxProtoExtensions.FromInt64s(name, [values.Length], values));
        return name;
    }

    public OnnxModelBuilder Output(string name)
    {
        _model.Graph.Output.Add(FloatValue(name, null));
        return this;
    }

    public byte[] Bytes() => _model.ToByteArray();

    public float[] RandomInput(int seed = 3, long? batch = null)
    {
        var rng = new Random(seed);
        var shape = (long[])InputShape.Clone();
        if (batch is { } b)
        {
            shape[0] = b;
        }

        return Enumerable.Range(0, (int)shape.Aggregate(1L, (a, c) => a * c)).Select(_ => (float)(rng.NextDouble() * 4 - 2)).ToArray();
    }

    public static AttributeProto I(string name, long v) => new() { Name = name, Type = AttributeType.Int, I = v };

    public static AttributeProto Fl(string name, float v) => new() { Name = name, Type = AttributeType.Float, F = v };

    public static AttributeProto S(string name, string v) => new() { Name = name, Type = AttributeType.String, S = ByteString.CopyFromUtf8(v) };

    public static AttributeProto Is(string name, params long[] v) => new() { Name = name, Type = AttributeType.Ints, Ints = { v } };

    public static AttributeProto T(string name, TensorProto t) => new() { Name = name, Type = AttributeType.Tensor, T = t };

    /// <summary>A float tensor value; <paramref name="shape"/> null for none declared, -1 for a symbolic dimension.</summary>
    public static ValueInfoProto FloatValue(string name, long[]? shape)
    {
        var tensor = new TypeProto.Types.Tensor { ElemType = (int)DataType.Float };
        if (shape is not null)
        {
            tensor.Shape = new TensorShapeProto
            {
                Dim = { shape.Select(d => d >= 0 ? new TensorShapeProto.Types.Dimension { DimValue = d } : new TensorShapeProto.Types.Dimension { DimParam = "N" }) },
            };
        }

        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = tensor } };
    }
}
