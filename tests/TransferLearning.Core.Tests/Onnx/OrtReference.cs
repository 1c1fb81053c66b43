using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace TransferLearning.Core.Tests.Onnx;

/// <summary>Runs models with ONNX Runtime as the reference implementation.</summary>
internal static class OrtReference
{
    public static float[] Run(InferenceSession session, float[] data, int[] dims, string? outputName = null)
    {
        var inputName = session.InputMetadata.Keys.First();
        var input = new DenseTensor<float>(data, dims);
        using var results = session.Run([NamedOnnxValue.CreateFromTensor(inputName, input)]);
        var result = outputName is null ? results[0] : results.First(r => r.Name == outputName);
        return result.AsEnumerable<float>().ToArray();
    }

    public static float[] Run(byte[] model, float[] data, int[] dims)
    {
        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL };
        using var session = new InferenceSession(model, options);
        return Run(session, data, dims);
    }

    /// <summary>Asserts max|a-b| ≤ tolerance · max(max|b|, 1e-3) and equal lengths.</summary>
    public static void AssertClose(float[] expected, float[] actual, double relative = 1e-4, string what = "")
    {
        Assert.Equal(expected.Length, actual.Length);
        double maxDiff = 0, maxRef = 1e-3;
        for (var i = 0; i < expected.Length; i++)
        {
            maxDiff = Math.Max(maxDiff, Math.Abs(expected[i] - actual[i]));
            maxRef = Math.Max(maxRef, Math.Abs(expected[i]));
        }

        Assert.True(maxDiff <= relative * maxRef, $"{what}: max |diff| {maxDiff:G4} exceeds {relative:G2} × max |ref| {maxRef:G4}.");
    }
}
