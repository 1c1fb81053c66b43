// Shared by the deploy probes (linked into each): the measurement protocol of `bench … deploy`, so every side is timed
// the same way. A probe is a minimal predicting app: it loads a model, predicts from image files and prints one JSON line.
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;

namespace DeployProbe;

/// <summary>One side's model, as its minimal app would use it.</summary>
internal interface IProbeModel : IDisposable
{
    /// <summary>Classifies one image file (batch 1): the top-1 label and its probability.</summary>
    (string Label, float Probability) PredictOne(string path);

    /// <summary>Classifies image files in batches of <paramref name="batchSize"/>, in order.</summary>
    IReadOnlyList<(string Label, float Probability)> PredictMany(IReadOnlyList<string> paths, int batchSize);
}

/// <summary>Arguments every probe takes (see <see cref="ProbeHarness.Usage"/>).</summary>
internal sealed class ProbeArgs
{
    public string Model { get; set; } = string.Empty;
    public string Images { get; set; } = string.Empty;
    public string? Classes { get; set; }
    public int InputSize { get; set; } = 224;
    public string Resize { get; set; } = "stretch";
    public int Threads { get; set; }
    public bool FirstOnly { get; set; }
    public int Warmup { get; set; } = 10;
    public int Latency { get; set; } = 100;
    public int Batch { get; set; } = 32;
    public int BatchWarmup { get; set; } = 2;
    public int BatchImages { get; set; } = 128;
}

