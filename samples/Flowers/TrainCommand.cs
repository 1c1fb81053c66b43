using System.Diagnostics;
using System.Globalization;
using Spectre.Console;
using TransferLearning;
using TransferLearning.Datasets;
using TransferLearning.Hub;
using TransferLearning.Native;
using TransferLearning.Training;

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

    /// <summary>Largest --epochs and --fine-tune-epochs.</summary>
    public const int MaxEpochs = 10_000;

    /// <summary>Largest --batch-size: 1,024 images of 3 × 224 × 224 floats already take 616 MB per batch.</summary>
    public const int MaxBatchSize = 1024;

    /// <summary>torchvision architecture of a PyTorch checkpoint backbone (--architecture); null to infer it from the file name.</summary>
    public string? Architecture { get; init; }

    /// <summary>Augmented views of each training image cached for the frozen head when --augment is on.</summary>
    public const int HeadViews = 2;

    /// <summary>--augment: null for the default (on for fine-tuning, off for the frozen head).</summary>
    public bool? Augment { get; init; }

    /// <summary>Whether fine-tuning augments (the default when --fine-tune-epochs is given).</summary>
    public bool AugmentFineTuning => Augment ?? true;

    /// <summary>Whether the frozen head trains on cached augmented views (only when --augment is given explicitly).</summary>
    public bool AugmentHead => Augment ?? false;

    /// <summary>Whether any part of the run augments: fine-tuning (by default) or the head's cached views.</summary>
    public bool UsesAugmentation => (FineTuneEpochs > 0 && AugmentFineTuning) || AugmentHead;

    /// <summary>--tta: also report validation accuracy with test-time augmentation.</summary>
    public bool Tta { get; init; }

    /// <summary>--int8: the frozen backbone runs in int8.</summary>
    public bool Int8 { get; init; }

    /// <summary>--bf16: the backbone runs in bf16, frozen and while it fine-tunes (float master weights).</summary>
    public bool Bf16 { get; init; }

    /// <summary>--multi-stage: multi-stage features (ONNX backbones), standardized for the head.</summary>
    public bool MultiStage { get; init; }

    /// <summary>--mirror: features averaged over each image and its mirror (ONNX backbones).</summary>
    public bool Mirror { get; init; }

    /// <summary>--center-crop: images resized keeping their aspect ratio, then cropped to the square centre (not stretched).</summary>
    public bool CenterCrop { get; init; }

    /// <summary>--crop-min: the smallest share of an image's area a random crop keeps; null for the library's (Augmentation.Standard).</summary>
    public double? CropMin { get; init; }

    /// <summary>The augmentation of this run: <see cref="Augmentation.Standard"/>, with --crop-min's smallest crop when given.</summary>
    public Augmentation Augmentation()
    {
        var augmentation = TransferLearning.Training.Augmentation.Standard;
        if (CropMin is { } cropMin)
        {
            augmentation.CropScaleMin = cropMin;
        }

        return augmentation;
    }

    /// <summary>
    /// Epochs of the head on the frozen backbone's cached features: each costs milliseconds, and 20 let a head trained on
    /// a few hundred photos converge (6 epochs of 9 batches left it underfitting: 0.88 on the shipped photos, rising to
    /// 0.89 by epoch 15; on the full tf_flowers set 6 and 20 epochs are within 0.005 of each other).
    /// </summary>
    public const int DefaultEpochs = 20;

    /// <summary>The default run: the photos shipped with the sample, offline ResNet18, frozen, <see cref="DefaultEpochs"/> epochs.</summary>
    public static TrainSettings Default() =>
        new(EmbeddedData.Locate(), "resnet18", DefaultEpochs, 0, 0.3, 42, 32, DefaultModelPath, null, DefaultData: true);

    /// <summary>Whether --model names a file (not a short name or a URL).</summary>
    public bool ModelIsFile =>
        !ModelHub.ShortNames.Contains(Model.Trim(), StringComparer.OrdinalIgnoreCase)
        && !(Uri.TryCreate(Model, UriKind.Absolute, out var uri) && (uri.Scheme == Uri.UriSchemeHttp || uri.Scheme == Uri.UriSchemeHttps));

    /// <summary>The model file and the plots written next to it.</summary>
    public string CurvesPath => Paths.Beside(Out, ".curves.png");

    public string ConfusionPath => Paths.Beside(Out, ".confusion.png");

    /// <summary>Checks the whole command line before any work: ranges, inputs, outputs and their writability.</summary>
    public void Validate()
    {
        Paths.CheckInputFolder("--data", Data, "one sub-folder of images per class");
        if (string.IsNullOrWhiteSpace(Model))
        {
            throw new UsageException("--model must name a backbone: resnet18, a model file path or an http(s) URL.");
        }

        if (ModelIsFile)
        {
            var path = Uri.TryCreate(Model, UriKind.Absolute, out var uri) && uri.IsFile ? uri.LocalPath : Model;
            if (Directory.Exists(path))
            {
                throw new UsageException($"--model '{Model}' is a folder; give the backbone's file (an .onnx, .pth/.pt/.safetensors or model.json file).");
            }

            if (!File.Exists(path))
            {
                throw new UsageException(
                    $"--model: '{Model}' is neither an existing file, an http(s) URL, nor a short name ({string.Join(", ", ModelHub.ShortNames)}).");
            }
        }

        CheckRange("--epochs", Epochs, 1, MaxEpochs);
        CheckRange("--fine-tune-epochs", FineTuneEpochs, 0, MaxEpochs);
        CheckRange("--batch-size", BatchSize, 1, MaxBatchSize);
        if (!(ValidationSplit > 0 && ValidationSplit < 1))
        {
            throw new UsageException($"--validation-split must be between 0 and 1, exclusive (got {ValidationSplit.ToString(CultureInfo.InvariantCulture)}).");
        }

        if (CropMin is { } cropMin)
        {
            if (!(cropMin > 0 && cropMin <= 1))
            {
                throw new UsageException($"--crop-min must be above 0 and at most 1 (got {cropMin.ToString(CultureInfo.InvariantCulture)}).");
            }

            if (!UsesAugmentation)
            {
                throw new UsageException("--crop-min shapes the random crops of augmentation, which this run does not use: add --fine-tune-epochs N (augmented by default) or --augment.");
            }
        }

        if (Architecture is not null && string.IsNullOrWhiteSpace(Architecture))
        {
            throw new UsageException("--architecture needs a name, e.g. resnet18.");
        }

        Paths.CheckOutputFile("--out", Out);
        if (Json is not null)
        {
            Paths.CheckOutputFile("--json", Json);
        }

        var paths = new List<Paths.Named> { new("--data", Data, false) };
        if (ModelIsFile)
        {
            paths.Add(new("--model", Model, false));
        }

        paths.Add(new("--out", Out, true));
        paths.Add(new("--out's curves plot", CurvesPath, true));
        paths.Add(new("--out's confusion-matrix plot", ConfusionPath, true));
        if (Json is not null)
        {
            paths.Add(new("--json", Json, true));
        }

        Paths.CheckDistinct(paths);
        foreach (var output in paths.Where(p => p.IsOutput))
        {
            Paths.CheckNotInsideFolder(output, "--data", Data);
        }
    }

    private static void CheckRange(string option, int value, int min, int max)
    {
        if (value < min || value > max)
        {
            throw new UsageException(string.Create(CultureInfo.InvariantCulture, $"{option} must be from {min} to {max:N0} (got {value})."));
        }
    }
}

