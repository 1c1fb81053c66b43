using System.Diagnostics;
using System.Globalization;
using TransferLearning.Datasets;
using TransferLearning.Training;

namespace TransferLearning.Bench;

/// <summary>
/// The reference recipe (see the README) on real photos: 70/30 split, frozen backbone, head only, then fine-tuning.
/// Reports validation accuracy, wall time, featurization vs head-epoch time (feature caching) and peak memory.
/// Options: --data DIR, --limit N (the first N images of each class, in the folder's sorted order), --model, --epochs,
/// --fine-tune-epochs, --lr, --fine-tune-lr, --seed, --resize, --trace-memory (a memory line every 2 s),
/// --gc-after-load (an aggressive full GC once the backbone is loaded, to see what the import's garbage costs), --int8,
/// --no-trim (no native heap trimming between batches), --mallopt arena=N,mmap=BYTES,trim=BYTES (glibc mallopt calls at start,
/// after the library's own NativeHeap settings: an experiment on page-fault churn).
/// </summary>
internal static class FitBench
{
    public static async Task<int> RunAsync(string[] args)
    {
        string Arg(string name, string fallback) =>
            Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
        var data = Arg("--data", Path.Combine("..", "shared", "data", "flowers"));
        var model = Arg("--model", "resnet18");
        var epochs = int.Parse(Arg("--epochs", "6"), CultureInfo.InvariantCulture);
        var fineTune = int.Parse(Arg("--fine-tune-epochs", "0"), CultureInfo.InvariantCulture);
        var rate = double.Parse(Arg("--lr", "0.001"), CultureInfo.InvariantCulture);
        var fineTuneRate = double.Parse(Arg("--fine-tune-lr", "0.00001"), CultureInfo.InvariantCulture);
        var seed = int.Parse(Arg("--seed", "42"), CultureInfo.InvariantCulture);
        var resize = Enum.Parse<ResizeMode>(Arg("--resize", "Stretch"), ignoreCase: true);
        int? limit = Arg("--limit", string.Empty) is { Length: > 0 } l ? int.Parse(l, CultureInfo.InvariantCulture) : null;
        var int8 = args.Contains("--int8");
        NativeHeap.Enabled = !args.Contains("--no-trim");
        if (Arg("--mallopt", string.Empty) is { Length: > 0 } mallopt)
        {
            NativeHeap.ConfigureAllocator(); // the library's settings first, so these calls override them
            foreach (var kv in mallopt.Split(','))
            {
                var parts = kv.Split('=');
                var param = parts[0] switch { "arena" => -8, "mmap" => -3, "trim" => -1, _ => throw new ArgumentException(kv) };
                Console.WriteLine($"mallopt {kv}: {MallOpt(param, int.Parse(parts[1], CultureInfo.InvariantCulture))}");
            }
        }

        var total = Stopwatch.StartNew();
        using var trace = args.Contains("--trace-memory") ? new Timer(_ => TraceMemory(total), null, 0, 2000) : null;
        ImageDataset folder = ImageFolder.Load(data);
        if (limit is { } perClass)
        {
            folder = new ImageDataset(folder.Classes, [.. folder.Samples.GroupBy(s => s.Label).SelectMany(g => g.Take(perClass))]);
        }

        var split = folder.Split(0.7, seed: 42);
        Console.WriteLine($"data: {split.Train.Count} train / {split.Validation.Count} validation{(limit is { } n ? $" (first {n} per class)" : string.Empty)}, classes: {string.Join(", ", split.Classes)}");
        var featurizing = Stopwatch.StartNew();
        var firstTraining = TimeSpan.Zero;
        long allocatedAtFeaturizing = -1, allocatedAtTraining = -1;
        var progress = new Progress(p =>
        {
            if (p.Phase == TrainingPhase.Featurizing && allocatedAtFeaturizing < 0)
            {
                allocatedAtFeaturizing = GC.GetTotalAllocatedBytes();
            }

            if (p.Phase == TrainingPhase.Training && firstTraining == TimeSpan.Zero)
            {
                firstTraining = featurizing.Elapsed;
                allocatedAtTraining = GC.GetTotalAllocatedBytes();
            }
        });

        var allocatedBeforeLoad = GC.GetTotalAllocatedBytes();
        using var learner = TransferLearner.From(model).Freeze().AddHead(split.Classes)
            .WithLearningRate(rate).WithSeed(seed).WithResizeMode(resize);
        if (int8)
        {
            learner.WithInt8Backbone(int.Parse(Arg("--int8-calibration", TrainingOptions.DefaultInt8CalibrationImages.ToString(CultureInfo.InvariantCulture)), CultureInfo.InvariantCulture));
        }

        if (args.Contains("--gc-after-load"))
        {
            // Experiment: how much of the peak is the GC keeping the backbone import's transient allocations committed.
            GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        }

        var (trained, history) = await learner.FitAsync(split, epochs, progress).ConfigureAwait(false);
        using (trained)
        {
            Console.WriteLine(history);
            var headEpochs = history.Epochs.Skip(1).Select(e => e.Seconds).DefaultIfEmpty(double.NaN).Average();
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"frozen: val_accuracy {history[History.ValAccuracy][^1]:F4}, featurize (first batch of epoch 1 after) {firstTraining.TotalSeconds:F1} s " +
                $"= {(split.Train.Count + split.Validation.Count) / firstTraining.TotalSeconds:F1} img/s, epoch 1 {history.Epochs[0].Seconds:F2} s, later epochs {headEpochs:F2} s each, " +
                $"wall {total.Elapsed.TotalSeconds:F1} s, peak memory {Process.GetCurrentProcess().PeakWorkingSet64 / (1 << 20)} MiB"));
            var gc = GC.GetGCMemoryInfo(GCKind.Any);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"managed: {GC.GetTotalAllocatedBytes() / (1 << 20)} MiB allocated in total " +
                $"({(allocatedAtFeaturizing - allocatedBeforeLoad) / (1 << 20)} MiB loading the backbone, {(allocatedAtTraining - allocatedAtFeaturizing) / (double)(split.Train.Count + split.Validation.Count) / 1024:F0} KiB per image while featurizing), GCs gen0/1/2 {GC.CollectionCount(0)}/{GC.CollectionCount(1)}/{GC.CollectionCount(2)}, " +
                $"heap now {GC.GetTotalMemory(false) / (1 << 20)} MiB, last GC committed {gc.TotalCommittedBytes / (1 << 20)} MiB"));

            if (fineTune > 0)
            {
                var clock = Stopwatch.StartNew();
                var (_, continued) = await TransferLearner.From(trained).Unfreeze().WithLearningRate(fineTuneRate).WithBatchSize(32).WithSeed(seed)
                    .FitAsync(split, fineTune).ConfigureAwait(false);
                Console.WriteLine(continued);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"fine-tuned: val_accuracy {continued[History.ValAccuracy][^1]:F4} (frozen {history[History.ValAccuracy][epochs - 1]:F4}), " +
                    $"{clock.Elapsed.TotalSeconds:F1} s, peak memory {Process.GetCurrentProcess().PeakWorkingSet64 / (1 << 20)} MiB"));
            }
        }

        return 0;
    }

    /// <summary>One line of memory figures (--trace-memory): working set, managed heap (live + garbage) and GC-committed bytes.</summary>
    private static void TraceMemory(Stopwatch clock)
    {
        using var process = Process.GetCurrentProcess();
        var gc = GC.GetGCMemoryInfo(GCKind.Any);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"  [{clock.Elapsed.TotalSeconds,6:F1} s] working set {process.WorkingSet64 >> 20} MiB (peak {process.PeakWorkingSet64 >> 20}), " +
            $"managed heap {GC.GetTotalMemory(false) >> 20} MiB, GC committed {gc.TotalCommittedBytes >> 20} MiB, GCs {GC.CollectionCount(0)}/{GC.CollectionCount(1)}/{GC.CollectionCount(2)}"));
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "mallopt")]
    private static extern int MallOpt(int param, int value);

    private sealed class Progress(Action<TrainingProgress> report) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => report(value);
    }
}
