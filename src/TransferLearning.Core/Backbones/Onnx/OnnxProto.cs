using Google.Protobuf;

namespace TransferLearning.Backbones.Onnx;

// A small hand-written reader/writer for the parts of onnx.proto (proto2) that image backbones use.
// Field numbers follow onnx.proto; unknown fields are skipped. Repeated scalars are read packed or unpacked.

/// <summary>ONNX tensor element types (TensorProto.DataType).</summary>
internal enum OnnxDataType
{
    Undefined = 0,
    Float = 1,
    UInt8 = 2,
    Int8 = 3,
    UInt16 = 4,
    Int16 = 5,
    Int32 = 6,
    Int64 = 7,
    String = 8,
    Bool = 9,
    Float16 = 10,
    Double = 11,
    UInt32 = 12,
    UInt64 = 13,
}

/// <summary>AttributeProto.AttributeType.</summary>
internal enum OnnxAttributeType
{
    Undefined = 0,
    Float = 1,
    Int = 2,
    String = 3,
    Tensor = 4,
    Graph = 5,
    Floats = 6,
    Ints = 7,
    Strings = 8,
}

internal sealed class OnnxModel
{
    public long IrVersion { get; set; } = 8;
    public string ProducerName { get; set; } = "";
    public OnnxGraph Graph { get; set; } = new();
    public List<(string Domain, long Version)> OpsetImports { get; } = [];

    /// <summary>The opset of the default (ai.onnx) domain.</summary>
    public long Opset => OpsetImports.Where(o => o.Domain is "" or "ai.onnx").Select(o => o.Version).DefaultIfEmpty(1).Max();

    public static OnnxModel Parse(byte[] bytes)
    {
        var input = new CodedInputStream(bytes);
        var m = new OnnxModel();
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            switch (WireFormat.GetTagFieldNumber(tag))
            {
                case 1: m.IrVersion = input.ReadInt64(); break;
                case 2: m.ProducerName = input.ReadString(); break;
                case 7: m.Graph = OnnxGraph.Parse(input.ReadBytes()); break;
                case 8:
                    {
                        var sub = new CodedInputStream(input.ReadBytes().ToByteArray());
                        string domain = "";
                        long version = 0;
                        uint t;
                        while ((t = sub.ReadTag()) != 0)
                        {
                            switch (WireFormat.GetTagFieldNumber(t))
                            {
                                case 1: domain = sub.ReadString(); break;
                                case 2: version = sub.ReadInt64(); break;
                                default: sub.SkipLastField(); break;
                            }
                        }

                        m.OpsetImports.Add((domain, version));
                        break;
                    }

                default: input.SkipLastField(); break;
            }
        }

        return m;
    }

    public byte[] ToByteArray()
    {
        using var ms = new MemoryStream();
        var o = new CodedOutputStream(ms);
        o.WriteTag(1, WireFormat.WireType.Varint);
        o.WriteInt64(IrVersion);
        if (ProducerName.Length > 0)
        {
            o.WriteTag(2, WireFormat.WireType.LengthDelimited);
            o.WriteString(ProducerName);
        }

        o.WriteTag(7, WireFormat.WireType.LengthDelimited);
        o.WriteBytes(ByteString.CopyFrom(Graph.ToByteArray()));
        foreach (var (domain, version) in OpsetImports)
        {
            using var sm = new MemoryStream();
            var so = new CodedOutputStream(sm);
            so.WriteTag(1, WireFormat.WireType.LengthDelimited);
            so.WriteString(domain);
            so.WriteTag(2, WireFormat.WireType.Varint);
            so.WriteInt64(version);
            so.Flush();
            o.WriteTag(8, WireFormat.WireType.LengthDelimited);
            o.WriteBytes(ByteString.CopyFrom(sm.ToArray()));
        }

        o.Flush();
        return ms.ToArray();
    }
}

internal sealed class OnnxGraph
{
    public string Name { get; set; } = "graph";
    public List<OnnxNode> Nodes { get; } = [];
    public List<OnnxTensor> Initializers { get; } = [];
    public List<OnnxValueInfo> Inputs { get; } = [];
    public List<OnnxValueInfo> Outputs { get; } = [];

