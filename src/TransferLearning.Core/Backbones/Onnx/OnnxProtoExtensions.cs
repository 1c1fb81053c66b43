using System.Runtime.InteropServices;
using Google.Protobuf;
using Google.Protobuf.Collections;
using Onnx;
using DataType = Onnx.TensorProto.Types.DataType;

namespace TransferLearning.Backbones.Onnx;

/// <summary>
/// What the importer needs on top of the classes generated from ONNX's <c>onnx.proto</c> (Proto/onnx.proto): the
/// default opset, attribute look-ups with fallbacks, tensor values as floats or longs, and declared input shapes.
/// </summary>
internal static class OnnxProtoExtensions
{
    /// <summary>The opset of the default (ai.onnx) domain; 1 when the model imports none.</summary>
    public static long DefaultOpset(this ModelProto model) =>
        model.OpsetImport.Where(o => o.Domain is "" or "ai.onnx").Select(o => o.Version).DefaultIfEmpty(1).Max();

    /// <summary>The graph's first input that is not an initializer: the image input of a backbone graph.</summary>
    public static ValueInfoProto DataInput(this GraphProto graph)
    {
        var initializers = graph.Initializer.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        return graph.Input.First(i => !initializers.Contains(i.Name));
    }

    /// <summary>The first attribute called <paramref name="name"/>, if any.</summary>
    public static AttributeProto? Attr(this NodeProto node, string name)
    {
        foreach (var a in node.Attribute)
        {
            if (a.Name == name)
            {
                return a;
            }
        }

        return null;
    }

    public static long Int(this NodeProto node, string name, long fallback) => node.Attr(name) is { } a ? a.I : fallback;

    public static float Float(this NodeProto node, string name, float fallback) => node.Attr(name) is { } a ? a.F : fallback;

    public static string Str(this NodeProto node, string name, string fallback) => node.Attr(name) is { } a ? a.S.ToStringUtf8() : fallback;

    public static long[]? Ints(this NodeProto node, string name) => node.Attr(name) is { } a ? [.. a.Ints] : null;

    /// <summary>The element type (<c>data_type</c> is an int32 field in onnx.proto).</summary>
    public static DataType ElementType(this TensorProto t) => (DataType)t.DataType;

    public static long ElementCount(this TensorProto t) => t.Dims.Aggregate(1L, (a, b) => a * b);

    /// <summary>
    /// Declared dimensions of a tensor value (-1 for a symbolic or unknown dimension); null when no shape is declared.
    /// </summary>
    public static long[]? Shape(this ValueInfoProto v) =>
        v.Type?.TensorType?.Shape is { } shape
            ? [.. shape.Dim.Select(d => d.ValueCase == TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue ? d.DimValue : -1)]
            : null;

    /// <summary>A float tensor holding <paramref name="data"/> as raw_data (little-endian, as ONNX stores it).</summary>
    public static TensorProto FromFloats(string name, long[] dims, float[] data) => new()
    {
        Name = name,
        DataType = (int)DataType.Float,
        Dims = { dims },
        RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(data.AsSpan())),
    };

    /// <summary>An int64 tensor holding <paramref name="data"/> in int64_data.</summary>
    public static TensorProto FromInt64s(string name, long[] dims, long[] data) => new()
    {
        Name = name,
        DataType = (int)DataType.Int64,
        Dims = { dims },
        Int64Data = { data },
    };

    /// <summary>The values as floats (for float/double/int tensors).</summary>
    public static float[] ToFloats(this TensorProto t)
    {
        var n = checked((int)t.ElementCount());
        var type = t.ElementType();
        if (!t.RawData.IsEmpty)
        {
            var raw = t.RawData.Span;
            return type switch
            {
                DataType.Float => MemoryMarshal.Cast<byte, float>(raw).ToArray(),
                DataType.Double => MemoryMarshal.Cast<byte, double>(raw).ToArray().Select(d => (float)d).ToArray(),
                DataType.Float16 => MemoryMarshal.Cast<byte, Half>(raw).ToArray().Select(h => (float)h).ToArray(),
                _ => t.ToInt64s().Select(v => (float)v).ToArray(),
            };
        }

        return type switch
        {
            DataType.Float => t.FloatData.Count == n ? Copy(t.FloatData) : throw new InvalidDataException(
                $"ONNX tensor '{t.Name}' should hold {n} values but holds {t.FloatData.Count}."),
            DataType.Double => t.DoubleData.Select(d => (float)d).ToArray(),
            _ => t.ToInt64s().Select(v => (float)v).ToArray(),
        };
    }

    /// <summary>The values as 64-bit integers (for integer/bool tensors).</summary>
    public static long[] ToInt64s(this TensorProto t)
    {
        var type = t.ElementType();
        if (!t.RawData.IsEmpty)
        {
            var raw = t.RawData.Span;
            return type switch
            {
                DataType.Int64 => MemoryMarshal.Cast<byte, long>(raw).ToArray(),
                DataType.Int32 => MemoryMarshal.Cast<byte, int>(raw).ToArray().Select(v => (long)v).ToArray(),
                DataType.Uint8 or DataType.Bool => raw.ToArray().Select(v => (long)v).ToArray(),
                DataType.Int8 => raw.ToArray().Select(v => (long)(sbyte)v).ToArray(),
                DataType.Float => t.ToFloats().Select(v => (long)v).ToArray(),
                _ => throw new NotSupportedException($"ONNX tensor '{t.Name}' has unsupported data type {type}."),
            };
        }

        return type switch
        {
            DataType.Int64 => Copy(t.Int64Data),
            DataType.Float => t.FloatData.Select(v => (long)v).ToArray(),
            _ => t.Int32Data.Select(v => (long)v).ToArray(),
        };
    }

    /// <summary>The values as an array (one block copy; enumerating a large repeated field element by element is slow).</summary>
    private static T[] Copy<T>(RepeatedField<T> values)
    {
        var array = new T[values.Count];
        values.CopyTo(array, 0);
        return array;
    }
}
