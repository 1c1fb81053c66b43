using System.Diagnostics;
using Spectre.Console;
using TransferLearning;
using TransferLearning.Datasets;

namespace Flowers;

/// <summary>What <c>train</c> (and the no-argument default run) does.</summary>
internal sealed record TrainSettings(
    string Data,
    string Model,
    int Epochs,
    int FineTuneEpochs,
    double ValidationSplit,
    int Seed,
    int BatchSize,
    string Out,
    string? Json,
    bool DefaultData)
{
    public const string DefaultModelPath = "artifacts/flowers/flowers.tlmodel";

    /// <summary>The default run: the photos shipped with the sample, offline ResNet18, frozen, 6 epochs.</summary>
    public static TrainSettings Default() =>
        new(EmbeddedData.Locate(), "resnet18", 6, 0, 0.3, 42, 32, DefaultModelPath, null, DefaultData: true);

    public void Validate()
    {
        if (!Directory.Exists(Data))
        {
            throw new UsageException($"--data: the folder '{Data}' does not exist.");
        }

        if (string.IsNullOrWhiteSpace(Model))
        {
            throw new UsageException("--model must name a backbone: resnet18, a model file path or an http(s) URL.");
        }

        if (Epochs < 1)
        {
            throw new UsageException($"--epochs must be at least 1 (got {Epochs}).");
        }

        if (FineTuneEpochs < 0)
        {
            throw new UsageException($"--fine-tune-epochs must be 0 or more (got {FineTuneEpochs}).");
        }

        if (!(ValidationSplit > 0 && ValidationSplit < 1))
        {
            throw new UsageException($"--validation-split must be between 0 and 1, exclusive (got {ValidationSplit.ToString(System.Globalization.CultureInfo.InvariantCulture)}).");
        }

        if (BatchSize < 1)
        {
            throw new UsageException($"--batch-size must be at least 1 (got {BatchSize}).");
        }

        Paths.CheckOutputFile("--out", Out);
        if (Json is not null)
        {
            Paths.CheckOutputFile("--json", Json);
        }
    }
}

