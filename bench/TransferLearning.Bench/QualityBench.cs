using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using TransferLearning.Datasets;
using TransferLearning.Models;
using TransferLearning.Training;

namespace TransferLearning.Bench;

/// <summary>
/// Recipes side by side on a photo folder (default ../shared/data/flowers, split 70/30 with seed 42): validation accuracy
/// (plain and with test-time augmentation), wall time, the time of the one backbone pass over all images, and peak
/// memory. Each recipe runs in its own process (so peak memory is its own). A recipe is a name with settings:
/// <c>frozen:epochs=6</c>, <c>frozen:epochs=30,ls=0.1,wd=1e-4</c>, <c>frozen:views=2</c>, <c>finetune:epochs=4,from=0.5</c>;
/// settings: epochs, lr, wd, ls (label smoothing), disc (lowest block rate factor), views (cached augmented views),
/// from (first trained block as a share of the blocks), freeze (head epochs before fine-tuning), bn=update, int8, calib
/// (int8 calibration images), bf16, tta,
/// hidden (units of one hidden head layer), dropout (head dropout), multistage (BackboneFeatures.MultiStage), mirror
/// (BackboneLoadOptions.MirrorAveraged), std (WithStandardizedFeatures), resize=center|stretch, seed (WithSeed: head
/// initialisation and shuffling; the split stays), decode (WithDecodeThreads: images decoded in parallel).
/// Options: --data DIR, --model SOURCE (default resnet18), --recipes "r1;r2;…", --json FILE, --limit N (per class).
/// </summary>
internal static class QualityBench
{
    private static readonly JsonSerializerOptions Json = new() { NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };
    private static readonly JsonSerializerOptions IndentedJson = new() { WriteIndented = true, NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };

    public static async Task<int> RunAsync(string[] args)
    {
        string Arg(string name, string fallback) =>
            Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
        var recipes = Arg("--recipes", "frozen:epochs=6;frozen:epochs=6,tta;frozen:epochs=30,ls=0.1;finetune:epochs=3,tta").Split(';', StringSplitOptions.RemoveEmptyEntries);
        var rows = new List<Result>();
        Console.WriteLine($"cpu: {Cpu()}; data {Arg("--data", DefaultData())}; model {Arg("--model", "resnet18")}");
        foreach (var recipe in recipes)
        {
            var childArgs = new List<string> { "quality-run", "--recipe", recipe };
            foreach (var name in new[] { "--data", "--model", "--limit" })
            {
                if (Arg(name, string.Empty) is { Length: > 0 } value)
                {
                    childArgs.AddRange([name, value]);
                }
            }

            var child = BenchProcess.StartInfo(childArgs);
            using var process = Process.Start(child)!;
            Result? result = null;
            while (await process.StandardOutput.ReadLineAsync().ConfigureAwait(false) is { } line)
            {
                if (line.StartsWith("RESULT ", StringComparison.Ordinal))
                {
                    result = JsonSerializer.Deserialize<Result>(line[7..], Json);
                }
                else
                {
                    Console.WriteLine($"  [{recipe}] {line}");
                }
            }

            await process.WaitForExitAsync().ConfigureAwait(false);
            if (result is null)
            {
                Console.WriteLine($"{recipe}: failed (exit {process.ExitCode})");
                continue;
            }

            rows.Add(result);
            Console.WriteLine(Format(result));
        }

        Console.WriteLine();
        Console.WriteLine("| recipe | val accuracy | with TTA | seconds | one backbone pass (s) | time ÷ pass | peak RSS (MB) |");
        Console.WriteLine("| --- | --- | --- | --- | --- | --- | --- |");
        foreach (var r in rows)
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| `{r.Recipe}` | {r.ValAccuracy:F4} | {(double.IsNaN(r.ValAccuracyTta) ? "–" : r.ValAccuracyTta.ToString("F4", CultureInfo.InvariantCulture))} | {r.Seconds:F0} | {r.PassSeconds:F0} | {r.Seconds / r.PassSeconds:F2}× | {r.PeakMb:F0} |"));
        }

        if (Arg("--json", string.Empty) is { Length: > 0 } json)
        {
            await File.WriteAllTextAsync(json, JsonSerializer.Serialize(rows, IndentedJson)).ConfigureAwait(false);
        }

