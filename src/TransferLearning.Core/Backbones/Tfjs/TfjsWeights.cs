using System.Buffers.Binary;
using System.Globalization;
using System.Text.Json.Nodes;

namespace TransferLearning.Backbones.Tfjs;

/// <summary>One decoded weight from a TF.js weights manifest: float values and the Keras shape.</summary>
internal sealed record TfjsWeight(string Name, long[] Shape, float[] Values);

/// <summary>Reads the weight shards listed in a TF.js <c>weightsManifest</c> (float32, int32, float16 and uint8/uint16 quantized).</summary>
internal static class TfjsWeights
{
    /// <summary>Decodes every weight of every group; the shards of a group are concatenated and weights follow manifest order.</summary>
    /// <param name="manifest">The <c>weightsManifest</c> array.</param>
    /// <param name="openShard">Opens a shard by the path written in the manifest (relative to model.json).</param>
    /// <param name="source">model.json's path, for error messages.</param>
    public static Dictionary<string, TfjsWeight> Read(JsonArray manifest, Func<string, Stream> openShard, string source)
    {
        var result = new Dictionary<string, TfjsWeight>(StringComparer.Ordinal);
        foreach (var groupNode in manifest)
        {
            if (groupNode is not JsonObject group || group["paths"] is not JsonArray paths || group["weights"] is not JsonArray weights)
            {
                throw new InvalidDataException($"{source}: every weightsManifest entry needs 'paths' and 'weights' arrays.");
            }

            var data = ReadShards(paths.Select(p => (string?)p ?? string.Empty).ToList(), openShard, source);
            long offset = 0;
            foreach (var specNode in weights)
            {
                if (specNode is not JsonObject spec)
                {
                    throw new InvalidDataException($"{source}: a weights entry is not a JSON object.");
                }

                var name = (string?)spec["name"] ?? throw new InvalidDataException($"{source}: a weights entry has no 'name'.");
                var shape = spec["shape"] is JsonArray s ? s.Select(d => (long)d!).ToArray() : [];
                var count = shape.Aggregate(1L, (a, b) => a * b);
                var dtype = (string?)spec["dtype"] ?? "float32";
                var values = Decode(data, ref offset, count, dtype, spec["quantization"] as JsonObject, name, source);
                result[name] = new TfjsWeight(name, shape, values);
            }
        }

        return result;
    }

    /// <summary>Zero-valued weights of the names and shapes the manifest lists (a saved model overwrites them).</summary>
    /// <param name="manifest">The <c>weightsManifest</c> array.</param>
    /// <param name="source">Where the manifest came from, for error messages.</param>
    public static Dictionary<string, TfjsWeight> Placeholders(JsonArray manifest, string source)
    {
        var result = new Dictionary<string, TfjsWeight>(StringComparer.Ordinal);
        foreach (var spec in manifest.OfType<JsonObject>().SelectMany(g => g["weights"] as JsonArray ?? []).OfType<JsonObject>())
        {
            var name = (string?)spec["name"] ?? throw new InvalidDataException($"{source}: a weights entry has no 'name'.");
            var shape = spec["shape"] is JsonArray s ? s.Select(d => (long)d!).ToArray() : [];
            result[name] = new TfjsWeight(name, shape, new float[shape.Aggregate(1L, (a, b) => a * b)]);
        }

        return result;
    }

    private static byte[] ReadShards(List<string> paths, Func<string, Stream> openShard, string source)
    {
        using var all = new MemoryStream();
        foreach (var path in paths)
        {
            Stream stream;
            try
            {
                stream = openShard(path);
            }
            catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
            {
                throw new FileNotFoundException(
                    $"{source}: the weights shard '{path}' listed in the weightsManifest could not be opened ({e.Message}). Keep the .bin files next to model.json.",
                    path,
                    e);
            }

            using (stream)
            {
                stream.CopyTo(all);
            }
        }

        return all.ToArray();
    }

    private static float[] Decode(byte[] data, ref long offset, long count, string dtype, JsonObject? quantization, string name, string source)
    {
        var storedType = quantization is null ? dtype : (string?)quantization["dtype"] ?? "?";
        var bytesPer = storedType switch
        {
            "float32" or "int32" => 4,
            "float16" or "uint16" => 2,
            "uint8" => 1,
            _ => throw new NotSupportedException(
                quantization is null
                    ? $"{source}: weight '{name}' has dtype '{dtype}'; only float32 and int32 weights are supported."
                    : $"{source}: weight '{name}' is quantized as '{storedType}'; only uint8, uint16 and float16 quantization are supported. Re-export the model without quantization."),
        };
        if (dtype != "float32" && dtype != "int32")
        {
            throw new NotSupportedException($"{source}: weight '{name}' has dtype '{dtype}'; only float32 and int32 weights are supported.");
        }

        var byteCount = count * bytesPer;
        if (offset + byteCount > data.LongLength)
        {
            throw new InvalidDataException(
                $"{source}: the weight shards are too short: weight '{name}' needs bytes {offset}..{offset + byteCount} but the shards hold {data.LongLength} bytes. The .bin files are truncated or do not belong to this model.json.");
        }

        var span = data.AsSpan(checked((int)offset), checked((int)byteCount));
        offset += byteCount;
        var values = new float[count];
        switch (storedType)
        {
            case "float32":
                for (var i = 0; i < values.Length; i++)
                {
                    values[i] = BinaryPrimitives.ReadSingleLittleEndian(span[(i * 4)..]);
                }

                break;
            case "int32":
                for (var i = 0; i < values.Length; i++)
                {
                    values[i] = BinaryPrimitives.ReadInt32LittleEndian(span[(i * 4)..]);
                }

                break;
            case "float16":
                for (var i = 0; i < values.Length; i++)
                {
                    values[i] = (float)BinaryPrimitives.ReadHalfLittleEndian(span[(i * 2)..]);
                }

                break;
            default:
                var scale = ReadNumber(quantization!, "scale", name, source);
                var min = ReadNumber(quantization!, "min", name, source);
                for (var i = 0; i < values.Length; i++)
                {
                    double q = storedType == "uint8" ? span[i] : BinaryPrimitives.ReadUInt16LittleEndian(span[(i * 2)..]);
                    values[i] = (float)((q * scale) + min);
                }

                break;
        }

        if (dtype == "int32" && quantization is not null)
        {
            for (var i = 0; i < values.Length; i++)
            {
                values[i] = MathF.Round(values[i]);
            }
        }

        return values;
    }

    private static double ReadNumber(JsonObject quantization, string key, string name, string source)
    {
        var node = quantization[key];
        if (node is null)
        {
            throw new InvalidDataException($"{source}: weight '{name}' is quantized but its quantization has no '{key}'.");
        }

        return double.Parse(node.ToJsonString(), NumberStyles.Float, CultureInfo.InvariantCulture);
    }
}