    public static OnnxGraph Parse(ByteString bytes)
    {
        var input = new CodedInputStream(bytes.ToByteArray());
        var g = new OnnxGraph();
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            switch (WireFormat.GetTagFieldNumber(tag))
            {
                case 1: g.Nodes.Add(OnnxNode.Parse(input.ReadBytes())); break;
                case 2: g.Name = input.ReadString(); break;
                case 5: g.Initializers.Add(OnnxTensor.Parse(input.ReadBytes())); break;
                case 11: g.Inputs.Add(OnnxValueInfo.Parse(input.ReadBytes())); break;
                case 12: g.Outputs.Add(OnnxValueInfo.Parse(input.ReadBytes())); break;
                default: input.SkipLastField(); break;
            }
        }

        return g;
    }

    public byte[] ToByteArray()
    {
        using var ms = new MemoryStream();
        var o = new CodedOutputStream(ms);
        foreach (var n in Nodes)
        {
            ProtoWrite.Message(o, 1, n.ToByteArray());
        }

        ProtoWrite.String(o, 2, Name);
        foreach (var t in Initializers)
        {
            ProtoWrite.Message(o, 5, t.ToByteArray());
        }

        foreach (var v in Inputs)
        {
            ProtoWrite.Message(o, 11, v.ToByteArray());
        }

        foreach (var v in Outputs)
        {
            ProtoWrite.Message(o, 12, v.ToByteArray());
        }

        o.Flush();
        return ms.ToArray();
    }
}

internal sealed class OnnxNode
{
    public List<string> Inputs { get; } = [];
    public List<string> Outputs { get; } = [];
    public string Name { get; set; } = "";
    public string OpType { get; set; } = "";
    public string Domain { get; set; } = "";
    public List<OnnxAttribute> Attributes { get; } = [];

    public OnnxAttribute? Attr(string name) => Attributes.Find(a => a.Name == name);

    public long Int(string name, long fallback) => Attr(name) is { } a ? a.I : fallback;

    public float Float(string name, float fallback) => Attr(name) is { } a ? a.F : fallback;

    public string Str(string name, string fallback) => Attr(name) is { } a ? a.S.ToStringUtf8() : fallback;

    public long[]? Ints(string name) => Attr(name) is { } a ? a.Ints.ToArray() : null;

    public static OnnxNode Parse(ByteString bytes)
    {
        var input = new CodedInputStream(bytes.ToByteArray());
        var n = new OnnxNode();
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            switch (WireFormat.GetTagFieldNumber(tag))
            {
                case 1: n.Inputs.Add(input.ReadString()); break;
                case 2: n.Outputs.Add(input.ReadString()); break;
                case 3: n.Name = input.ReadString(); break;
                case 4: n.OpType = input.ReadString(); break;
                case 5: n.Attributes.Add(OnnxAttribute.Parse(input.ReadBytes())); break;
                case 7: n.Domain = input.ReadString(); break;
                default: input.SkipLastField(); break;
            }
        }

        return n;
    }

    public byte[] ToByteArray()
    {
        using var ms = new MemoryStream();
        var o = new CodedOutputStream(ms);
        foreach (var s in Inputs)
        {
            o.WriteTag(1, WireFormat.WireType.LengthDelimited);
            o.WriteString(s);
        }

        foreach (var s in Outputs)
        {
            o.WriteTag(2, WireFormat.WireType.LengthDelimited);
            o.WriteString(s);
        }

        ProtoWrite.String(o, 3, Name);
        ProtoWrite.String(o, 4, OpType);
        foreach (var a in Attributes)
        {
            ProtoWrite.Message(o, 5, a.ToByteArray());
        }

        if (Domain.Length > 0)
        {
            ProtoWrite.String(o, 7, Domain);
        }

        o.Flush();
        return ms.ToArray();
    }
}

internal sealed class OnnxAttribute
{
    public string Name { get; set; } = "";
    public OnnxAttributeType Type { get; set; }
    public float F { get; set; }
    public long I { get; set; }
    public ByteString S { get; set; } = ByteString.Empty;
    public OnnxTensor? T { get; set; }
    public List<float> Floats { get; } = [];
    public List<long> Ints { get; } = [];
    public List<ByteString> Strings { get; } = [];

    public static OnnxAttribute Parse(ByteString bytes)
    {
        var input = new CodedInputStream(bytes.ToByteArray());
        var a = new OnnxAttribute();
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            var wire = WireFormat.GetTagWireType(tag);
            switch (WireFormat.GetTagFieldNumber(tag))
            {
                case 1: a.Name = input.ReadString(); break;
                case 2: a.F = input.ReadFloat(); break;
                case 3: a.I = input.ReadInt64(); break;
                case 4: a.S = input.ReadBytes(); break;
                case 5: a.T = OnnxTensor.Parse(input.ReadBytes()); break;
                case 7: ProtoRead.Floats(input, wire, a.Floats); break;
                case 8: ProtoRead.Int64s(input, wire, a.Ints); break;
                case 9: a.Strings.Add(input.ReadBytes()); break;
                case 20: a.Type = (OnnxAttributeType)input.ReadInt32(); break;
                default: input.SkipLastField(); break;
            }
        }