internal static class TrainCommand
{
    private const string ArchitectureOption = "BackboneLoadOptions.Architecture";

    public static async Task<int> RunAsync(TrainSettings settings, Session session)
    {
        settings.Validate();
        TorchNativeLoader.EnsureLoaded(); // a LibTorch that cannot load is reported before any work
        var cancellationToken = session.Cancellation;
        var total = Stopwatch.StartNew();
        var console = session.Console;
        console.Write(new Rule("[bold]Flowers[/] · transfer learning").LeftJustified());
        if (settings.DefaultData)
        {
            console.MarkupLine("[grey]No arguments: training on the photos shipped with the sample (see data/README.md). Run with --help for more.[/]");
        }

        // Data: one folder per class, stratified split. Unreadable images are skipped and listed, here and in training.
        var folder = ImageFolder.Load(settings.Data, new ImageFolderOptions { BadImages = BadImagePolicy.Skip });
        var split = folder.Split(1 - settings.ValidationSplit, settings.Seed);
        if (split.Train.Count == 0)
        {
            throw new UsageException(
                $"--validation-split {settings.ValidationSplit.ToString(CultureInfo.InvariantCulture)} leaves no training images " +
                $"(all {folder.Count} images of '{settings.Data}' would be held out for validation); lower it, e.g. to 0.3, or add images.");
        }

        if (split.Validation.Count == 0)
        {
            throw new UsageException(
                $"--validation-split {settings.ValidationSplit.ToString(CultureInfo.InvariantCulture)} leaves no validation images in '{settings.Data}'; raise it or add images.");
        }

        Report.DataTable(console, folder, split);
        foreach (var skipped in folder.Skipped)
        {
            console.MarkupLineInterpolated($"[yellow]skipped[/] {skipped.Path}: {skipped.Reason}");
        }

        // Backbone (downloaded once into the hub cache when it is a URL).
        var learner = await LoadBackboneAsync(console, settings, cancellationToken);
        FitResult result;
        double featurizePerSecond;
        var table = Report.NewEpochTable();
        using (learner)
        {
            console.MarkupLineInterpolated($"Backbone [bold]{learner.Backbone.Source}[/] ({learner.Backbone.FeatureSize} features), frozen{(settings.Int8 ? ", int8" : settings.Bf16 ? ", bf16" : string.Empty)}; head: dense → {split.Classes.Count} classes.");
            learner.Freeze().AddHead(split.Classes).WithBatchSize(settings.BatchSize).WithSeed(settings.Seed)
                .WithBadImages(BadImagePolicy.Skip);
            if (settings.AugmentHead)
            {
                var views = settings.Augmentation();
                views.CachedViews = TrainSettings.HeadViews;
                learner.WithAugmentation(views);
                console.MarkupLineInterpolated($"Augmentation: {TrainSettings.HeadViews} augmented views of each training image, featurized once and cached.");
            }

            if (settings.CenterCrop)
            {
                learner.WithResizeMode(ResizeMode.CenterCrop);
            }

            if (settings.Int8)
            {
                learner.WithInt8Backbone();
            }

            if (settings.Bf16)
            {
                learner.WithBf16Backbone();
            }

            if (settings.MultiStage)
            {
                learner.WithStandardizedFeatures();
            }

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
            var skippedInFit = result.SkippedImages;
            var frozenEpochs = model.History.Count;
            var frozenAccuracy = model.History.Last!.ValAccuracy;
            if (featurizePerSecond > 0)
            {
                console.MarkupLineInterpolated($"Featurized {split.Train.Count + split.Validation.Count - skippedInFit.Count} images at [bold]{featurizePerSecond:F1}[/] images/s.");
            }

            if (settings.FineTuneEpochs > 0)
            {
                console.MarkupLineInterpolated(
                    $"Fine-tuning: whole backbone trainable{(settings.Bf16 ? " (in bf16)" : string.Empty)}, {settings.FineTuneEpochs} epoch(s), AdamW peaking at {FineTuneRecipe.LearningRate} (one cycle), augmentation {(settings.AugmentFineTuning ? "on" : "off")}.");
                var fineTuner = TransferLearner.From(model).Unfreeze().WithBatchSize(settings.BatchSize).WithSeed(settings.Seed)
                    .WithBadImages(BadImagePolicy.Skip);
                if (!settings.AugmentFineTuning)
                {
                    fineTuner.WithAugmentation(Augmentation.None);
                }
                else if (settings.CropMin is not null)
                {
                    fineTuner.WithAugmentation(settings.Augmentation());
                }

                if (settings.Bf16)
                {
                    fineTuner.WithBf16Backbone(); // forward and backward in bf16, float master weights
                }

                var monitor = new FitMonitor(split.Train.Count, split.Validation.Count);
                var tuning = await FitView.RunAsync(
                    console,
                    monitor,
                    table,
                    "fine-tune",
                    frozenEpochs + settings.FineTuneEpochs,
                    featurizes: false,
                    fineTuner.FineTuneAsync(split, settings.FineTuneEpochs, freezeEpochs: 0, monitor, cancellationToken));
                evaluation = tuning.ValidationEvaluation;
                skippedInFit = [.. skippedInFit.Concat(tuning.SkippedImages).DistinctBy(s => s.Path)];
                var tuned = model.History.Last!.ValAccuracy;
                var colour = tuned >= frozenAccuracy ? "green" : "red";
                console.MarkupLineInterpolated($"Fine-tuning gain: val_accuracy {frozenAccuracy:F4} → {tuned:F4} ([{colour}]{tuned - frozenAccuracy:+0.0000;-0.0000;0.0000}[/]).");
            }

            evaluation ??= await Report.EvaluateWithProgressAsync(console, model, split.Validation, "Evaluating on the validation images", cancellationToken);
            Report.EvaluationTables(console, evaluation);
            var evaluationTta = settings.Tta
                ? await Report.EvaluateWithProgressAsync(console, model, split.Validation, "Validation with test-time augmentation", cancellationToken, testTimeAugmentation: true)
                : null;
            if (evaluationTta is not null)
            {
                console.MarkupLineInterpolated($"Validation accuracy with test-time augmentation (image and mirror): [bold]{evaluationTta.Accuracy:P1}[/] (plain {evaluation.Accuracy:P1}).");
            }

            var skipped = folder.Skipped.Concat(skippedInFit).DistinctBy(s => s.Path).OrderBy(s => s.Path, StringComparer.Ordinal).ToList();
            foreach (var s in skippedInFit.Where(s => evaluation.Skipped.All(e => e.Path != s.Path)))
            {
                console.MarkupLineInterpolated($"[yellow]skipped[/] {s.Path}: {s.Reason}");
            }

            // Training is done: from here a stop request (Ctrl+C, SIGTERM) lets the save finish, then ends the run.
            var modelPath = Path.GetFullPath(settings.Out);
            console.MarkupLineInterpolated($"Saving the model to {modelPath}…");
            using (session.Stop.Protect())
            {
                model.Save(modelPath);
            }

            if (session.Stop.IsRequested)
            {
                Failure.WriteLine(session, $"cancelled after training; the model was saved to '{modelPath}' (plots and summary were not written).");
                return session.Stop.ExitCode;
            }

            var curves = settings.CurvesPath;
            var confusion = settings.ConfusionPath;
            Plots.TrainingCurves(model.History, frozenEpochs, curves);
            Plots.ConfusionMatrix(evaluation.Classes, evaluation.ConfusionMatrix, confusion);
            total.Stop();

            console.MarkupLineInterpolated($"Model saved to [bold]{modelPath}[/]");
            console.MarkupLineInterpolated($"Plots: {curves}, {confusion}");
            if (settings.Json is { } jsonPath)
            {
                var json = JsonReports.Train(settings, folder, split, model.History, frozenEpochs, evaluation, evaluationTta, skipped, featurizePerSecond, total.Elapsed.TotalSeconds, modelPath, curves, confusion);
                JsonReports.Write(jsonPath, json);
                console.MarkupLineInterpolated($"Summary written to {Path.GetFullPath(jsonPath)}");
            }

            if (skipped.Count > 0)
            {
                console.MarkupLineInterpolated($"[yellow]{skipped.Count} unreadable image(s) skipped[/] (listed above).");
            }

            console.MarkupLineInterpolated($"Validation accuracy [bold]{evaluation.Accuracy:P1}[/] on {evaluation.Count} images; total {total.Elapsed.TotalSeconds:F0} s.");
            if (settings.DefaultData)
            {
                console.MarkupLine($"[grey]{EmbeddedData.FullSetComparison}[/]");
            }

            console.MarkupLineInterpolated($"Try it: [grey]dotnet run -c Release --project samples/Flowers -- predict --model {modelPath} IMAGE...[/]");
        }

        return Failure.Ok;
    }

