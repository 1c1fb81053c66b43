namespace TransferLearning.Inference.Tests;

/// <summary>The committed fixtures (see TestData/README.md) and a spread of the shipped sample photos.</summary>
internal static class Fixtures
{
    /// <summary>24×32 (H×W), 5 flower classes, resize "stretch".</summary>
    public static string Flowers => Model("flowers_stretch.onnx");

    /// <summary>16×16, 3 classes, resize "center-crop".</summary>
    public static string SquareCrop => Model("square_crop.onnx");

    /// <summary>Logits [1, 3, 3, 0, 3] whatever the image.</summary>
    public static string Ties => Model("ties.onnx");

    public static string Model(string name) => RepoPaths.TestData("inference", name);

    /// <summary>A committed 32×24 PNG (for tests where the picture does not matter).</summary>
    public static string Picture => Model("flowers_stretch_noise.png");

    /// <summary>The six committed fixture PNGs (32×24 and 16×16).</summary>
    public static string[] Pictures =>
        [.. new[] { "flowers_stretch", "square_crop" }.SelectMany(m => new[] { "noise", "gradient", "halves" }.Select(k => Model($"{m}_{k}.png")))];

    /// <summary>
    /// <paramref name="count"/> photos from <c>samples/Flowers/data</c>, spread over every class (ordinal order, every
    /// k-th); tests using them are tagged <c>Category=RealData</c>.
    /// </summary>
    public static string[] Photos(int count)
    {
        var all = Directory.GetFiles(RepoPaths.SamplePhotos, "*.jpg", SearchOption.AllDirectories);
        Array.Sort(all, StringComparer.Ordinal);
        var step = Math.Max(1, all.Length / count);
        return [.. all.Where((_, i) => i % step == 0).Take(count)];
    }
}