        if (a.Type == OnnxAttributeType.Undefined)
        {
            // Very old exporters omit the type; infer it from what is set.
            a.Type = a.T is not null ? OnnxAttributeType.Tensor
                : a.Ints.Count > 0 ? OnnxAttributeType.Ints
                : a.Floats.Count > 0 ? OnnxAttributeType.Floats
                : !a.S.IsEmpty ? OnnxAttributeType.String
                : a.F != 0 ? OnnxAttributeType.Float : OnnxAttributeType.Int;
        }

        return a;
    }

    public byte[] ToByteArray()
    {
        using var ms = new MemoryStream();
        var o = new CodedOutputStream(ms);
        ProtoWrite.String(o, 1, Name);
        switch (Type)
        {
            case OnnxAttributeType.Float:
                o.WriteTag(2, WireFormat.WireType.Fixed32);
                o.WriteFloat(F);
                break;
            case OnnxAttributeType.Int:
                o.WriteTag(3, WireFormat.WireType.Varint);
                o.WriteInt64(I);
                break;
            case OnnxAttributeType.String:
                o.WriteTag(4, WireFormat.WireType.LengthDelimited);
                o.WriteBytes(S);
                break;
            case OnnxAttributeType.Tensor:
                ProtoWrite.Message(o, 5, T!.ToByteArray());
                break;
            case OnnxAttributeType.Floats:
                foreach (var f in Floats)
                {
                    o.WriteTag(7, WireFormat.WireType.Fixed32);
                    o.WriteFloat(f);
                }

                break;
            case OnnxAttributeType.Ints:
                foreach (var i in Ints)
                {
                    o.WriteTag(8, WireFormat.WireType.Varint);
                    o.WriteInt64(i);
                }

                break;
            case OnnxAttributeType.Strings:
                foreach (var s in Strings)
                {
                    o.WriteTag(9, WireFormat.WireType.LengthDelimited);
                    o.WriteBytes(s);
                }

                break;
            default:
                throw new InvalidOperationException($"Cannot write attribute type {Type}.");
        }

        o.WriteTag(20, WireFormat.WireType.Varint);
        o.WriteInt32((int)Type);
        o.Flush();
        return ms.ToArray();
    }
}

internal sealed class OnnxTensor
{
    public string Name { get; set; } = "";
    public List<long> Dims { get; } = [];
    public OnnxDataType DataType { get; set; }
    public ByteString RawData { get; set; } = ByteString.Empty;
    public List<float> FloatData { get; } = [];
    public List<long> Int64Data { get; } = [];
    public List<long> Int32Data { get; } = [];
    public List<double> DoubleData { get; } = [];
    public bool IsExternal { get; set; }

    public long ElementCount => Dims.Aggregate(1L, (a, b) => a * b);

    public static OnnxTensor Parse(ByteString bytes)
    {
        var input = new CodedInputStream(bytes.ToByteArray());
        var t = new OnnxTensor();
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            var wire = WireFormat.GetTagWireType(tag);
            switch (WireFormat.GetTagFieldNumber(tag))
            {
                case 1: ProtoRead.Int64s(input, wire, t.Dims); break;
                case 2: t.DataType = (OnnxDataType)input.ReadInt32(); break;
                case 4: ProtoRead.Floats(input, wire, t.FloatData); break;
                case 5: ProtoRead.Int64s(input, wire, t.Int32Data); break;
                case 7: ProtoRead.Int64s(input, wire, t.Int64Data); break;
                case 8: t.Name = input.ReadString(); break;
                case 9: t.RawData = input.ReadBytes(); break;
                case 10: ProtoRead.Doubles(input, wire, t.DoubleData); break;
                case 14: t.IsExternal = input.ReadInt32() == 1; break;
                default: input.SkipLastField(); break;
            }
        }

