using System.Diagnostics;
using System.Globalization;
using TransferLearning.Models;
using TransferLearning.Native;

namespace TransferLearning.Bench;

/// <summary>
/// A server predicting for several requests at once: the latency of one <c>Predict</c> call while <c>--concurrency</c>
/// request threads predict in a loop, with LibTorch's default intra-op threads or <c>--threads N</c>
/// (<see cref="TorchThreads.IntraOp"/>, set before the model is loaded). Run it once per setting (the setting is
/// process-wide). Options: --model FILE (a .tlmodel), --image FILE, --threads N, --concurrency C (default 4),
/// --requests R per thread (default 25).
/// </summary>
internal static class LatencyBench
{
    public static Task<int> RunAsync(string[] args)
    {
        string Arg(string name, string fallback) =>
            Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
        var modelPath = Arg("--model", Path.Combine("artifacts", "flowers", "flowers.tlmodel"));
        var image = Arg("--image", Path.Combine("samples", "Flowers", "data", "roses", Directory.GetFiles(Path.Combine("samples", "Flowers", "data", "roses")).Select(Path.GetFileName).Order(StringComparer.Ordinal).First()!));
        var concurrency = int.Parse(Arg("--concurrency", "4"), CultureInfo.InvariantCulture);
        var requests = int.Parse(Arg("--requests", "25"), CultureInfo.InvariantCulture);
        if (Arg("--threads", string.Empty) is { Length: > 0 } threads)
        {
            TorchThreads.IntraOp = int.Parse(threads, CultureInfo.InvariantCulture);
        }

        using var model = TrainedModel.Load(modelPath);
        for (var i = 0; i < 3; i++)
        {
            model.Predict(image); // warm-up
        }

        var latencies = new List<double>();
        var wall = Stopwatch.StartNew();
        var workers = Enumerable.Range(0, concurrency).Select(_ => new Thread(() =>
        {
            var mine = new List<double>(requests);
            for (var r = 0; r < requests; r++)
            {
                var clock = Stopwatch.StartNew();
                model.Predict(image);
                mine.Add(clock.Elapsed.TotalMilliseconds);
            }

            lock (latencies)
            {
                latencies.AddRange(mine);
            }
        })).ToList();
        workers.ForEach(w => w.Start());
        workers.ForEach(w => w.Join());
        wall.Stop();

        latencies.Sort();
        double At(double q) => latencies[Math.Min(latencies.Count - 1, (int)(q * latencies.Count))];
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"intra-op threads {TorchThreads.IntraOp}, {concurrency} concurrent request threads × {requests} predictions on {Environment.ProcessorCount} cores: " +
            $"latency median {At(0.5):F0} ms, p90 {At(0.9):F0} ms, max {latencies[^1]:F0} ms; throughput {latencies.Count / wall.Elapsed.TotalSeconds:F1} predictions/s"));
        return Task.FromResult(0);
    }
}
