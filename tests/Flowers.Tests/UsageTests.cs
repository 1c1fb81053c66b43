using Flowers.Tests.Support;

namespace Flowers.Tests;

/// <summary>A wrong command line is told in plain words, naming the argument, with exit code 2, before any work.</summary>
public sealed class UsageTests : IDisposable
{
    private readonly GeneratedImages _images = new();
    private readonly TempDir _dir = new();

    public void Dispose()
    {
        _images.Dispose();
        _dir.Dispose();
    }

    private string Model => _dir.Combine("m.tlmodel");

    [Theory]
    [InlineData("--batch-size", "1073741824", "--batch-size must be from 1 to 1,024 (got 1073741824).")]
    [InlineData("--batch-size", "0", "--batch-size must be from 1 to 1,024 (got 0).")]
    [InlineData("--epochs", "0", "--epochs must be from 1 to 10,000 (got 0).")]
    [InlineData("--epochs", "2147483647", "--epochs must be from 1 to 10,000 (got 2147483647).")]
    [InlineData("--fine-tune-epochs", "-1", "--fine-tune-epochs must be from 0 to 10,000 (got -1).")]
    [InlineData("--validation-split", "1", "--validation-split must be between 0 and 1, exclusive (got 1).")]
    public async Task Train_OptionOutOfRange_ExitsTwoNamingTheRange(string option, string value, string message)
    {
        var run = await FlowersCli.RunAsync(TestData.Train(_images.Root, Model, option, value));

        Assert.Equal(2, run.ExitCode);
        Assert.Equal(FlowersCli.UsageLine(message), run.Error);
        Assert.Equal(string.Empty, run.Output);
    }

    [Fact]
    public async Task Train_ValidationSplitLeavesNoTrainingImages_ExitsTwoInPlainWords()
    {
        var run = await FlowersCli.RunAsync(TestData.Train(_images.Root, Model, "--validation-split", "0.99"));

        Assert.Equal(2, run.ExitCode);
        Assert.Equal(
            FlowersCli.UsageLine(
                $"--validation-split 0.99 leaves no training images (all 20 images of '{_images.Root}' would be held out for validation); lower it, e.g. to 0.3, or add images."),
            run.Error);
        Assert.False(File.Exists(Model));
    }

    [Fact]
    public async Task Train_DataIsAFile_SaysItIsAFile()
    {
        var image = Path.Combine(_images.Root, "red", "red00.png");

        var run = await FlowersCli.RunAsync(TestData.Train(image, Model));

        Assert.Equal(2, run.ExitCode);
        Assert.Equal(FlowersCli.UsageLine($"--data '{image}' is a file, not a folder; give the folder that holds one sub-folder of images per class."), run.Error);
    }

    [Fact]
    public async Task Train_DataMissing_ExitsTwo()
    {
        var missing = _dir.Combine("no-such-folder");

        var run = await FlowersCli.RunAsync(TestData.Train(missing, Model));

        Assert.Equal(2, run.ExitCode);
        Assert.Equal(FlowersCli.UsageLine($"--data: the folder '{missing}' does not exist."), run.Error);
    }

    [Fact]
    public async Task Train_BackboneFileMissing_ExitsTwo()
    {
        var missing = _dir.Combine("no-such.onnx");

        var run = await FlowersCli.RunAsync("train", "--data", _images.Root, "--model", missing, "--out", Model);

        Assert.Equal(2, run.ExitCode);
        Assert.Equal(FlowersCli.UsageLine($"--model: '{missing}' is neither an existing file, an http(s) URL, nor a short name (resnet18)."), run.Error);
    }

    [Fact]
    public async Task Evaluate_ModelMissing_ExitsTwo()
    {
        var run = await FlowersCli.RunAsync("evaluate", "--model", Model, "--data", _images.Root);

        Assert.Equal(2, run.ExitCode);
        Assert.Equal(FlowersCli.UsageLine($"--model: the file '{Model}' does not exist."), run.Error);
    }

