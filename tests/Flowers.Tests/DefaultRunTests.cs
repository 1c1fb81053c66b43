using System.Text.Json.Nodes;
using Spectre.Console;

namespace Flowers.Tests;

/// <summary>The no-argument run, the project's first impression: the shipped photos, offline ResNet18, the sample's recipe.</summary>
[Trait("Category", "RealData")]
public sealed class DefaultRunTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Default_Settings_AreTheShippedPhotosAndTheSampleRecipe()
    {
        var settings = TrainSettings.Default();

        // The shipped photos, found next to the app (copied there by the build) or in the source tree.
        static IEnumerable<string> Photos(string root) =>
            Directory.GetFiles(root, "*.jpg", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(root, f)).Order(StringComparer.Ordinal);
        Assert.Equal(Photos(RepoPaths.SamplePhotos), Photos(settings.Data));
        Assert.Equal(("resnet18", 20, 0, 0.3, 42, 32), (settings.Model, settings.Epochs, settings.FineTuneEpochs, settings.ValidationSplit, settings.Seed, settings.BatchSize));
        Assert.True(settings.DefaultData);
    }

    [Fact]
    public async Task DefaultRun_ShippedPhotos_ReachesAtLeast085AndComparesWithTheFullSet()
    {
        var folder = Path.Combine(RepoPaths.SamplePhotos, "daisy");
        Assert.True(Directory.Exists(folder), $"The sample's photos are committed at {RepoPaths.SamplePhotos}; restore them with git checkout.");
        var json = _dir.Combine("flowers.json");
        using var stop = new StopSignals(listen: false);
        using var output = new StringWriter();
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Ansi = AnsiSupport.No, Interactive = InteractionSupport.No, Out = new AnsiConsoleOutput(output) });
        console.Profile.Width = 400;
        using var error = new StringWriter();

        // The no-argument run (TrainSettings.Default()), writing into a temporary folder instead of artifacts/.
        var code = await TrainCommand.RunAsync(TrainSettings.Default() with { Out = _dir.Combine("flowers.tlmodel"), Json = json }, new Session(console, error, stop));

        Assert.True(code == 0, error.ToString());
        var summary = JsonNode.Parse(File.ReadAllText(json))!;
        Assert.Equal(400, (int)summary["count"]!);
        var accuracy = (double)summary["val_accuracy"]!;
        Assert.True(accuracy >= 0.85, $"validation accuracy {accuracy:F4} on {(int)summary["val_count"]!} images");
        Assert.Contains(EmbeddedData.FullSetComparison, output.ToString(), StringComparison.Ordinal);
    }
}
