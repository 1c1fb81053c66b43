// mlnet: this library vs ML.NET's frozen-backbone route, same images, same split, same ResNet18 weights, one run.
// Each side runs in its own child process of this bench (so peak memory is per side) and reports one JSON line.
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Data;
using TransferLearning.Datasets;
using TransferLearning.Training;

namespace TransferLearning.Bench;

internal static class MlNetComparison
{
    private const string ResultPrefix = "MLNET-BENCH-RESULT ";
    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    public static async Task<int> RunAsync(string[] args)
    {
        try
        {
            return await RunCoreAsync(args);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            Console.Error.WriteLine($"mlnet: {e.GetType().Name}: {e.Message}");
            return 1;
        }
    }

    private static async Task<int> RunCoreAsync(string[] args)
    {
        Options? options;
        try
        {
            options = Parse(args);
        }
        catch (Exception e) when (e is ArgumentException or FormatException)
        {
            options = null;
        }

        if (options is null)
        {
            Console.Error.WriteLine(
                "usage: mlnet --data DIR [--limit N (images per class)] [--epochs 6] [--fine-tune-epochs N (ours only, e.g. 2; default 0)] [--seed 42] [--rounds N (each side N times in turn; medians; default 1)]");
            return 2;
        }

        if (options.Side is { } side)
        {
            var result = side switch
            {
                "mlnet" => RunMlNetSide(options.SplitFile!),
                "ours" => RunOurSide(options.SplitFile!, options.Epochs, options.FineTuneEpochs, int8: false),
                "ours-int8" => RunOurSide(options.SplitFile!, options.Epochs, 0, int8: true),
                _ => throw new ArgumentException($"unknown side '{side}'"),
            };
            result = result with { PeakWorkingSetMb = result.PeakWorkingSetMb > 0 ? result.PeakWorkingSetMb : PeakMb() };
            Console.WriteLine(ResultPrefix + JsonSerializer.Serialize(result, Json));
            return 0;
        }

        if (!Directory.Exists(options.Data))
        {
            Console.Error.WriteLine($"mlnet: the folder '{options.Data}' does not exist.");
            return 2;
        }

        // One split for both sides: the library's stratified 70/30 split, written to a file both children read.
        var folder = ImageFolder.Load(options.Data, new ImageFolderOptions { BadImages = BadImagePolicy.Skip });
        ImageDataset data = folder;
        if (options.Limit is { } limit)
        {
            data = new ImageDataset(folder.Classes, folder.Samples.GroupBy(s => s.Label).SelectMany(g => g.Take(limit)).ToList());
        }

        var split = data.Split(0.7, options.Seed);
        var splitFile = Path.Combine(Path.GetTempPath(), $"mlnet-bench-split-{Environment.ProcessId}.json");
        await File.WriteAllTextAsync(splitFile, JsonSerializer.Serialize(SplitFile.From(split), Json));
        Console.WriteLine(
            $"data: {folder.Root}{(options.Limit is { } l ? $" (first {l} per class)" : string.Empty)}: {data.Count} images, " +
            $"{split.Classes.Count} classes, train {split.Train.Count}, validation {split.Validation.Count} (seed {options.Seed})");

        try
        {
            // Each round runs the three sides in turn; with several rounds the table shows each side's median, and each
            // round's own ratios are printed (this VM's speed drifts by tens of percent within minutes).
            var rounds = new List<(SideResult MlNet, SideResult Ours, SideResult Int8)>();
            for (var round = 1; round <= options.Rounds; round++)
            {
                var of = options.Rounds > 1 ? $" (round {round} of {options.Rounds})" : string.Empty;
                Console.WriteLine($"running ML.NET side{of} …");
                var mlnet = await RunChildAsync(["--side", "mlnet", "--split", splitFile]);
                Console.WriteLine($"running our side{of} …");
                var ours = await RunChildAsync(["--side", "ours", "--split", splitFile, "--epochs", Str(options.Epochs), "--fine-tune-epochs", Str(options.FineTuneEpochs)]);
                Console.WriteLine($"running our side with the int8 backbone{of} …");
                var int8 = await RunChildAsync(["--side", "ours-int8", "--split", splitFile, "--epochs", Str(options.Epochs)]);
                rounds.Add((mlnet, ours, int8));
            }

            if (rounds.Count > 1)
            {
                Console.WriteLine();
                for (var r = 0; r < rounds.Count; r++)
                {
                    var (m, o, q) = rounds[r];
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"round {r + 1}: ML.NET {m.WallSeconds:F1} s, ours {o.WallSeconds:F1} s ({o.WallSeconds / m.WallSeconds:F2}×), int8 {q.WallSeconds:F1} s ({q.WallSeconds / m.WallSeconds:F2}×)"));
                }

                Console.WriteLine($"table: the median of the {rounds.Count} rounds for each side and row");
            }