    [Fact]
    public async Task Evaluate_DataIsAFile_SaysItIsAFile()
    {
        File.WriteAllText(Model, "a model");
        var image = Path.Combine(_images.Root, "red", "red00.png");

        var run = await FlowersCli.RunAsync("evaluate", "--model", Model, "--data", image);

        Assert.Equal(2, run.ExitCode);
        Assert.Equal(FlowersCli.UsageLine($"--data '{image}' is a file, not a folder; give the folder that holds one sub-folder of images per class."), run.Error);
    }

    [Fact]
    public async Task Predict_ImageIsAFolder_SaysItIsAFolder()
    {
        File.WriteAllText(Model, "a model");
        var folder = Path.Combine(_images.Root, "red");

        var run = await FlowersCli.RunAsync("predict", "--model", Model, folder);

        Assert.Equal(2, run.ExitCode);
        Assert.Equal(FlowersCli.UsageLine($"IMAGE '{folder}' is a folder, not an image file; pass the image files in it instead (e.g. {folder}/*.jpg)."), run.Error);
    }

    [Fact]
    public async Task Predict_ModelIsAFolder_SaysItIsAFolder()
    {
        var run = await FlowersCli.RunAsync("predict", "--model", _dir.Path, Path.Combine(_images.Root, "red", "red00.png"));

        Assert.Equal(2, run.ExitCode);
        Assert.Equal(FlowersCli.UsageLine($"--model '{_dir.Path}' is a folder, not a file."), run.Error);
    }

    [Fact]
    public async Task Train_EmptyOnnxBackbone_SaysItIsEmptyNotOnnx()
    {
        var onnx = _dir.Combine("empty.onnx");
        File.WriteAllBytes(onnx, []);

        var run = await FlowersCli.RunAsync("train", "--data", _images.Root, "--model", onnx, "--out", Model);

        Assert.Equal(1, run.ExitCode);
        Assert.Equal(FlowersCli.ErrorLine($"'{onnx}' is not an ONNX model: the file is empty (0 bytes)."), run.Error);
    }

    [Fact]
    public async Task Train_PthWhoseNameHidesTheArchitecture_AsksForArchitectureOption()
    {
        var pth = _dir.Combine("weights.pth");
        File.WriteAllBytes(pth, RandomBytes(4096));

        var run = await FlowersCli.RunAsync("train", "--data", _images.Root, "--model", pth, "--out", Model);

        Assert.Equal(2, run.ExitCode);
        Assert.Equal(
            FlowersCli.UsageLine(
                "Cannot tell the architecture of 'weights.pth' from its name; set --architecture to one of: efficientnet_b0, mobilenet_v2, " +
                "mobilenet_v3_large, mobilenet_v3_small, resnet101, resnet152, resnet18, resnet34, resnet50. (Parameter 'architecture')"),
            run.Error);
    }

    [Fact]
    public async Task Train_RandomBytesPthWithArchitecture_FailsNamingTheCommandLineOption()
    {
        var pth = _dir.Combine("weights.pth");
        File.WriteAllBytes(pth, RandomBytes(4096));

        var run = await FlowersCli.RunAsync("train", "--data", _images.Root, "--model", pth, "--architecture", "resnet18", "--out", Model);

        Assert.Equal(1, run.ExitCode);
        Assert.StartsWith("flowers: error: Could not load 'weights.pth' as a torchvision resnet18 state dict (", run.Error, StringComparison.Ordinal);
        Assert.EndsWith($"Give the right --architecture, or a state dict (not a whole pickled model).{Environment.NewLine}", run.Error, StringComparison.Ordinal);
        Assert.DoesNotContain("BackboneLoadOptions", run.Error, StringComparison.Ordinal);
    }

    private static byte[] RandomBytes(int count)
    {
        var bytes = new byte[count];
        new Random(5).NextBytes(bytes);
        return bytes;
    }
}
