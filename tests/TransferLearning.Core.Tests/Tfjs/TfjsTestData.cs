using System.Text.Json.Nodes;
using static TorchSharp.torch;

namespace TransferLearning.Core.Tests.Tfjs;

/// <summary>Locates the TF.js fixtures (written by tools/tfjs/make-fixtures.js) and the shared real model.</summary>
internal static class TfjsTestData
{
    public static string FixtureDir(string name) => Path.Combine(AppContext.BaseDirectory, "TestData", "tfjs", name);

    public static string ModelJson(string name) => Path.Combine(FixtureDir(name), "model.json");

    public static JsonObject Meta(string name) => (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(FixtureDir(name), "meta.json")))!;

    public static long[] Shape(JsonObject meta, string key) => ((JsonArray)meta[key]!).Select(d => (long)d!).ToArray();

    public static float[] ReadFloats(string path)
    {
        var bytes = File.ReadAllBytes(path);
        var values = new float[bytes.Length / 4];
        Buffer.BlockCopy(bytes, 0, values, 0, values.Length * 4);
        return values;
    }

    /// <summary>An NHWC float array as an NCHW tensor.</summary>
    public static Tensor NchwFromNhwc(float[] values, long[] nhwc)
    {
        using var t = tensor(values, nhwc);
        return t.permute(0, 3, 1, 2).contiguous();
    }

    /// <summary>A network output in Keras element order (NHWC for rank 4), flattened.</summary>
    public static float[] KerasOrder(Tensor output)
    {
        using var keras = output.dim() == 4 ? output.permute(0, 2, 3, 1).contiguous() : output.contiguous();
        return keras.data<float>().ToArray();
    }

    /// <summary>Largest absolute difference; asserts it is within <paramref name="relative"/> × max|reference| (at least 1e-6).</summary>
    public static double AssertClose(float[] reference, float[] actual, double relative = 1e-4)
    {
        Assert.Equal(reference.Length, actual.Length);
        var scale = Math.Max(reference.Max(v => Math.Abs(v)), 1e-2);
        var maxDiff = 0.0;
        var worst = 0;
        for (var i = 0; i < reference.Length; i++)
        {
            var d = Math.Abs(reference[i] - actual[i]);
            if (d > maxDiff)
            {
                maxDiff = d;
                worst = i;
            }
        }

        Assert.True(
            maxDiff <= relative * scale,
            $"max |diff| {maxDiff:G6} at {worst} (ref {reference[worst]}, got {actual[worst]}) exceeds {relative} x max|ref| {scale:G6}");
        return maxDiff;
    }

    /// <summary>
    /// The real Teachable Machine MobileNetV2 (Keras, α 0.35, MIT licence in its folder), committed under
    /// <c>TestData/tfjs/teachable-machine</c>.
    /// </summary>
    public static string TeachableMachineDir => FixtureDir("teachable-machine");
}
