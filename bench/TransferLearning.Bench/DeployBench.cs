// deploy: one flowers model deployed three ways, side by side in one run, each side in its own published process:
// (a) TrainedModel on LibTorch (the .tlmodel), (b) the inference package on ONNX Runtime (the model exported with
// ExportOnnx), (c) ML.NET's PredictionEngine with ApplyOnnxModel on the same .onnx; and, for reference, ML.NET's own
// peer model (its ResNet18 featurizer + LbfgsMaximumEntropy, trained by ML.NET on the same split, saved as .zip).
// Publish folder size, cold start to the first prediction, batch-1 latency, batch throughput, peak RSS, accuracy on the
// timed images, with default threads and with 1 intra-op thread.
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using TransferLearning.Datasets;
using TransferLearning.Models;

namespace TransferLearning.Bench;

/// <summary>
/// <c>bench … deploy</c>. The probes (<c>bench/DeployProbe.Torch</c>, <c>.Onnx</c>, <c>.MlNet</c>) are minimal predicting
/// apps, published framework-dependent for linux-x64 by this command (not at build); each run is a fresh process that
/// prints one JSON line (<c>bench/DeployProbe.Shared/ProbeHarness.cs</c>). Sides and thread settings are alternated run
/// by run, because the machine is shared; medians are reported.
/// </summary>
internal static class DeployBench
{
    private const string FirstPrefix = "PROBE-FIRST ";
    private const string ResultPrefix = "PROBE-RESULT ";

    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };
    private static readonly JsonSerializerOptions IndentedJson = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, WriteIndented = true };

    /// <summary>Each side: its probe project, its column title, whether it takes --threads N (a loaded ML.NET model does not).</summary>
    private static readonly Dictionary<string, (string Project, string Title, bool Threads)> Sides = new(StringComparer.Ordinal)
    {
        ["torch"] = ("DeployProbe.Torch", "(a) LibTorch: TrainedModel (.tlmodel)", true),
        ["onnx"] = ("DeployProbe.Onnx", "(b) TransferLearning.Inference: ImageClassifier (.onnx)", true),
        ["mlnet-onnx"] = ("DeployProbe.MlNet", "(c) ML.NET ApplyOnnxModel (.onnx) + PredictionEngine", true),
        ["mlnet-peer"] = ("DeployProbe.MlNet", "ML.NET peer model (.zip: DnnFeaturizeImage ResNet18 + LbfgsMaximumEntropy)", false),
    };

    public static async Task<int> RunAsync(string[] args)
    {
        Options? o;
        try
        {
            o = Parse(args);
        }
        catch (Exception e) when (e is ArgumentException or FormatException or OverflowException)
        {
            Console.Error.WriteLine($"deploy: {e.Message}");
            o = null;
        }

        if (o is null)
        {
            Console.Error.WriteLine(
                "usage: deploy [--model FILE.tlmodel] [--mlnet-model FILE.zip] [--data DIR (default ../shared/data/flowers)] [--limit N (per class)] [--epochs 6] " +
                "[--out DIR] [--sides torch,onnx,mlnet-onnx,mlnet-peer] [--threads 0,1 (0 = default)] [--cold-runs 5] [--repeats 3] " +
                "[--warmup 10] [--latency 100] [--batch 32] [--batch-warmup 2] [--batch-images 128] [--reuse-publish]");
            return 2;
        }

        try
        {
            return await RunCoreAsync(o).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or InvalidOperationException or ArgumentException or UnauthorizedAccessException or ModelFileException)
        {
            Console.Error.WriteLine($"deploy: {e.GetType().Name}: {e.Message}");
            return 1;
        }
    }

    private static async Task<int> RunCoreAsync(Options o)
    {
        var repo = FindRepo() ?? throw new InvalidOperationException("cannot find bench/DeployProbe.Torch: run from the repository (or below it)");
        if (!Directory.Exists(o.Data))
        {
            Console.Error.WriteLine($"deploy: the folder '{o.Data}' does not exist (--data).");
            return 2;
        }

        Directory.CreateDirectory(o.Out);
        var started = DateTime.UtcNow;
        Console.WriteLine($"deploy bench {started:yyyy-MM-dd HH:mm} UTC; cpu: {Cpu()}; {Environment.ProcessorCount} logical cores; load average {LoadAverage()}");
        Console.WriteLine($"work folder: {Path.GetFullPath(o.Out)}");

        // Images for the latency runs: the validation split (0.7, seed 42) of --data.
        var folder = ImageFolder.Load(o.Data, new ImageFolderOptions { BadImages = BadImagePolicy.Skip });
        ImageDataset data = folder;
        if (o.Limit is { } limit)
        {
            data = new ImageDataset(folder.Classes, folder.Samples.GroupBy(s => s.Label).SelectMany(g => g.Take(limit)).ToList());
        }

        var split = data.Split(0.7, 42);
        Console.WriteLine($"data: {folder.Root}{(o.Limit is { } l ? $" (first {l} per class)" : string.Empty)}: train {split.Train.Count}, validation {split.Validation.Count}");

        var modelFile = o.Model ?? Path.Combine(o.Out, "flowers.tlmodel");
        var onnxFile = Path.Combine(o.Out, "flowers.onnx");
        var classesFile = Path.Combine(o.Out, "classes.json");
        var imagesFile = Path.Combine(o.Out, "images.txt");
        int inputSize;
        string resize;
        {
            using var model = o.Model is null ? Train(split, o.Epochs, modelFile) : TrainedModel.Load(modelFile);
            model.ExportOnnx(onnxFile);
            inputSize = model.InputSpec.Width;
            resize = model.InputSpec.ResizeMode == ResizeMode.CenterCrop ? "center-crop" : "stretch";
            await File.WriteAllTextAsync(classesFile, JsonSerializer.Serialize(model.Classes)).ConfigureAwait(false);
            var unknown = split.Classes.Except(model.Classes).ToList();
            if (unknown.Count > 0)
            {
                Console.WriteLine($"note: the data has classes the model does not know ({string.Join(", ", unknown)}); top-1 agreement is still compared");
            }

            var sides = o.Sides;
            if (model.InputSpec.Width != model.InputSpec.Height && sides.Contains("mlnet-onnx"))
            {
                Console.WriteLine("note: the ML.NET ApplyOnnxModel probe assumes a square input; leaving it out");
                o.Sides = [.. sides.Where(s => s != "mlnet-onnx")];
            }
        }

        GC.Collect();
        var peerFile = o.MlNetModel ?? Path.Combine(o.Out, "flowers-mlnet.zip");
        if (o.Sides.Contains("mlnet-peer") && o.MlNetModel is null)
        {
            DeployMlNetPeer.Train(split, peerFile);
        }

        var imageCount = Math.Max(o.Latency, o.BatchImages);
        var images = split.Validation.Samples.Select(s => Path.GetFullPath(s.Path)).Take(imageCount).ToList();
        await File.WriteAllLinesAsync(imagesFile, images).ConfigureAwait(false);
        Console.WriteLine($"model: {Path.GetFullPath(modelFile)} ({MiB(new FileInfo(modelFile).Length):F1} MiB); onnx: {MiB(new FileInfo(onnxFile).Length):F1} MiB; " +
            $"input {inputSize}×{inputSize} ({resize}); {images.Count} validation images for the timed runs");

        // Publish each probe project once (framework-dependent, linux-x64), then measure the folder (no model file in it).
        var published = new Dictionary<string, (string Exe, long Bytes, string Largest)>(StringComparer.Ordinal);
        foreach (var project in o.Sides.Select(s => Sides[s].Project).Distinct())
        {
            var dir = Path.Combine(o.Out, "publish", project);
            if (!(o.ReusePublish && Directory.Exists(dir)))
            {
                Console.WriteLine($"publishing {project} …");
                if (Directory.Exists(dir))
                {
                    Directory.Delete(dir, recursive: true);
                }

                await PublishAsync(Path.Combine(repo, "bench", project, project + ".csproj"), dir).ConfigureAwait(false);
            }

            var files = new DirectoryInfo(dir).EnumerateFiles("*", SearchOption.AllDirectories).ToList();
            var largest = string.Join(", ", files.OrderByDescending(f => f.Length).Take(4).Select(f => $"{Path.GetRelativePath(dir, f.FullName)} {MiB(f.Length):F1}"));
            published[project] = (Path.Combine(dir, project), files.Sum(f => f.Length), largest);
            Console.WriteLine($"  {project}: {MiB(published[project].Bytes):F1} MiB in {files.Count} files (largest, MiB: {largest})");
        }

        (string Exe, long Bytes, string Largest) Published(string side) => published[Sides[side].Project];

        var common = new List<string>
        {
            "--images", imagesFile, "--classes", classesFile, "--input-size", Str(inputSize), "--resize", resize,
            "--warmup", Str(o.Warmup), "--latency", Str(o.Latency), "--batch", Str(o.Batch), "--batch-warmup", Str(o.BatchWarmup),
            "--batch-images", Str(o.BatchImages),
        };
        string ModelFor(string side) => Path.GetFullPath(side switch { "torch" => modelFile, "mlnet-peer" => peerFile, _ => onnxFile });
        IEnumerable<string> SidesFor(int threads, int rep) => Rotate(o.Sides, rep).Where(s => threads == 0 || Sides[s].Threads);

        // Cold starts: fresh processes, first prediction only; then full runs. Sides and thread settings alternate.
        var runs = new List<Run>();
        for (var rep = 0; rep < o.ColdRuns; rep++)
        {
            foreach (var threads in Rotate(o.Threads, rep))
            {
                foreach (var side in SidesFor(threads, rep))
                {
                    var run = await RunProbeAsync(side, Published(side).Exe, ["--model", ModelFor(side), "--threads", Str(threads), "--first-only", .. common]).ConfigureAwait(false);
                    runs.Add(run with { Cold = true });
                    Console.WriteLine($"  cold {rep + 1}/{o.ColdRuns} {side,-10} threads {Threads(threads),-7} first result after {run.WallToFirstMs,6:F0} ms (load {run.Result.LoadMs:F0} ms), RSS peak {run.Result.VmHwmKb / 1024.0:F0} MiB");
                }
            }
        }

        for (var rep = 0; rep < o.Repeats; rep++)
        {
            foreach (var threads in Rotate(o.Threads, rep))
            {
                foreach (var side in SidesFor(threads, rep))
                {
                    var run = await RunProbeAsync(side, Published(side).Exe, ["--model", ModelFor(side), "--threads", Str(threads), .. common]).ConfigureAwait(false);
                    runs.Add(run);
                    var r = run.Result;
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"  run {rep + 1}/{o.Repeats} {side,-10} threads {Threads(threads),-7} batch-1 median {Percentile(r.LatencyMs, 0.5),6:F1} ms, p90 {Percentile(r.LatencyMs, 0.9),6:F1} ms; batch {r.BatchSize} {r.BatchImages / r.BatchSeconds,6:F1} img/s; peak RSS {r.VmHwmBatch1Kb / 1024.0:F0} MiB (batch 1), {r.VmHwmKb / 1024.0:F0} MiB (after batch {r.BatchSize}); load average {LoadAverage()}"));
                }
            }
        }

        var finished = DateTime.UtcNow;
        await File.WriteAllTextAsync(Path.Combine(o.Out, "deploy-results.json"), JsonSerializer.Serialize(runs, IndentedJson)).ConfigureAwait(false);
        var truth = images.Select(p => Path.GetFileName(Path.GetDirectoryName(p)) ?? string.Empty).ToArray();
        PrintReport(o, o.Sides.ToDictionary(s => s, Published), runs, truth, started, finished);
        return 0;
    }

    private static TrainedModel Train(DatasetSplit split, int epochs, string modelFile)
    {
        Console.WriteLine($"training: TransferLearner.From(\"resnet18\").Freeze().AddHead(classes).Fit(data, {epochs}) …");
        var clock = Stopwatch.StartNew();
        using var learner = TransferLearner.From("resnet18").Freeze().AddHead(split.Classes);
        var (model, history) = learner.Fit(split, epochs);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"trained in {clock.Elapsed.TotalSeconds:F0} s; validation accuracy {history.Last!.ValAccuracy:F4}"));
        model.Save(modelFile);
        return model;
    }

    private static void PrintReport(Options o, Dictionary<string, (string Exe, long Bytes, string Largest)> published, List<Run> runs, string[] truth, DateTime started, DateTime finished)
    {
        Console.WriteLine();
        Console.WriteLine($"{started:yyyy-MM-dd HH:mm}–{finished:HH:mm} UTC; cpu: {Cpu()}; {Environment.ProcessorCount} logical cores; load average at the end {LoadAverage()}");
        Console.WriteLine($"publish: dotnet publish -c Release -r linux-x64 --self-contained false (framework-dependent; the model file is not in the folder)");
        Console.WriteLine($"cold start: wall time from Process.Start to the first result line, median of {o.ColdRuns} fresh processes [min–max]; " +
            $"batch-1: {o.Latency} predictions from files after {o.Warmup} warm-up, pooled over {o.Repeats} runs; throughput: {o.BatchImages} images in batches of {o.Batch} after {o.BatchWarmup} warm-up batches, median of runs; " +
            $"peak RSS: VmHWM after the batch-1 part of a full run (load, {o.Warmup + o.Latency + 1} predictions) and at its end (after the batches), median of runs; " +
            "accuracy: top-1 of the batch run against each image's folder name");
        var header = new List<string> { "threads", "metric" };
        header.AddRange(o.Sides.Select(s => Sides[s].Title));
        var ratioSides = o.Sides.Where(s => s != "torch").ToList();
        var sameModel = ratioSides.Where(s => s != "mlnet-peer").ToList();
        var hasTorch = o.Sides.Contains("torch");
        if (hasTorch)
        {
            header.AddRange(ratioSides.Select(s => $"{s} ÷ torch"));
        }

        var rows = new List<string[]>();
        void Row(string threads, string metric, Func<string, double> value, string format, Func<string, string>? extra = null)
        {
            var cells = new List<string> { threads, metric };
            cells.AddRange(o.Sides.Select(s => Fmt(value(s), format) + (extra?.Invoke(s) ?? string.Empty)));
            if (hasTorch)
            {
                cells.AddRange(ratioSides.Select(s => Ratio(value(s), value("torch"))));
            }

            rows.Add([.. cells]);
        }

        Row("–", "publish folder, no model file (MiB)", s => MiB(published[s].Bytes), "F1");
        foreach (var threads in o.Threads)
        {
            var t = Threads(threads);
            IEnumerable<Run> Cold(string s) => runs.Where(r => r.Cold && r.Side == s && r.Threads == threads);
            IEnumerable<Run> Full(string s) => runs.Where(r => !r.Cold && r.Side == s && r.Threads == threads);
            Row(t, "cold start to first prediction (ms)", s => Median(Cold(s).Select(r => r.WallToFirstMs)), "F0",
                s => Cold(s).Any() ? $" [{Cold(s).Min(r => r.WallToFirstMs):F0}–{Cold(s).Max(r => r.WallToFirstMs):F0}]" : string.Empty);
            Row(t, "  of which model load, in process (ms)", s => Median(Cold(s).Select(r => r.Result.LoadMs)), "F0");
            Row(t, "batch-1 latency median (ms)", s => Percentile([.. Full(s).SelectMany(r => r.Result.LatencyMs)], 0.5), "F1");
            Row(t, "batch-1 latency p90 (ms)", s => Percentile([.. Full(s).SelectMany(r => r.Result.LatencyMs)], 0.9), "F1");
            Row(t, $"throughput, batch {o.Batch} (img/s)", s => Median(Full(s).Select(r => r.Result.BatchImages / r.Result.BatchSeconds)), "F1");
            Row(t, "peak RSS, load + 1 prediction (MiB)", s => Median(Cold(s).Select(r => r.Result.VmHwmKb / 1024.0)), "F0");
            Row(t, "peak RSS, batch 1 (MiB)", s => Median(Full(s).Select(r => r.Result.VmHwmBatch1Kb / 1024.0)), "F0");
            Row(t, $"peak RSS, after batch {o.Batch} (MiB)", s => Median(Full(s).Select(r => r.Result.VmHwmKb / 1024.0)), "F0");
            Row(t, "top-1 accuracy on the timed images", s => Full(s).Select(r => Accuracy(r.Result.BatchTop1, truth)).DefaultIfEmpty(double.NaN).First(), "F3");
        }

        Console.WriteLine();
        Console.WriteLine("| " + string.Join(" | ", header) + " |");
        Console.WriteLine("|" + string.Concat(Enumerable.Repeat(" --- |", header.Count)));
        foreach (var row in rows)
        {
            Console.WriteLine("| " + string.Join(" | ", row) + " |");
        }

        Console.WriteLine();
        foreach (var side in o.Sides)
        {
            Console.WriteLine($"{side}: largest published files (MiB): {published[side].Largest}; threads used: {string.Join(", ", runs.Where(r => r.Side == side).Select(r => $"{Threads(r.Threads)}→{r.Result.ThreadsUsed}").Distinct())}");
            if (!Sides[side].Threads)
            {
                Console.WriteLine($"{side}: runs with default threads only (a loaded ML.NET model has no thread setting)");
            }
        }

        // Top-1 agreement with the LibTorch side, image by image, in every full run.
        if (hasTorch)
        {
            foreach (var side in sameModel)
            {
                foreach (var threads in o.Threads)
                {
                    var torch = runs.Where(r => !r.Cold && r.Side == "torch" && r.Threads == threads).ToList();
                    var other = runs.Where(r => !r.Cold && r.Side == side && r.Threads == threads).ToList();
                    if (torch.Count == 0 || other.Count == 0)
                    {
                        continue;
                    }

                    var (same1, total1, diff1) = Agreement(torch[0].Result.SingleTop1, torch[0].Result.SingleProbability, other[0].Result.SingleTop1, other[0].Result.SingleProbability);
                    var (sameB, totalB, diffB) = Agreement(torch[0].Result.BatchTop1, torch[0].Result.BatchProbability, other[0].Result.BatchTop1, other[0].Result.BatchProbability);
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"top-1 {side} vs torch, threads {Threads(threads)}: batch 1 {same1}/{total1} the same (top-1 probability within {diff1:G2}), batch {o.Batch} {sameB}/{totalB} the same (within {diffB:G2})"));
                }
            }
        }

        // Targets of issue 11 for the inference package.
        if (published.TryGetValue("onnx", out var onnxPublish))
        {
            Console.WriteLine();
            var size = MiB(onnxPublish.Bytes);
            Console.WriteLine($"target: inference package publish ≤ 60 MB without the model: {size:F1} MiB → {(size * 1.048576 <= 60 ? "met" : "NOT met")}");
            foreach (var threads in o.Threads)
            {
                var full = runs.Where(r => !r.Cold && r.Threads == threads).ToList();
                var rss1 = Median(full.Where(r => r.Side == "onnx").Select(r => r.Result.VmHwmBatch1Kb / 1024.0));
                var rss = Median(full.Where(r => r.Side == "onnx").Select(r => r.Result.VmHwmKb / 1024.0));
                Console.WriteLine($"target: peak RSS ≤ 300 MB, threads {Threads(threads)}: batch 1 {rss1:F0} MiB → {(rss1 * 1.048576 <= 300 ? "met" : "NOT met")}; " +
                    $"after batch {o.Batch} {rss:F0} MiB → {(rss * 1.048576 <= 300 ? "met" : "NOT met")}");
                if (hasTorch)
                {
                    var onnx = Percentile([.. full.Where(r => r.Side == "onnx").SelectMany(r => r.Result.LatencyMs)], 0.5);
                    var torch = Percentile([.. full.Where(r => r.Side == "torch").SelectMany(r => r.Result.LatencyMs)], 0.5);
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"target: batch-1 latency no worse than LibTorch's, threads {Threads(threads)}: {onnx:F1} ms vs {torch:F1} ms → {(onnx <= torch ? "met" : "NOT met")}"));
                }
            }
        }
    }

    /// <summary>Share of <paramref name="top1"/> equal to the folder name of the image at the same place (images cycle).</summary>
    private static double Accuracy(string[] top1, string[] truth) =>
        top1.Length == 0 || truth.Length == 0 ? double.NaN : top1.Where((label, i) => label == truth[i % truth.Length]).Count() / (double)top1.Length;

    private static (int Same, int Total, double MaxProbabilityDiff) Agreement(string[] a, float[] pa, string[] b, float[] pb)
    {
        var n = Math.Min(a.Length, b.Length);
        var same = 0;
        double diff = 0;
        for (var i = 0; i < n; i++)
        {
            if (a[i] == b[i])
            {
                same++;
                diff = Math.Max(diff, Math.Abs(pa[i] - pb[i]));
            }
        }

        return (same, n, diff);
    }

    private static async Task PublishAsync(string project, string dir)
    {
        var start = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "publish", project, "-c", "Release", "-r", "linux-x64", "--self-contained", "false", "-o", dir, "-nologo", "-v", "q" })
        {
            start.ArgumentList.Add(a);
        }

        using var process = Process.Start(start) ?? throw new InvalidOperationException("could not start dotnet publish");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().ConfigureAwait(false);
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"dotnet publish {Path.GetFileName(project)} failed ({process.ExitCode}):\n{await stdout.ConfigureAwait(false)}\n{await stderr.ConfigureAwait(false)}");
        }
    }

    private static async Task<Run> RunProbeAsync(string side, string exe, IEnumerable<string> args)
    {
        var start = new ProcessStartInfo(exe) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args)
        {
            start.ArgumentList.Add(a);
        }

        var clock = Stopwatch.StartNew();
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {exe}");
        var stderr = process.StandardError.ReadToEndAsync();
        double toFirst = double.NaN;
        ProbeResult? result = null;
        while (await process.StandardOutput.ReadLineAsync().ConfigureAwait(false) is { } line)
        {
            if (line.StartsWith(FirstPrefix, StringComparison.Ordinal) && double.IsNaN(toFirst))
            {
                toFirst = clock.Elapsed.TotalMilliseconds;
            }
            else if (line.StartsWith(ResultPrefix, StringComparison.Ordinal))
            {
                result = JsonSerializer.Deserialize<ProbeResult>(line[ResultPrefix.Length..], Json);
            }
        }

        await process.WaitForExitAsync().ConfigureAwait(false);
        if (process.ExitCode != 0 || result is null)
        {
            throw new InvalidOperationException($"the {side} probe failed (exit {process.ExitCode}):\n{await stderr.ConfigureAwait(false)}");
        }

        return new Run(side, result.Threads, false, toFirst, result);
    }

    private static string? FindRepo()
    {
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "bench", "DeployProbe.Torch", "DeployProbe.Torch.csproj")))
                {
                    return dir.FullName;
                }
            }
        }

        return null;
    }

    private static IEnumerable<T> Rotate<T>(IReadOnlyList<T> items, int by) =>
        items.Count == 0 ? items : items.Skip(by % items.Count).Concat(items.Take(by % items.Count));

    private static double Median(IEnumerable<double> values) => Percentile([.. values], 0.5);

    /// <summary>Nearest-rank percentile (the median of an even count is the mean of the middle two); NaN for none.</summary>
    private static double Percentile(double[] values, double q)
    {
        if (values.Length == 0)
        {
            return double.NaN;
        }

        var sorted = values.Order().ToArray();
        if (q == 0.5)
        {
            return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[(sorted.Length / 2) - 1] + sorted[sorted.Length / 2]) / 2;
        }

        return sorted[Math.Clamp((int)Math.Ceiling(q * sorted.Length) - 1, 0, sorted.Length - 1)];
    }

    private static string Ratio(double value, double baseline) =>
        double.IsFinite(value) && double.IsFinite(baseline) && baseline > 0 ? (value / baseline).ToString("F2", CultureInfo.InvariantCulture) + "×" : "–";

    private static string Fmt(double value, string format) => double.IsFinite(value) ? value.ToString(format, CultureInfo.InvariantCulture) : "–";

    private static string Threads(int threads) => threads == 0 ? "default" : Str(threads);

    private static double MiB(long bytes) => bytes / (1024.0 * 1024.0);

    private static string Str(int value) => value.ToString(CultureInfo.InvariantCulture);

    private static string Cpu() =>
        File.Exists("/proc/cpuinfo")
            ? File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':')[1].Trim() ?? "?"
            : "?";

    private static string LoadAverage() => File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "?";

    private static Options? Parse(string[] args)
    {
        var o = new Options();
        static int[] Ints(string s) => [.. s.Split(',', StringSplitOptions.RemoveEmptyEntries).Select(v => int.Parse(v, CultureInfo.InvariantCulture))];
        for (var i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            int Int() => int.Parse(Next(), CultureInfo.InvariantCulture);
            switch (args[i])
            {
                case "--model": o.Model = Next(); break;
                case "--mlnet-model": o.MlNetModel = Next(); break;
                case "--data": o.Data = Next(); break;
                case "--limit": o.Limit = Int(); break;
                case "--epochs": o.Epochs = Int(); break;
                case "--out": o.Out = Next(); break;
                case "--sides": o.Sides = [.. Next().Split(',', StringSplitOptions.RemoveEmptyEntries)]; break;
                case "--threads": o.Threads = Ints(Next()); break;
                case "--cold-runs": o.ColdRuns = Int(); break;
                case "--repeats": o.Repeats = Int(); break;
                case "--warmup": o.Warmup = Int(); break;
                case "--latency": o.Latency = Int(); break;
                case "--batch": o.Batch = Int(); break;
                case "--batch-warmup": o.BatchWarmup = Int(); break;
                case "--batch-images": o.BatchImages = Int(); break;
                case "--reuse-publish": o.ReusePublish = true; break;
                default: throw new ArgumentException($"unknown option '{args[i]}'");
            }
        }

        if (o.Sides.Count == 0 || o.Sides.Any(s => !Sides.ContainsKey(s)))
        {
            throw new ArgumentException($"--sides takes a comma-separated list of {string.Join(", ", Sides.Keys)}");
        }

        foreach (var file in new[] { o.Model, o.MlNetModel })
        {
            if (file is not null && !File.Exists(file))
            {
                throw new ArgumentException($"the model file '{file}' does not exist");
            }
        }

        return o.Threads.Length > 0 && o.Threads.All(t => t >= 0) && o.ColdRuns >= 1 && o.Repeats >= 1 && o.Latency >= 1 && o.Batch >= 1 && o.BatchWarmup >= 0 && o.BatchImages >= 1 ? o : null;
    }

    private sealed class Options
    {
        public string? Model { get; set; }
        public string? MlNetModel { get; set; }
        public string Data { get; set; } = Path.Combine("..", "shared", "data", "flowers");
        public int? Limit { get; set; }
        public int Epochs { get; set; } = 6;
        public string Out { get; set; } = Path.Combine(Path.GetTempPath(), "transferlearning-deploy-bench");
        public List<string> Sides { get; set; } = ["torch", "onnx", "mlnet-onnx", "mlnet-peer"];
        public int[] Threads { get; set; } = [0, 1];
        public int ColdRuns { get; set; } = 5;
        public int Repeats { get; set; } = 3;
        public int Warmup { get; set; } = 10;
        public int Latency { get; set; } = 100;
        public int Batch { get; set; } = 32;
        public int BatchWarmup { get; set; } = 2;
        public int BatchImages { get; set; } = 128;
        public bool ReusePublish { get; set; }
    }

    private sealed record Run(string Side, int Threads, bool Cold, double WallToFirstMs, ProbeResult Result);

    /// <summary>The probes' JSON line (bench/DeployProbe.Shared/ProbeHarness.cs).</summary>
    private sealed record ProbeResult(
        string Side,
        int Threads,
        string ThreadsUsed,
        double LoadMs,
        double FirstPredictionMs,
        double SinceProcessStartMs,
        double[] LatencyMs,
        string[] SingleTop1,
        float[] SingleProbability,
        int BatchSize,
        int BatchImages,
        double BatchSeconds,
        string[] BatchTop1,
        float[] BatchProbability,
        long VmHwmBatch1Kb,
        long VmHwmKb,
        long VmRssKb);
}