        return t;
    }

    public static OnnxTensor FromFloats(string name, long[] dims, float[] data)
    {
        var t = new OnnxTensor { Name = name, DataType = OnnxDataType.Float };
        t.Dims.AddRange(dims);
        var raw = new byte[data.Length * 4];
        Buffer.BlockCopy(data, 0, raw, 0, raw.Length);
        t.RawData = ByteString.CopyFrom(raw);
        return t;
    }

    public static OnnxTensor FromInt64s(string name, long[] dims, long[] data)
    {
        var t = new OnnxTensor { Name = name, DataType = OnnxDataType.Int64 };
        t.Dims.AddRange(dims);
        t.Int64Data.AddRange(data);
        return t;
    }

    /// <summary>The values as floats (for float/double/int tensors).</summary>
    public float[] ToFloats()
    {
        var n = checked((int)ElementCount);
        if (!RawData.IsEmpty)
        {
            var raw = RawData.Span;
            return DataType switch
            {
                OnnxDataType.Float => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(raw).ToArray(),
                OnnxDataType.Double => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, double>(raw).ToArray().Select(d => (float)d).ToArray(),
                OnnxDataType.Float16 => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, Half>(raw).ToArray().Select(h => (float)h).ToArray(),
                _ => ToInt64s().Select(v => (float)v).ToArray(),
            };
        }

        return DataType switch
        {
            OnnxDataType.Float => FloatData.Count == n ? [.. FloatData] : throw Bad(n),
            OnnxDataType.Double => DoubleData.Select(d => (float)d).ToArray(),
            _ => ToInt64s().Select(v => (float)v).ToArray(),
        };
    }

    /// <summary>The values as 64-bit integers (for integer/bool tensors).</summary>
    public long[] ToInt64s()
    {
        if (!RawData.IsEmpty)
        {
            var raw = RawData.Span;
            return DataType switch
            {
                OnnxDataType.Int64 => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, long>(raw).ToArray(),
                OnnxDataType.Int32 => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, int>(raw).ToArray().Select(v => (long)v).ToArray(),
                OnnxDataType.UInt8 or OnnxDataType.Bool => raw.ToArray().Select(v => (long)v).ToArray(),
                OnnxDataType.Int8 => raw.ToArray().Select(v => (long)(sbyte)v).ToArray(),
                OnnxDataType.Float => ToFloats().Select(v => (long)v).ToArray(),
                _ => throw new NotSupportedException($"ONNX tensor '{Name}' has unsupported data type {DataType}."),
            };
        }

        return DataType switch
        {
            OnnxDataType.Int64 => [.. Int64Data],
            OnnxDataType.Float => FloatData.Select(v => (long)v).ToArray(),
            _ => [.. Int32Data],
        };
    }

    private InvalidDataException Bad(int n) =>
        new($"ONNX tensor '{Name}' should hold {n} values but holds {FloatData.Count}.");

    public byte[] ToByteArray()
    {
        using var ms = new MemoryStream();
        var o = new CodedOutputStream(ms);
        foreach (var d in Dims)
        {
            o.WriteTag(1, WireFormat.WireType.Varint);
            o.WriteInt64(d);
        }

        o.WriteTag(2, WireFormat.WireType.Varint);
        o.WriteInt32((int)DataType);
        if (FloatData.Count > 0)
        {
            foreach (var f in FloatData)
            {
                o.WriteTag(4, WireFormat.WireType.Fixed32);
                o.WriteFloat(f);
            }
        }

        foreach (var v in Int64Data)
        {
            o.WriteTag(7, WireFormat.WireType.Varint);
            o.WriteInt64(v);
        }

        ProtoWrite.String(o, 8, Name);
        if (!RawData.IsEmpty)
        {
            o.WriteTag(9, WireFormat.WireType.LengthDelimited);
            o.WriteBytes(RawData);
        }

        o.Flush();
        return ms.ToArray();
    }
}

internal sealed class OnnxValueInfo
{
    public string Name { get; set; } = "";
    public OnnxDataType ElemType { get; set; } = OnnxDataType.Float;

    /// <summary>Dimensions; -1 for a symbolic or unknown dimension. Null when the shape is unknown.</summary>
    public List<long>? Shape { get; set; }

    public static OnnxValueInfo Parse(ByteString bytes)
    {
        var input = new CodedInputStream(bytes.ToByteArray());
        var v = new OnnxValueInfo();
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            switch (WireFormat.GetTagFieldNumber(tag))
            {
                case 1: v.Name = input.ReadString(); break;
                case 2: ParseType(input.ReadBytes(), v); break;
                default: input.SkipLastField(); break;
            }
        }

