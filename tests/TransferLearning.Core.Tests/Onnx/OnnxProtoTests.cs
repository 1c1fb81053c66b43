using System.Runtime.InteropServices;
using Google.Protobuf;
using Onnx;
using TransferLearning.Backbones.Onnx;
using TransferLearning.Hub;
using DataType = Onnx.TensorProto.Types.DataType;

namespace TransferLearning.Core.Tests.Onnx;

/// <summary>The importer's reading of ONNX files through the classes generated from onnx.proto.</summary>
public sealed class OnnxProtoTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("tl-onnxproto-");

    public void Dispose() => _dir.Delete(recursive: true);

    private string Write(string name, byte[] bytes)
    {
        var path = Path.Combine(_dir.FullName, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static TensorProto Raw(DataType type, long[] dims, byte[] raw) =>
        new() { Name = "t", DataType = (int)type, Dims = { dims }, RawData = ByteString.CopyFrom(raw) };

    private static byte[] Bytes<T>(params T[] values)
        where T : struct => MemoryMarshal.AsBytes(values.AsSpan()).ToArray();

    [Fact]
    public void ToFloats_RawData_ReadsFloatDoubleFloat16AndIntegers()
    {
        Assert.Equal([1.5f, -2f], Raw(DataType.Float, [2], Bytes(1.5f, -2f)).ToFloats());
        Assert.Equal([0.25f, -3f], Raw(DataType.Double, [2], Bytes(0.25, -3.0)).ToFloats());
        Assert.Equal([0.5f, -1f, 65504f], Raw(DataType.Float16, [3], Bytes((Half)0.5f, (Half)(-1f), Half.MaxValue)).ToFloats());
        Assert.Equal([7f, -8f], Raw(DataType.Int64, [2], Bytes(7L, -8L)).ToFloats());
        Assert.Equal([3f, 255f], Raw(DataType.Uint8, [2], [3, 255]).ToFloats());
    }

    [Fact]
    public void ToInt64s_RawData_ReadsEachIntegerWidthAndSign()
    {
        Assert.Equal([5L, -6L], Raw(DataType.Int64, [2], Bytes(5L, -6L)).ToInt64s());
        Assert.Equal([int.MaxValue, -1L], Raw(DataType.Int32, [2], Bytes(int.MaxValue, -1)).ToInt64s());
        Assert.Equal([200L, 0L], Raw(DataType.Uint8, [2], [200, 0]).ToInt64s());
        Assert.Equal([-56L, 127L], Raw(DataType.Int8, [2], [200, 127]).ToInt64s());
        Assert.Equal([1L, 0L], Raw(DataType.Bool, [2], [1, 0]).ToInt64s());
        Assert.Equal([3L, -2L], Raw(DataType.Float, [2], Bytes(3.7f, -2.2f)).ToInt64s());
        var ex = Assert.Throws<NotSupportedException>(() => Raw(DataType.Uint16, [1], [1, 0]).ToInt64s());
        Assert.Equal("ONNX tensor 't' has unsupported data type Uint16.", ex.Message);
    }

    [Fact]
    public void TypedFields_ReadWhenNoRawData()
    {
        Assert.Equal([1f, 2f], new TensorProto { DataType = (int)DataType.Float, Dims = { 2 }, FloatData = { 1f, 2f } }.ToFloats());
        Assert.Equal([0.5f], new TensorProto { DataType = (int)DataType.Double, Dims = { 1 }, DoubleData = { 0.5 } }.ToFloats());
        Assert.Equal([9L, -9L], new TensorProto { DataType = (int)DataType.Int64, Dims = { 2 }, Int64Data = { 9, -9 } }.ToInt64s());
        Assert.Equal([-3L, 4L], new TensorProto { DataType = (int)DataType.Int32, Dims = { 2 }, Int32Data = { -3, 4 } }.ToInt64s());
        Assert.Equal([250L], new TensorProto { DataType = (int)DataType.Uint8, Dims = { 1 }, Int32Data = { 250 } }.ToInt64s());
        Assert.Equal([4f], new TensorProto { DataType = (int)DataType.Int64, Dims = { 1 }, Int64Data = { 4 } }.ToFloats());

        var ex = Assert.Throws<InvalidDataException>(() => new TensorProto { Name = "w", DataType = (int)DataType.Float, Dims = { 3 }, FloatData = { 1f } }.ToFloats());
        Assert.Equal("ONNX tensor 'w' should hold 3 values but holds 1.", ex.Message);
    }

    [Fact]
    public void Parse_RepeatedScalarsPackedOrNot_ReadTheSame()
    {
        // float_data (4) and int64 dims (1) written one tag per value, as proto2 writers without [packed] do.
        using var ms = new MemoryStream();
        var o = new CodedOutputStream(ms);
        o.WriteTag(1, WireFormat.WireType.Varint);
        o.WriteInt64(2);
        o.WriteTag(2, WireFormat.WireType.Varint);
        o.WriteInt32((int)DataType.Float);
        foreach (var f in new[] { 1.25f, -4f })
        {
            o.WriteTag(4, WireFormat.WireType.Fixed32);
            o.WriteFloat(f);
        }

        o.Flush();
        var unpacked = TensorProto.Parser.ParseFrom(ms.ToArray());
        var packed = TensorProto.Parser.ParseFrom(new TensorProto { DataType = (int)DataType.Float, Dims = { 2 }, FloatData = { 1.25f, -4f } }.ToByteArray());
        Assert.Equal([1.25f, -4f], unpacked.ToFloats());
        Assert.Equal(unpacked.ToFloats(), packed.ToFloats());
        Assert.Equal([2L], unpacked.Dims);
    }

    [Fact]
    public void DefaultOpset_TakesTheDefaultDomainOnly()
    {
        var model = new ModelProto
        {
            OpsetImport =
            {
                new OperatorSetIdProto { Domain = "com.microsoft", Version = 1 },
                new OperatorSetIdProto { Domain = "ai.onnx", Version = 13 },
            },
        };
        Assert.Equal(13, model.DefaultOpset());
        Assert.Equal(1, new ModelProto().DefaultOpset());
    }

    [Fact]
    public void Shape_SymbolicDimsAreMinusOne_NoShapeIsNull()
    {
        Assert.Equal([-1L, 3L, 224L, 224L], OnnxModelBuilder.FloatValue("x", [-1, 3, 224, 224]).Shape()!);
        Assert.Null(OnnxModelBuilder.FloatValue("y", null).Shape());
        Assert.Null(new ValueInfoProto { Name = "z" }.Shape());
    }

    [Fact]
    public void Load_EmptyFile_SaysItIsEmptyAndNamesTheFile()
    {
        var path = Write("empty.onnx", []);
        var ex = Assert.Throws<InvalidDataException>(() => ModelHub.LoadBackbone(path));
        Assert.Equal($"'{path}' is not an ONNX model: the file is empty (0 bytes).", ex.Message);
    }

    [Fact]
    public void Load_NotProtobuf_FailsAsInvalidOnnxNamingTheFile()
    {
        var path = Write("html.onnx", "<html><body>404 Not Found</body></html>"u8.ToArray());
        var ex = Assert.Throws<InvalidDataException>(() => ModelHub.LoadBackbone(path));
        Assert.Equal($"'{path}' is not an ONNX model: its first bytes (3C68746D) cannot start an ONNX protobuf (it looks like an HTML or XML page).", ex.Message);
    }

    [Fact]
    public void Load_ProtobufWithoutGraph_FailsAsInvalidOnnxNamingTheFile()
    {
        var noGraph = Write("nograph.onnx", new ModelProto { IrVersion = 8, ProducerName = "x" }.ToByteArray());
        var ex = Assert.Throws<InvalidDataException>(() => ModelHub.LoadBackbone(noGraph));
        Assert.Equal($"'{noGraph}' is not an ONNX model: it has no graph (no nodes or no outputs).", ex.Message);

        var noOutput = Write("nooutput.onnx", new ModelProto { IrVersion = 8, Graph = new GraphProto { Name = "g" } }.ToByteArray());
        ex = Assert.Throws<InvalidDataException>(() => ModelHub.LoadBackbone(noOutput));
        Assert.Equal($"'{noOutput}' is not an ONNX model: it has no graph (no nodes or no outputs).", ex.Message);
    }

    [Fact]
    public void Load_ExternalData_FailsNamingTheInitializerAndWhatToDo()
    {
        var b = new OnnxModelBuilder(13, [1, 3, 4, 4]);
        var w = b.Weight(2, 3, 3, 3);
        b.Output(b.Node("Conv", ["x", w]));
        var init = b.Model.Graph.Initializer[0];
        init.ClearRawData();
        init.DataLocation = TensorProto.Types.DataLocation.External;
        init.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = "weights.bin" });
        var path = Write("external.onnx", b.Bytes());
        var ex = Assert.Throws<NotSupportedException>(() => ModelHub.LoadBackbone(path));
        Assert.Equal(
            $"The ONNX model 'external.onnx' keeps the data of initializer '{w}' in an external file ('weights.bin'), which the importer does not read. " +
            "Save the model with its weights inside the .onnx file (Python: onnx.save_model(model, path, save_as_external_data=False)).",
            ex.Message);
    }

    [Fact]
    public void Load_TruncatedModel_FailsAsInvalidOnnx()
    {
        var b = new OnnxModelBuilder(13, [1, 3, 4, 4]);
        b.Output(b.Node("Conv", ["x", b.Weight(2, 3, 3, 3)]));
        var bytes = b.Bytes();
        var path = Write("truncated.onnx", bytes[..(bytes.Length / 2)]);
        var ex = Assert.Throws<InvalidDataException>(() => ModelHub.LoadBackbone(path));
        Assert.StartsWith($"'{path}' is not a valid ONNX model (protobuf parse failed: ", ex.Message, StringComparison.Ordinal);
    }
}