internal static class TrainCommand
{
    public static async Task<int> RunAsync(TrainSettings settings, CancellationToken cancellationToken)
    {
        settings.Validate();
        var total = Stopwatch.StartNew();
        var console = AnsiConsole.Console;
        console.Write(new Rule("[bold]Flowers[/] · transfer learning").LeftJustified());
        if (settings.DefaultData)
        {
            console.MarkupLine("[grey]No arguments: training on the photos shipped with the sample (see data/README.md). Run with --help for more.[/]");
        }

        // Data: one folder per class, stratified split.
        var folder = ImageFolder.Load(settings.Data, new ImageFolderOptions { BadImages = BadImagePolicy.Skip });
        var split = folder.Split(1 - settings.ValidationSplit, settings.Seed);
        Report.DataTable(console, folder, split);
        foreach (var skipped in folder.Skipped)
        {
            console.MarkupLineInterpolated($"[yellow]skipped[/] {skipped.Path}: {skipped.Reason}");
        }

        if (split.Validation.Count == 0)
        {
            throw new UsageException($"--validation-split {settings.ValidationSplit} leaves no validation images in '{settings.Data}'; raise it or add images.");
        }

        // Backbone (downloaded once into the hub cache when it is a URL).
        TransferLearner learner = null!;
        await console.Status().StartAsync($"Loading backbone {Markup.Escape(settings.Model)}…", async _ =>
        {
            try
            {
                learner = await TransferLearner.FromAsync(settings.Model, cancellationToken: cancellationToken);
            }
            catch (HttpRequestException e)
            {
                throw new InvalidOperationException($"Could not download the backbone '{settings.Model}': {e.Message}", e);
            }
        });

        FitResult result;
        double featurizePerSecond;
        var table = Report.NewEpochTable();
        using (learner)
        {
            console.MarkupLineInterpolated($"Backbone [bold]{learner.Backbone.Source}[/] ({learner.Backbone.FeatureSize} features), frozen; head: dense → {split.Classes.Count} classes.");
            learner.Freeze().AddHead(split.Classes).WithBatchSize(settings.BatchSize).WithSeed(settings.Seed);
            var monitor = new FitMonitor(split.Train.Count, split.Validation.Count);
            result = await FitView.RunAsync(
                console,
                monitor,
                table,
                "frozen",
                settings.Epochs,
                featurizes: true,
                learner.FitAsync(split, settings.Epochs, monitor, cancellationToken));
            featurizePerSecond = monitor.FeaturizeImagesPerSecond;
        }

        var model = result.Model;
        using (model)
        {
            // The fit already measured the returned weights on the validation images each epoch: its last (or restored
            // best) pass is the evaluation, so the backbone does not run over the validation images again.
            var evaluation = result.ValidationEvaluation;
            var frozenEpochs = model.History.Count;
            var frozenAccuracy = model.History.Last!.ValAccuracy;
            if (featurizePerSecond > 0)
            {
                console.MarkupLineInterpolated($"Featurized {split.Train.Count + split.Validation.Count} images at [bold]{featurizePerSecond:F1}[/] images/s.");
            }

            if (settings.FineTuneEpochs > 0)
            {
                console.MarkupLineInterpolated($"Fine-tuning: whole backbone trainable, learning rate 1e-5, {settings.FineTuneEpochs} epoch(s).");
                var fineTuner = TransferLearner.From(model).Unfreeze().WithLearningRate(1e-5).WithBatchSize(settings.BatchSize).WithSeed(settings.Seed);
                var monitor = new FitMonitor(split.Train.Count, split.Validation.Count);
                var tuning = await FitView.RunAsync(
                    console,
                    monitor,
                    table,
                    "fine-tune",
                    frozenEpochs + settings.FineTuneEpochs,
                    featurizes: false,
                    fineTuner.FitAsync(split, settings.FineTuneEpochs, monitor, cancellationToken));
                evaluation = tuning.ValidationEvaluation;
                var tuned = model.History.Last!.ValAccuracy;
                var colour = tuned >= frozenAccuracy ? "green" : "red";
                console.MarkupLineInterpolated($"Fine-tuning gain: val_accuracy {frozenAccuracy:F4} → {tuned:F4} ([{colour}]{tuned - frozenAccuracy:+0.0000;-0.0000;0.0000}[/]).");
            }

            evaluation ??= await Report.EvaluateWithProgressAsync(console, model, split.Validation, "Evaluating on the validation images", cancellationToken);
            Report.EvaluationTables(console, evaluation);

            var modelPath = Path.GetFullPath(settings.Out);
            Directory.CreateDirectory(Path.GetDirectoryName(modelPath)!);
            model.Save(modelPath);
            var curves = Paths.Beside(modelPath, ".curves.png");
            var confusion = Paths.Beside(modelPath, ".confusion.png");
            Plots.TrainingCurves(model.History, frozenEpochs, curves);
            Plots.ConfusionMatrix(evaluation.Classes, evaluation.ConfusionMatrix, confusion);
            total.Stop();

            console.MarkupLineInterpolated($"Model saved to [bold]{modelPath}[/]");
            console.MarkupLineInterpolated($"Plots: {curves}, {confusion}");
            if (settings.Json is { } jsonPath)
            {
                var json = JsonReports.Train(settings, folder, split, model.History, frozenEpochs, evaluation, featurizePerSecond, total.Elapsed.TotalSeconds, modelPath, curves, confusion);
                JsonReports.Write(jsonPath, json);
                console.MarkupLineInterpolated($"Summary written to {Path.GetFullPath(jsonPath)}");
            }

            console.MarkupLineInterpolated($"Validation accuracy [bold]{evaluation.Accuracy:P1}[/] on {evaluation.Count} images; total {total.Elapsed.TotalSeconds:F0} s.");
            console.MarkupLineInterpolated($"Try it: [grey]dotnet run -c Release --project samples/Flowers -- predict --model {modelPath} IMAGE...[/]");
        }

        return Failure.Ok;
    }
}

/// <summary>Finds the photos shipped with the sample.</summary>
internal static class EmbeddedData
{
    public static string Locate()
    {
        // Copied next to the app by the project file; fall back to the source tree (e.g. when run from an IDE's bin folder).
        var beside = Path.Combine(AppContext.BaseDirectory, "data");
        if (Directory.Exists(beside))
        {
            return beside;
        }

        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "samples", "Flowers", "data");
            if (Directory.Exists(candidate))
            {
                return candidate;
            }
        }

        throw new DirectoryNotFoundException(
            $"The sample's flower photos were not found in '{beside}'; rebuild the sample (dotnet build samples/Flowers) or pass --data DIR to the train command.");
    }
}

/// <summary>Path checks and derived file names.</summary>
internal static class Paths
{
    public static void CheckOutputFile(string option, string path)
    {
        if (string.IsNullOrWhiteSpace(path))
        {
            throw new UsageException($"{option} needs a file name.");
        }

        if (Directory.Exists(path) || path.EndsWith('/') || path.EndsWith(Path.DirectorySeparatorChar))
        {
            throw new UsageException($"{option} '{path}' is a folder; give a file name, e.g. {Path.Combine(path, "flowers.tlmodel")}.");
        }
    }

    public static void CheckInputFile(string option, string path)
    {
        if (!File.Exists(path))
        {
            throw new UsageException(Directory.Exists(path) ? $"{option} '{path}' is a folder, not a file." : $"{option}: the file '{path}' does not exist.");
        }
    }

    /// <summary><c>dir/flowers.tlmodel</c> + <c>.curves.png</c> → <c>dir/flowers.curves.png</c>.</summary>
    public static string Beside(string modelPath, string suffix) =>
        Path.Combine(Path.GetDirectoryName(modelPath)!, Path.GetFileNameWithoutExtension(modelPath) + suffix);
}