            PrintTable(Median(rounds.Select(r => r.MlNet)), Median(rounds.Select(r => r.Ours)), Median(rounds.Select(r => r.Int8)), options);
            return 0;
        }
        finally
        {
            File.Delete(splitFile);
        }
    }

    /// <summary>Each number's median over the rounds (the mean of the middle two for an even count).</summary>
    private static SideResult Median(IEnumerable<SideResult> results)
    {
        var all = results.ToList();
        double M(Func<SideResult, double> value)
        {
            var sorted = all.Select(value).Order().ToList();
            return (sorted[(sorted.Count - 1) / 2] + sorted[sorted.Count / 2]) / 2;
        }

        double? N(Func<SideResult, double?> value) => all.Any(r => value(r) is null) ? null : M(r => value(r)!.Value);
        return new SideResult(
            M(r => r.FeaturizeImagesPerSecond), M(r => r.WallSeconds), M(r => r.ValAccuracy), M(r => r.PeakWorkingSetMb),
            N(r => r.FineTuneValAccuracy), N(r => r.FineTuneSeconds), N(r => r.FineTunePeakWorkingSetMb));
    }

    private static void PrintTable(SideResult mlnet, SideResult ours, SideResult int8, Options options)
    {
        static string R(double ours, double theirs) => theirs > 0 && ours > 0 ? (ours / theirs).ToString("F2", CultureInfo.InvariantCulture) + "×" : "-";
        static string D(double ours, double theirs) => (ours - theirs).ToString("+0.0000;-0.0000;0.0000", CultureInfo.InvariantCulture);
        var rows = new List<string[]>
        {
            new[] { string.Empty, "ML.NET", "ours", "ours int8", "ours/ML.NET", "int8/ML.NET" },
            new[] { "featurize images/s", F(mlnet.FeaturizeImagesPerSecond, "F1"), F(ours.FeaturizeImagesPerSecond, "F1"), F(int8.FeaturizeImagesPerSecond, "F1"), R(ours.FeaturizeImagesPerSecond, mlnet.FeaturizeImagesPerSecond), R(int8.FeaturizeImagesPerSecond, mlnet.FeaturizeImagesPerSecond) },
            new[] { "wall time (s)", F(mlnet.WallSeconds, "F1"), F(ours.WallSeconds, "F1"), F(int8.WallSeconds, "F1"), R(ours.WallSeconds, mlnet.WallSeconds), R(int8.WallSeconds, mlnet.WallSeconds) },
            new[] { "validation accuracy", F(mlnet.ValAccuracy, "F4"), F(ours.ValAccuracy, "F4"), F(int8.ValAccuracy, "F4"), D(ours.ValAccuracy, mlnet.ValAccuracy), D(int8.ValAccuracy, mlnet.ValAccuracy) },
            new[] { "peak working set (MB)", F(mlnet.PeakWorkingSetMb, "F0"), F(ours.PeakWorkingSetMb, "F0"), F(int8.PeakWorkingSetMb, "F0"), R(ours.PeakWorkingSetMb, mlnet.PeakWorkingSetMb), R(int8.PeakWorkingSetMb, mlnet.PeakWorkingSetMb) },
        };
        Console.WriteLine();
        Console.WriteLine($"ML.NET: LoadImages → ResizeImages(224) → ExtractPixels → DnnFeaturizeImage(ResNet18) → LbfgsMaximumEntropy");
        Console.WriteLine($"ours:   TransferLearner.From(\"resnet18\").Freeze().AddHead(classes).Fit(split, {options.Epochs})");
        Console.WriteLine($"int8:   the same with .WithInt8Backbone() (calibrated on {TrainingOptions.DefaultInt8CalibrationImages} training images spread over the classes)");
        PrintRows(rows);
        if (ours.FineTuneSeconds is { } seconds)
        {
            Console.WriteLine();
            Console.WriteLine($"fine-tuned (ours only: Unfreeze(), lr 1e-5, {options.FineTuneEpochs} epochs after the frozen fit):");
            PrintRows(
            [
                [string.Empty, "accuracy", "seconds", "gain vs frozen", "peak working set (MB)"],
                ["ours fine-tuned", F(ours.FineTuneValAccuracy ?? double.NaN, "F4"), F(seconds, "F1"),
                    ((ours.FineTuneValAccuracy ?? double.NaN) - ours.ValAccuracy).ToString("+0.0000;-0.0000;0.0000", CultureInfo.InvariantCulture),
                    F(ours.FineTunePeakWorkingSetMb ?? double.NaN, "F0")],
            ]);
        }
    }

    private static void PrintRows(List<string[]> rows)
    {
        var widths = Enumerable.Range(0, rows[0].Length).Select(c => rows.Max(r => r[c].Length)).ToArray();
        foreach (var row in rows)
        {
            Console.WriteLine(string.Join("  ", row.Select((cell, c) => c == 0 ? cell.PadRight(widths[c]) : cell.PadLeft(widths[c]))));
        }
    }

    // ---- ML.NET side --------------------------------------------------------------------------------------------

    private static SideResult RunMlNetSide(string splitFile)
    {
        var wall = Stopwatch.StartNew();
        var split = SplitFile.Read(splitFile);
        var ml = new MLContext(seed: 42);
        var train = ml.Data.LoadFromEnumerable(split.Train.Select(s => new ImageRow { ImagePath = s.Path, Label = split.Classes[s.Label] }));
        var validation = ml.Data.LoadFromEnumerable(split.Validation.Select(s => new ImageRow { ImagePath = s.Path, Label = split.Classes[s.Label] }));

        // The frozen-backbone route of ML.NET's image featurizer samples.
        var featurizer = ml.Transforms.LoadImages("ImageObject", imageFolder: string.Empty, inputColumnName: nameof(ImageRow.ImagePath))
            .Append(ml.Transforms.ResizeImages("ImageObject", imageWidth: 224, imageHeight: 224, inputColumnName: "ImageObject"))
            .Append(ml.Transforms.ExtractPixels("Pixels", "ImageObject"))
            .Append(ml.Transforms.DnnFeaturizeImage("Features", m => m.ModelSelector.ResNet18(ml, m.OutputColumn, m.InputColumn), "Pixels"))
            .Fit(train);

        // Featurize every image once (as our side does), timed on its own; the trainer then iterates over the cached features.
        var featurizeClock = Stopwatch.StartNew();
        var trainFeatures = Materialize(ml, featurizer.Transform(train));
        var validationFeatures = Materialize(ml, featurizer.Transform(validation));
        featurizeClock.Stop();
        var images = split.Train.Length + split.Validation.Length;
        Console.Error.WriteLine($"[ML.NET] featurized {images} images in {featurizeClock.Elapsed.TotalSeconds:F1} s");

        var trainer = ml.Transforms.Conversion.MapValueToKey("LabelKey", nameof(FeatureRow.Label))
            .Append(ml.MulticlassClassification.Trainers.LbfgsMaximumEntropy("LabelKey", nameof(FeatureRow.Features)));
        var model = trainer.Fit(trainFeatures);
        var metrics = ml.MulticlassClassification.Evaluate(model.Transform(validationFeatures), "LabelKey");
        wall.Stop();
        Console.Error.WriteLine($"[ML.NET] validation accuracy {metrics.MicroAccuracy:F4}, {wall.Elapsed.TotalSeconds:F1} s");
        return new SideResult(images / featurizeClock.Elapsed.TotalSeconds, wall.Elapsed.TotalSeconds, metrics.MicroAccuracy, 0, null, null, null);
    }

    private static IDataView Materialize(MLContext ml, IDataView view)
    {
        var rows = ml.Data.CreateEnumerable<FeatureRow>(view, reuseRowObject: false)
            .Select(r => new FeatureRow { Label = r.Label, Features = r.Features })
            .ToList();
        return ml.Data.LoadFromEnumerable(rows);
    }

    // ---- our side -----------------------------------------------------------------------------------------------

    private static SideResult RunOurSide(string splitFile, int epochs, int fineTuneEpochs, bool int8)
    {
        var wall = Stopwatch.StartNew();
        var file = SplitFile.Read(splitFile);
        var split = new DatasetSplit(
            new ImageDataset(file.Classes, file.Train.Select(s => new ImageSample(s.Path, s.Label)).ToList()),
            new ImageDataset(file.Classes, file.Validation.Select(s => new ImageSample(s.Path, s.Label)).ToList()));
        var progress = new FeaturizeClock();
        using var learner = TransferLearner.From("resnet18").Freeze().AddHead(split.Classes);
        if (int8)
        {
            learner.WithInt8Backbone();
        }

        progress.Start();
        var (model, history) = learner.FitAsync(split, epochs, progress).GetAwaiter().GetResult();
        using (model)
        {
            wall.Stop();
            var accuracy = history.Last!.ValAccuracy;
            var images = split.Train.Count + split.Validation.Count;
            var perSecond = progress.Seconds > 0 ? images / progress.Seconds : double.NaN;
            Console.Error.WriteLine($"[ours] featurized {images} images in {progress.Seconds:F1} s; validation accuracy {accuracy:F4}, {wall.Elapsed.TotalSeconds:F1} s");
            var frozenPeak = PeakMb();
            if (fineTuneEpochs <= 0)
            {
                return new SideResult(perSecond, wall.Elapsed.TotalSeconds, accuracy, frozenPeak, null, null, null);
            }

            var tuneClock = Stopwatch.StartNew();
            TransferLearner.From(model).Unfreeze().WithLearningRate(1e-5).Fit(split, fineTuneEpochs);
            tuneClock.Stop();
            var tuned = model.History.Last!.ValAccuracy;
            Console.Error.WriteLine($"[ours] fine-tuned {fineTuneEpochs} epochs: validation accuracy {tuned:F4}, {tuneClock.Elapsed.TotalSeconds:F1} s");
            return new SideResult(perSecond, wall.Elapsed.TotalSeconds, accuracy, frozenPeak, tuned, tuneClock.Elapsed.TotalSeconds, PeakMb());
        }
    }

    /// <summary>Time from the start of the fit to the first report after featurizing (the backbone's single pass).</summary>
    private sealed class FeaturizeClock : IProgress<TrainingProgress>
    {
        private readonly Stopwatch _clock = new();
        private int _last;

        public double Seconds { get; private set; }

        public void Start() => _clock.Start();

        public void Report(TrainingProgress value)
        {
            if (value.Phase == TrainingPhase.Featurizing)
            {
                if (value.Step * 10 / Math.Max(1, value.Steps) != _last)
                {
                    _last = value.Step * 10 / Math.Max(1, value.Steps);
                    Console.Error.Write($"\r[ours] featurizing {value.Step}/{value.Steps}   ");
                }
            }
            else if (Seconds == 0)
            {
                Seconds = _clock.Elapsed.TotalSeconds;
                Console.Error.WriteLine();
            }
        }
    }

    // ---- plumbing -----------------------------------------------------------------------------------------------

    private static async Task<SideResult> RunChildAsync(string[] sideArgs)
    {
        var start = BenchProcess.StartInfo(["mlnet", .. sideArgs]);
        using var child = Process.Start(start) ?? throw new InvalidOperationException("could not start the side process");
        SideResult? result = null;
        while (await child.StandardOutput.ReadLineAsync() is { } line)
        {
            if (line.StartsWith(ResultPrefix, StringComparison.Ordinal))
            {
                result = JsonSerializer.Deserialize<SideResult>(line[ResultPrefix.Length..], Json);
            }
            else
            {
                Console.WriteLine(line);
            }
        }

        await child.WaitForExitAsync();
        if (child.ExitCode != 0 || result is null)
        {
            throw new InvalidOperationException($"side '{sideArgs[1]}' failed with exit code {child.ExitCode}");
        }

        return result;
    }

    private static double PeakMb()
    {
        using var self = Process.GetCurrentProcess();
        self.Refresh();
        return self.PeakWorkingSet64 / (1024.0 * 1024.0);
    }

    private static string F(double value, string format) => double.IsFinite(value) ? value.ToString(format, CultureInfo.InvariantCulture) : "-";

    private static string Str(int value) => value.ToString(CultureInfo.InvariantCulture);

    private static Options? Parse(string[] args)
    {
        var o = new Options();
        for (var i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            switch (args[i])
            {
                case "--data": o.Data = Next(); break;
                case "--limit": o.Limit = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--epochs": o.Epochs = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--fine-tune-epochs": o.FineTuneEpochs = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--seed": o.Seed = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--rounds": o.Rounds = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--side": o.Side = Next(); break;
                case "--split": o.SplitFile = Next(); break;
                default: return null;
            }
        }

        return o.Rounds < 1 ? null : o.Side is not null ? (o.SplitFile is null ? null : o) : (o.Data is null ? null : o);
    }

    private sealed class Options
    {
        public string? Data { get; set; }
        public int? Limit { get; set; }
        public int Epochs { get; set; } = 6;
        public int FineTuneEpochs { get; set; }
        public int Seed { get; set; } = 42;
        public int Rounds { get; set; } = 1;
        public string? Side { get; set; }
        public string? SplitFile { get; set; }
    }

    private sealed record SideResult(
        double FeaturizeImagesPerSecond,
        double WallSeconds,
        double ValAccuracy,
        double PeakWorkingSetMb,
        double? FineTuneValAccuracy,
        double? FineTuneSeconds,
        double? FineTunePeakWorkingSetMb);

    private sealed record SplitItem(string Path, int Label);

    private sealed record SplitFile(string[] Classes, SplitItem[] Train, SplitItem[] Validation)
    {
        public static SplitFile From(DatasetSplit split) => new(
            [.. split.Classes],
            [.. split.Train.Samples.Select(s => new SplitItem(s.Path, s.Label))],
            [.. split.Validation.Samples.Select(s => new SplitItem(s.Path, s.Label))]);

        public static SplitFile Read(string path) => JsonSerializer.Deserialize<SplitFile>(File.ReadAllText(path), Json)
            ?? throw new InvalidDataException($"empty split file '{path}'");
    }

    private sealed class ImageRow
    {
        public string ImagePath { get; set; } = string.Empty;
        public string Label { get; set; } = string.Empty;
    }

    private sealed class FeatureRow
    {
        public string Label { get; set; } = string.Empty;

        [VectorType(512)]
        public float[] Features { get; set; } = [];
    }
}