/// <summary>The result line a probe prints (prefixed by <see cref="ProbeHarness.ResultPrefix"/>).</summary>
internal sealed record ProbeResult(
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

/// <summary>Load, first prediction, warm-up, batch-1 latency, batch throughput, peak RSS: the same for every side.</summary>
internal static class ProbeHarness
{
    /// <summary>Printed (and flushed) right after the first prediction, so the parent can time the cold start.</summary>
    public const string FirstPrefix = "PROBE-FIRST ";

    /// <summary>Prefix of the JSON result line.</summary>
    public const string ResultPrefix = "PROBE-RESULT ";

    public const string Usage =
        "usage: --model FILE --images LIST (one path a line) [--classes FILE.json] [--input-size 224] [--resize stretch|center-crop] [--threads 0 (default) | N] " +
        "[--first-only] [--warmup 10] [--latency 100] [--batch 32] [--batch-warmup 2 (batches)] [--batch-images 128]";

    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    /// <summary>Runs the protocol; <paramref name="load"/> loads the model (its time is the load time).</summary>
    public static int Run(string side, string[] args, Func<ProbeArgs, IProbeModel> load, Func<string> threadsUsed)
    {
        var mainStarted = Stopwatch.GetTimestamp();
        var o = Parse(args);
        if (o is null)
        {
            Console.Error.WriteLine(Usage);
            return 2;
        }

        var images = File.ReadAllLines(o.Images).Where(l => l.Length > 0).ToArray();
        if (images.Length == 0)
        {
            Console.Error.WriteLine($"{side}: no images in '{o.Images}'");
            return 2;
        }

        var clock = Stopwatch.StartNew();
        using var model = load(o);
        var loadMs = clock.Elapsed.TotalMilliseconds;
        clock.Restart();
        var first = model.PredictOne(images[0]);
        var firstMs = clock.Elapsed.TotalMilliseconds;
        Console.WriteLine(FirstPrefix + first.Label);
        Console.Out.Flush();
        double sinceStart;
        using (var self = Process.GetCurrentProcess())
        {
            sinceStart = (DateTime.Now - self.StartTime).TotalMilliseconds;
        }

        var latency = new List<double>();
        var singleTop1 = new List<string>();
        var singleProbability = new List<float>();
        var batchTop1 = new List<string>();
        var batchProbability = new List<float>();
        double batchSeconds = 0;
        var batchImages = 0;
        long hwmBatch1 = 0;
        if (!o.FirstOnly)
        {
            for (var i = 0; i < o.Warmup; i++)
            {
                model.PredictOne(images[i % images.Length]);
            }

            for (var i = 0; i < o.Latency; i++)
            {
                var path = images[i % images.Length];
                var start = Stopwatch.GetTimestamp();
                var (label, probability) = model.PredictOne(path);
                latency.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
                singleTop1.Add(label);
                singleProbability.Add(probability);
            }

            // Peak memory of a batch-1 app (load, first prediction, warm-up, the latency loop), before any batch runs.
            hwmBatch1 = ReadStatus().Hwm;

            // Throughput: --batch-warmup batches first (ONNX Runtime's first runs at a new batch size are slower than
            // the following ones: it grows its arena and plans memory for that shape), then the first --batch-images
            // images in batches of --batch.
            var paths = Enumerable.Range(0, o.BatchImages).Select(i => images[i % images.Length]).ToArray();
            for (var i = 0; i < o.BatchWarmup; i++)
            {
                model.PredictMany(paths[..Math.Min(o.Batch, paths.Length)], o.Batch);
            }

            clock.Restart();
            var many = model.PredictMany(paths, o.Batch);
            batchSeconds = clock.Elapsed.TotalSeconds;
            batchImages = paths.Length;
            batchTop1.AddRange(many.Select(p => p.Label));
            batchProbability.AddRange(many.Select(p => p.Probability));
        }

        var (hwm, rss) = ReadStatus();
        var result = new ProbeResult(
            side, o.Threads, threadsUsed(), loadMs, firstMs, sinceStart, [.. latency], [.. singleTop1], [.. singleProbability],
            o.Batch, batchImages, batchSeconds, [.. batchTop1], [.. batchProbability], o.FirstOnly ? hwm : hwmBatch1, hwm, rss);
        Console.WriteLine(ResultPrefix + JsonSerializer.Serialize(result, Json));
        Console.Error.WriteLine($"{side}: main to result {Stopwatch.GetElapsedTime(mainStarted).TotalSeconds:F1} s");
        return 0;
    }

    /// <summary>Peak and current resident set size (kB) from /proc/self/status; 0 where there is none.</summary>
    private static (long Hwm, long Rss) ReadStatus()
    {
        long hwm = 0, rss = 0;
        if (!File.Exists("/proc/self/status"))
        {
            return (0, 0);
        }

        foreach (var line in File.ReadLines("/proc/self/status"))
        {
            static long Kb(string l) => long.Parse(l.Split(':')[1].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
            {
                hwm = Kb(line);
            }
            else if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            {
                rss = Kb(line);
            }
        }

        return (hwm, rss);
    }

    private static ProbeArgs? Parse(string[] args)
    {
        var o = new ProbeArgs();
        try
        {
            for (var i = 0; i < args.Length; i++)
            {
                string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
                int Int() => int.Parse(Next(), CultureInfo.InvariantCulture);
                switch (args[i])
                {
                    case "--model": o.Model = Next(); break;
                    case "--images": o.Images = Next(); break;
                    case "--classes": o.Classes = Next(); break;
                    case "--input-size": o.InputSize = Int(); break;
                    case "--resize": o.Resize = Next(); break;
                    case "--threads": o.Threads = Int(); break;
                    case "--first-only": o.FirstOnly = true; break;
                    case "--warmup": o.Warmup = Int(); break;
                    case "--latency": o.Latency = Int(); break;
                    case "--batch": o.Batch = Int(); break;
                    case "--batch-warmup": o.BatchWarmup = Int(); break;
                    case "--batch-images": o.BatchImages = Int(); break;
                    default: return null;
                }
            }
        }
        catch (Exception e) when (e is ArgumentException or FormatException or OverflowException)
        {
            return null;
        }

        return o.Model.Length > 0 && o.Images.Length > 0 && o.Threads >= 0 && o.Batch > 0 && o.BatchWarmup >= 0 && o.BatchImages > 0 ? o : null;
    }
}
