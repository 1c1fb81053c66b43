using System.Text.Json.Nodes;
using Flowers.Tests.Support;

namespace Flowers.Tests;

/// <summary>An unreadable image costs only itself: train skips and lists it as evaluate does.</summary>
public sealed class BadImageTests : IDisposable
{
    private readonly GeneratedImages _images = new();
    private readonly TempDir _dir = new();

    public void Dispose()
    {
        _images.Dispose();
        _dir.Dispose();
    }

    [Fact]
    public async Task Train_UnreadableImagesInData_SkipsAndListsThemInJson()
    {
        var truncated = Path.Combine(_images.Root, "red", "red98-truncated.jpg");
        var jpeg = TestImages.NoiseJpegBytes(64, 64, seed: 3);
        File.WriteAllBytes(truncated, jpeg[..(jpeg.Length / 2)]);
        var huge = Path.Combine(_images.Root, "blue", "blue98-huge.png");
        File.WriteAllBytes(huge, TestImages.PngHeaderOnly(30000, 30000));
        var empty = Path.Combine(_images.Root, "blue", "blue99-empty.jpg");
        File.WriteAllBytes(empty, []);
        var json = _dir.Combine("m.json");

        var run = await FlowersCli.RunAsync(TestData.Train(_images.Root, _dir.Combine("m.tlmodel"), "--json", json));

        Assert.True(run.ExitCode == 0, run.Error);
        var skipped = JsonNode.Parse(File.ReadAllText(json))!["skipped"]!.AsArray()
            .Select(s => ((string)s!["path"]!, (string)s["reason"]!)).ToList();
        Assert.Equal(
            [
                (huge, "the PNG header declares 30000x30000 = 900,000,000 pixels, above the limit of 50,000,000 (ImageDecodeOptions.MaxPixels)"),
                (empty, "the file is empty (0 bytes)"),
                (truncated, "the JPEG data is truncated (it ends before the end-of-image marker)"),
            ],
            skipped);
        Assert.Contains("3 unreadable image(s) skipped", run.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Evaluate_EveryImageUnreadable_ExitsOneSayingSo()
    {
        var model = _dir.Combine("m.tlmodel");
        var trained = await FlowersCli.RunAsync(TestData.Train(_images.Root, model));
        Assert.True(trained.ExitCode == 0, trained.Error);
        var data = _dir.Combine("bad");
        var jpeg = TestImages.NoiseJpegBytes(64, 64, seed: 4);
        var truncated = TestImages.Ensure(Path.Combine(data, "red", "a.jpg"));
        File.WriteAllBytes(truncated, jpeg[..(jpeg.Length / 3)]);
        File.WriteAllBytes(TestImages.Ensure(Path.Combine(data, "blue", "b.png")), TestImages.PngHeaderOnly(30000, 30000));

        var run = await FlowersCli.RunAsync("evaluate", "--model", model, "--data", data);

        Assert.Equal(1, run.ExitCode);
        Assert.Equal(
            FlowersCli.ErrorLine(
                $"No image in '{data}' could be evaluated: all 2 image file(s) of the model's classes are unreadable " +
                $"(e.g. '{Path.Combine(data, "blue", "b.png")}': the PNG header declares 30000x30000 = 900,000,000 pixels, above the limit of 50,000,000 (ImageDecodeOptions.MaxPixels)). " +
                "Check the files, or point --data at another folder."),
            run.Error);
    }
}