    /// <summary>Loads the backbone; load failures that name a library option are told in terms of this command line.</summary>
    private static async Task<TransferLearner> LoadBackboneAsync(IAnsiConsole console, TrainSettings settings, CancellationToken cancellationToken)
    {
        TransferLearner learner = null!;
        await console.Status().StartAsync($"Loading backbone {Markup.Escape(settings.Model)}…", async _ =>
        {
            try
            {
                learner = await TransferLearner.FromAsync(
                    settings.Model,
                    new BackboneLoadOptions
                    {
                        Architecture = settings.Architecture,
                        Features = settings.MultiStage ? BackboneFeatures.MultiStage : BackboneFeatures.Pooled,
                        MirrorAveraged = settings.Mirror,
                    },
                    cancellationToken: cancellationToken);
            }
            catch (HttpRequestException e)
            {
                throw new InvalidOperationException(e.Message, e); // the library's message names the backbone and what to do
            }
            catch (ArgumentException e) when (e.Message.Contains(ArchitectureOption, StringComparison.Ordinal))
            {
                // The library names its option; on this command line it is --architecture.
                throw new UsageException(ForCommandLine(e.Message));
            }
            catch (InvalidDataException e) when (e.Message.Contains(ArchitectureOption, StringComparison.Ordinal))
            {
                throw new InvalidDataException(ForCommandLine(e.Message), e);
            }
        });
        return learner;

        static string ForCommandLine(string message) => message.Replace(ArchitectureOption, "--architecture", StringComparison.Ordinal);
    }
}

/// <summary>Finds the photos shipped with the sample.</summary>
internal static class EmbeddedData
{
    /// <summary>What the same recipe reaches on the whole tf_flowers set (measured once; see data/README.md).</summary>
    public const string FullSetComparison =
        "On all 3,322 tf_flowers photos (2,325 training, 997 validation) the same recipe reaches 0.894 validation accuracy.";

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