        return v;
    }

    private static void ParseType(ByteString bytes, OnnxValueInfo v)
    {
        var input = new CodedInputStream(bytes.ToByteArray());
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            if (WireFormat.GetTagFieldNumber(tag) != 1)
            {
                input.SkipLastField();
                continue;
            }

            var tensor = new CodedInputStream(input.ReadBytes().ToByteArray());
            uint t;
            while ((t = tensor.ReadTag()) != 0)
            {
                switch (WireFormat.GetTagFieldNumber(t))
                {
                    case 1: v.ElemType = (OnnxDataType)tensor.ReadInt32(); break;
                    case 2:
                        {
                            v.Shape = [];
                            var shape = new CodedInputStream(tensor.ReadBytes().ToByteArray());
                            uint s;
                            while ((s = shape.ReadTag()) != 0)
                            {
                                if (WireFormat.GetTagFieldNumber(s) != 1)
                                {
                                    shape.SkipLastField();
                                    continue;
                                }

                                var dim = new CodedInputStream(shape.ReadBytes().ToByteArray());
                                long value = -1;
                                uint d;
                                while ((d = dim.ReadTag()) != 0)
                                {
                                    if (WireFormat.GetTagFieldNumber(d) == 1)
                                    {
                                        value = dim.ReadInt64();
                                    }
                                    else
                                    {
                                        dim.SkipLastField();
                                    }
                                }

                                v.Shape.Add(value);
                            }

                            break;
                        }

                    default: tensor.SkipLastField(); break;
                }
            }
        }
    }

    public byte[] ToByteArray()
    {
        using var shape = new MemoryStream();
        var so = new CodedOutputStream(shape);
        foreach (var d in Shape ?? [])
        {
            using var dm = new MemoryStream();
            var dout = new CodedOutputStream(dm);
            if (d >= 0)
            {
                dout.WriteTag(1, WireFormat.WireType.Varint);
                dout.WriteInt64(d);
            }
            else
            {
                dout.WriteTag(2, WireFormat.WireType.LengthDelimited);
                dout.WriteString("N");
            }

            dout.Flush();
            ProtoWrite.Message(so, 1, dm.ToArray());
        }

        so.Flush();
        using var tensor = new MemoryStream();
        var to = new CodedOutputStream(tensor);
        to.WriteTag(1, WireFormat.WireType.Varint);
        to.WriteInt32((int)ElemType);
        if (Shape is not null)
        {
            ProtoWrite.Message(to, 2, shape.ToArray());
        }

        to.Flush();
        using var type = new MemoryStream();
        var tyo = new CodedOutputStream(type);
        ProtoWrite.Message(tyo, 1, tensor.ToArray());
        tyo.Flush();
        using var ms = new MemoryStream();
        var o = new CodedOutputStream(ms);
        ProtoWrite.String(o, 1, Name);
        ProtoWrite.Message(o, 2, type.ToArray());
        o.Flush();
        return ms.ToArray();
    }
}

internal static class ProtoRead
{
    public static void Int64s(CodedInputStream input, WireFormat.WireType wire, List<long> into)
    {
        if (wire == WireFormat.WireType.LengthDelimited)
        {
            var sub = new CodedInputStream(input.ReadBytes().ToByteArray());
            while (!sub.IsAtEnd)
            {
                into.Add(sub.ReadInt64());
            }
        }
        else
        {
            into.Add(input.ReadInt64());
        }
    }

    public static void Floats(CodedInputStream input, WireFormat.WireType wire, List<float> into)
    {
        if (wire == WireFormat.WireType.LengthDelimited)
        {
            var bytes = input.ReadBytes().Span;
            into.AddRange(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes).ToArray());
        }
        else
        {
            into.Add(input.ReadFloat());
        }
    }

    public static void Doubles(CodedInputStream input, WireFormat.WireType wire, List<double> into)
    {
        if (wire == WireFormat.WireType.LengthDelimited)
        {
            var bytes = input.ReadBytes().Span;
            into.AddRange(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, double>(bytes).ToArray());
        }
        else
        {
            into.Add(input.ReadDouble());
        }
    }
}

internal static class ProtoWrite
{
    public static void String(CodedOutputStream o, int field, string value)
    {
        o.WriteTag(field, WireFormat.WireType.LengthDelimited);
        o.WriteString(value);
    }

    public static void Message(CodedOutputStream o, int field, byte[] bytes)
    {
        o.WriteTag(field, WireFormat.WireType.LengthDelimited);
        o.WriteBytes(ByteString.CopyFrom(bytes));
    }
}
