using Flowers.Tests.Support;

namespace Flowers.Tests;

/// <summary>Outputs never destroy inputs or each other, and a place that cannot be written is found before any work.</summary>
public sealed class OutputPathTests : IDisposable
{
    private readonly GeneratedImages _images = new();
    private readonly TempDir _dir = new();

    public void Dispose()
    {
        _images.Dispose();
        _dir.Dispose();
    }

    [Fact]
    public async Task Train_JsonSameAsOut_ExitsTwoBeforeAnyWork()
    {
        var path = _dir.Combine("flowers.tlmodel");

        var run = await FlowersCli.RunAsync(TestData.Train(_images.Root, path, "--json", path));

        Assert.Equal(2, run.ExitCode);
        Assert.Equal(
            FlowersCli.UsageLine($"--json '{path}' is the same file as --out ('{path}'); one output would overwrite the other. Give a different file name."),
            run.Error);
        Assert.Equal(string.Empty, run.Output);
        Assert.Empty(Directory.GetFileSystemEntries(_dir.Path));
    }

    [Fact]
    public async Task Train_JsonSameAsCurvesPlot_ExitsTwo()
    {
        var model = _dir.Combine("m.tlmodel");
        var plot = _dir.Combine("m.curves.png");

        var run = await FlowersCli.RunAsync(TestData.Train(_images.Root, model, "--json", plot));

        Assert.Equal(2, run.ExitCode);
        Assert.Equal(
            FlowersCli.UsageLine($"--json '{plot}' is the same file as --out's curves plot ('{plot}'); one output would overwrite the other. Give a different file name."),
            run.Error);
    }

    [Fact]
    public async Task Train_OutSameAsBackboneFile_ExitsTwoAndBackboneUntouched()
    {
        var backbone = _dir.Combine("model.json");
        File.Copy(TestData.TinyBackbone, backbone);
        File.Copy(Path.Combine(Path.GetDirectoryName(TestData.TinyBackbone)!, "weights.bin"), _dir.Combine("weights.bin"));
        var before = File.ReadAllBytes(backbone);

        var run = await FlowersCli.RunAsync(["train", "--data", _images.Root, "--model", backbone, "--out", backbone]);

        Assert.Equal(2, run.ExitCode);
        Assert.Equal(
            FlowersCli.UsageLine($"--out '{backbone}' is the same file as --model ('{backbone}'); writing it would destroy that input. Give a different file name."),
            run.Error);
        Assert.Equal(before, File.ReadAllBytes(backbone));
    }

    [Fact]
    public async Task Train_JsonOverAnImageInData_ExitsTwo()
    {
        var image = Path.Combine(_images.Root, "red", "red00.png");

        var run = await FlowersCli.RunAsync(TestData.Train(_images.Root, _dir.Combine("m.tlmodel"), "--json", image));

        Assert.Equal(2, run.ExitCode);
        Assert.Equal(FlowersCli.UsageLine($"--json '{image}' would overwrite a file inside the --data folder '{_images.Root}'. Give a file name outside it."), run.Error);
    }

    [Fact]
    public async Task Evaluate_JsonSameAsModel_ExitsTwoAndModelUntouched()
    {
        var model = _dir.Combine("flowers.tlmodel");
        File.WriteAllText(model, "a model");

        var run = await FlowersCli.RunAsync("evaluate", "--model", model, "--data", _images.Root, "--json", model);

        Assert.Equal(2, run.ExitCode);
        Assert.Equal(
            FlowersCli.UsageLine($"--json '{model}' is the same file as --model ('{model}'); writing it would destroy that input. Give a different file name."),
            run.Error);
        Assert.Equal("a model", File.ReadAllText(model));
    }

    [Fact]
    public async Task Train_OutIsCharacterDevice_ExitsTwo()
    {
        var run = await FlowersCli.RunAsync(TestData.Train(_images.Root, "/dev/null"));

        Assert.Equal(2, run.ExitCode);
        Assert.Equal(FlowersCli.UsageLine("--out '/dev/null' is a character device, not a regular file; give the name of a file to write."), run.Error);
        Assert.Equal(string.Empty, run.Output);
    }

    [Fact]
    public async Task Evaluate_JsonIsNamedPipe_ExitsTwo()
    {
        var pipe = _dir.Combine("pipe");
        using (var mkfifo = System.Diagnostics.Process.Start("mkfifo", [pipe]))
        {
            mkfifo.WaitForExit();
        }

        var model = _dir.Combine("m.tlmodel");
        File.WriteAllText(model, "a model");

        var run = await FlowersCli.RunAsync("evaluate", "--model", model, "--data", _images.Root, "--json", pipe);

        Assert.Equal(2, run.ExitCode);
        Assert.Equal(FlowersCli.UsageLine($"--json '{pipe}' is a named pipe, not a regular file; give the name of a file to write."), run.Error);
    }

    [Fact]
    public async Task Train_OutInReadOnlyFileSystem_ExitsTwoBeforeLoadingTheBackbone()
    {
        const string Out = "/sys/tl-test/flowers.tlmodel";

        var run = await FlowersCli.RunAsync(TestData.Train(_images.Root, Out));

        Assert.Equal(2, run.ExitCode);
        Assert.StartsWith(FlowersCli.ErrorLine($"--out '{Out}' cannot be written: the folder '/sys/tl-test' cannot be created ('/sys' is not writable: ").TrimEnd(), run.Error);
        Assert.EndsWith($"). Choose another location. (see --help){Environment.NewLine}", run.Error);
        Assert.Equal(string.Empty, run.Output); // nothing was loaded or printed
    }

    [Fact]
    public async Task Train_OutBelowAFile_ExitsTwo()
    {
        var file = _dir.Combine("notes.txt");
        File.WriteAllText(file, "x");
        var output = Path.Combine(file, "sub", "m.tlmodel");

        var run = await FlowersCli.RunAsync(TestData.Train(_images.Root, output));

        Assert.Equal(2, run.ExitCode);
        Assert.Equal(
            FlowersCli.UsageLine($"--out '{output}' cannot be written: '{file}' is a file, so the folder '{Path.Combine(file, "sub")}' cannot be created."),
            run.Error);
    }

    [Fact]
    public async Task Train_ValidRun_WritesModelPlotsAndJsonAndNoTemporaryFiles()
    {
        var model = _dir.Combine("out", "m.tlmodel");
        var json = _dir.Combine("out", "m.json");

        var run = await FlowersCli.RunAsync(TestData.Train(_images.Root, model, "--json", json));

        Assert.True(run.ExitCode == 0, run.Error);
        Assert.Equal(
            ["m.confusion.png", "m.curves.png", "m.json", "m.tlmodel"],
            Directory.GetFiles(_dir.Combine("out")).Select(Path.GetFileName).Order(StringComparer.Ordinal));
    }
}
