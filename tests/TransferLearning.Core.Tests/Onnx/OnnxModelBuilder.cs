using Google.Protobuf;
using TransferLearning.Backbones.Onnx;

namespace TransferLearning.Core.Tests.Onnx;

/// <summary>Builds small ONNX models in memory for operator tests.</summary>
internal sealed class OnnxModelBuilder
{
    private readonly OnnxModel _model = new();
    private readonly Random _rng;
    private int _count;

    public OnnxModelBuilder(long opset, long[] inputShape, int seed = 1)
    {
        _rng = new Random(seed);
        Opset = opset;
        _model.IrVersion = opset >= 21 ? 10 : opset >= 19 ? 9 : 8;
        _model.OpsetImports.Add(("", opset));
        _model.Graph.Inputs.Add(new OnnxValueInfo { Name = "x", Shape = [.. inputShape] });
        InputShape = inputShape;
    }

    public long Opset { get; }

    public long[] InputShape { get; }

    public OnnxModel Model => _model;

    public string Node(string op, string[] inputs, params OnnxAttribute[] attrs) => NodeN(op, inputs, 1, attrs)[0];

    public string[] NodeN(string op, string[] inputs, int outputs, params OnnxAttribute[] attrs)
    {
        var n = new OnnxNode { OpType = op, Name = $"{op.ToLowerInvariant()}_{_count++}" };
        n.Inputs.AddRange(inputs);
        for (var i = 0; i < outputs; i++)
        {
            n.Outputs.Add($"{n.Name}_out{i}");
        }

        n.Attributes.AddRange(attrs);
        _model.Graph.Nodes.Add(n);
        return [.. n.Outputs];
    }

    public string Weight(params long[] dims)
    {
        var name = $"w{_count++}";
        var count = dims.Aggregate(1L, (a, b) => a * b);
        _model.Graph.Initializers.Add(OnnxTensor.FromFloats(name, dims, Enumerable.Range(0, (int)count).Select(_ => (float)(_rng.NextDouble() * 2 - 1)).ToArray()));
        return name;
    }

    public string Positive(params long[] dims)
    {
        var name = $"p{_count++}";
        var count = dims.Aggregate(1L, (a, b) => a * b);
        _model.Graph.Initializers.Add(OnnxTensor.FromFloats(name, dims, Enumerable.Range(0, (int)count).Select(_ => (float)(0.5 + _rng.NextDouble())).ToArray()));
        return name;
    }

    public string Floats(long[] dims, params float[] values)
    {
        var name = $"f{_count++}";
        _model.Graph.Initializers.Add(OnnxTensor.FromFloats(name, dims, values));
        return name;
    }

    public string Ints(params long[] values)
    {
        var name = $"i{_count++}";
        _model.Graph.Initializers.Add(OnnxTensor.FromInt64s(name, [values.Length], values));
        return name;
    }

    public OnnxModelBuilder Output(string name)
    {
        _model.Graph.Outputs.Add(new OnnxValueInfo { Name = name });
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

    public static OnnxAttribute I(string name, long v) => new() { Name = name, Type = OnnxAttributeType.Int, I = v };

    public static OnnxAttribute Fl(string name, float v) => new() { Name = name, Type = OnnxAttributeType.Float, F = v };

    public static OnnxAttribute S(string name, string v) => new() { Name = name, Type = OnnxAttributeType.String, S = ByteString.CopyFromUtf8(v) };

    public static OnnxAttribute Is(string name, params long[] v)
    {
        var a = new OnnxAttribute { Name = name, Type = OnnxAttributeType.Ints };
        a.Ints.AddRange(v);
        return a;
    }

    public static OnnxAttribute T(string name, OnnxTensor t) => new() { Name = name, Type = OnnxAttributeType.Tensor, T = t };
}