        return 0;
    }

    /// <summary>Runs one recipe in this process and prints its result as a RESULT line.</summary>
    public static Task<int> RunOneAsync(string[] args)
    {
        string Arg(string name, string fallback) =>
            Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
        var recipe = Arg("--recipe", "frozen");
        var (kind, settings) = Parse(recipe);
        ImageDataset folder = ImageFolder.Load(Arg("--data", DefaultData()));
        if (Arg("--limit", string.Empty) is { Length: > 0 } limit)
        {
            folder = new ImageDataset(folder.Classes, [.. folder.Samples.GroupBy(s => s.Label).SelectMany(g => g.Take(int.Parse(limit, CultureInfo.InvariantCulture)))]);
        }

        var data = folder.Split(0.7, seed: 42);
        var clock = Stopwatch.StartNew();
        var passStart = TimeSpan.Zero;
        var passEnd = TimeSpan.Zero;
        var progress = new SyncProgress(p =>
        {
            if (p.Phase == TrainingPhase.Featurizing && passStart == TimeSpan.Zero)
            {
                passStart = clock.Elapsed;
            }

            if (p.Phase == TrainingPhase.Featurizing)
            {
                passEnd = clock.Elapsed;
            }

            if (p.Phase == TrainingPhase.EpochEnd && p.Completed is { } e)
            {
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"epoch {e.Epoch}: loss {e.Loss:F4} acc {e.Accuracy:F4} val_loss {e.ValLoss:F4} val_acc {e.ValAccuracy:F4} lr {e.LearningRate:G3} {e.Seconds:F1}s {(e.BackboneFrozen ? "frozen" : "trained")} (t={clock.Elapsed.TotalSeconds:F0}s)"));
            }
        });

        var head = new Heads.HeadOptions();
        if (settings.TryGetValue("hidden", out var hidden))
        {
            head.HiddenUnits = [int.Parse(hidden, CultureInfo.InvariantCulture)];
        }

        if (settings.TryGetValue("dropout", out var dropout))
        {
            head.Dropout = double.Parse(dropout, CultureInfo.InvariantCulture);
        }

        var load = new Hub.BackboneLoadOptions
        {
            Features = settings.ContainsKey("multistage") ? Hub.BackboneFeatures.MultiStage : Hub.BackboneFeatures.Pooled,
            MirrorAveraged = settings.ContainsKey("mirror"),
        };
        using var learner = TransferLearner.From(Arg("--model", "resnet18"), load).AddHead(data.Classes, head);
        var loaded = clock.Elapsed;
        var blocks = learner.Backbone.Blocks.Count;
        Apply(learner, settings);
        if (settings.ContainsKey("int8"))
        {
            Console.WriteLine($"int8: {Backbones.Int8Kernels.Description}");
        }

        if (settings.ContainsKey("bf16"))
        {
            Console.WriteLine($"bf16: {Backbones.Bf16Kernels.Unavailable ?? "native kernels"}; {Native.TorchNativeLoader.OneDnnIsaVariable}={Environment.GetEnvironmentVariable(Native.TorchNativeLoader.OneDnnIsaVariable) ?? "(unset)"}");
        }

        var fitStart = clock.Elapsed;
        FitResult result;
        if (kind == "finetune")
        {
            if (settings.TryGetValue("from", out var from))
            {
                learner.Unfreeze((int)Math.Round(double.Parse(from, CultureInfo.InvariantCulture) * blocks));
            }

            var freeze = settings.TryGetValue("freeze", out var f) ? int.Parse(f, CultureInfo.InvariantCulture) : FineTuneRecipe.FreezeEpochs;
            result = learner.FineTuneAsync(data, Int(settings, "epochs", 3), freeze, progress).GetAwaiter().GetResult();
        }
        else
        {
            learner.Freeze();
            result = learner.FitAsync(data, Int(settings, "epochs", 6), progress).GetAwaiter().GetResult();
        }

        using var model = result.Model;
        if (model.Backbone.Int8Parameters is { } int8)
        {
            Console.WriteLine($"int8: {int8.Activations.Count} activations ({int8.Activations.Values.Count(a => a.Levels == Backbones.Int8Kernels.EightBit)} 8-bit), {int8.ChannelScales.Count} equalised, {int8.FloatConvs.Count} convolutions kept in float");
        }

        var trainSeconds = clock.Elapsed.TotalSeconds;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"phases: load {loaded.TotalSeconds:F2} s, fit start to first featurized batch {(passStart - fitStart).TotalSeconds:F2} s, featurizing {(passEnd - passStart).TotalSeconds:F2} s, after featurizing {trainSeconds - passEnd.TotalSeconds:F2} s, total {trainSeconds:F2} s"));
        var tta = double.NaN;
        if (settings.ContainsKey("tta"))
        {
            tta = model.Evaluate(data.Validation, new EvaluateOptions { TestTimeAugmentation = true }).Accuracy;
        }

        var seconds = clock.Elapsed.TotalSeconds;
        var row = new Result(recipe, result.ValidationEvaluation?.Accuracy ?? double.NaN, tta, result.History[History.Accuracy][^1], seconds, trainSeconds,
            (passEnd - passStart).TotalSeconds, PeakMb());
        Console.WriteLine("RESULT " + JsonSerializer.Serialize(row, Json));
        return Task.FromResult(0);
    }

    private static void Apply(TransferLearner learner, Dictionary<string, string> s)
    {
        double D(string key) => double.Parse(s[key], CultureInfo.InvariantCulture);
        if (s.ContainsKey("lr"))
        {
            learner.WithLearningRate(D("lr"));
        }

        if (s.ContainsKey("wd"))
        {
            learner.WithWeightDecay(D("wd"));
        }

        if (s.ContainsKey("ls"))
        {
            learner.WithLabelSmoothing(D("ls"));
        }

        if (s.ContainsKey("disc"))
        {
            learner.WithDiscriminativeLearningRates(D("disc"));
        }

        if (s.TryGetValue("opt", out var opt))
        {
            learner.WithOptimizer(Enum.Parse<OptimizerKind>(opt, ignoreCase: true));
        }

        if (s.TryGetValue("sched", out var sched))
        {
            learner.WithSchedule(sched switch
            {
                "cosine" => LearningRateSchedule.Cosine(),
                "onecycle" => LearningRateSchedule.OneCycle(),
                "warmcos" => LearningRateSchedule.WarmupCosine(),
                _ => LearningRateSchedule.Constant,
            });
        }

        if (s.TryGetValue("views", out var views) || s.ContainsKey("aug"))
        {
            var augmentation = Augmentation.Standard;
            augmentation.CachedViews = views is null ? 0 : int.Parse(views, CultureInfo.InvariantCulture);
            if (s.TryGetValue("crop", out var crop))
            {
                augmentation.CropScaleMin = double.Parse(crop, CultureInfo.InvariantCulture);
            }

            learner.WithAugmentation(augmentation);
        }

        if (s.TryGetValue("bn", out var bn) && bn == "update")
        {
            learner.WithBatchNormStatisticsUpdates();
        }

        if (s.ContainsKey("int8"))
        {
            learner.WithInt8Backbone(s.ContainsKey("calib") ? (int)D("calib") : TrainingOptions.DefaultInt8CalibrationImages);
        }

        if (s.ContainsKey("bf16"))
        {
            learner.WithBf16Backbone();
        }

        if (s.TryGetValue("decode", out var decode))
        {
            learner.WithDecodeThreads(int.Parse(decode, CultureInfo.InvariantCulture));
        }

        if (s.TryGetValue("seed", out var seed))
        {
            learner.WithSeed(int.Parse(seed, CultureInfo.InvariantCulture));
        }

        if (s.ContainsKey("std"))
        {
            learner.WithStandardizedFeatures();
        }

        if (s.TryGetValue("resize", out var resize))
        {
            learner.WithResizeMode(resize == "center" ? ResizeMode.CenterCrop : ResizeMode.Stretch);
        }

        if (s.TryGetValue("batch", out var batch))
        {
            learner.WithBatchSize(int.Parse(batch, CultureInfo.InvariantCulture));
        }
    }

    private static (string Kind, Dictionary<string, string> Settings) Parse(string recipe)
    {
        var colon = recipe.IndexOf(':', StringComparison.Ordinal);
        var kind = colon < 0 ? recipe : recipe[..colon];
        var settings = new Dictionary<string, string>(StringComparer.Ordinal);
        if (colon >= 0)
        {
            foreach (var part in recipe[(colon + 1)..].Split(',', StringSplitOptions.RemoveEmptyEntries))
            {
                var eq = part.IndexOf('=', StringComparison.Ordinal);
                settings[eq < 0 ? part : part[..eq]] = eq < 0 ? "true" : part[(eq + 1)..];
            }
        }

        return (kind, settings);
    }

    private static int Int(Dictionary<string, string> s, string key, int fallback) =>
        s.TryGetValue(key, out var v) ? int.Parse(v, CultureInfo.InvariantCulture) : fallback;

    private static string Format(Result r) => string.Create(CultureInfo.InvariantCulture,
        $"{r.Recipe}: val {r.ValAccuracy:F4} tta {r.ValAccuracyTta:F4} train {r.TrainAccuracy:F4} {r.Seconds:F0} s (pass {r.PassSeconds:F0} s) peak {r.PeakMb:F0} MB");

    private static string DefaultData() => Path.Combine("..", "shared", "data", "flowers");

    private static double PeakMb()
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
            {
                return double.Parse(line[6..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) / 1024;
            }
        }

        return double.NaN;
    }

    private static string Cpu() =>
        File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':')[1].Trim() ?? "?";

    private sealed record Result(string Recipe, double ValAccuracy, double ValAccuracyTta, double TrainAccuracy, double Seconds, double TrainSeconds, double PassSeconds, double PeakMb);

    private sealed class SyncProgress(Action<TrainingProgress> report) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => report(value);
    }
}
