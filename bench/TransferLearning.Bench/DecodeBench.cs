using System.Diagnostics;
using System.Globalization;
using TransferLearning.Datasets.Decoding;
using TransferLearning.Datasets.Pipeline;
using TransferLearning.Datasets;
using ImageSharpConfiguration = SixLabors.ImageSharp.Configuration;

namespace TransferLearning.Bench;

/// <summary>
/// Decode + resize + normalise every photo of a folder (default: ../shared/data/flowers) three ways in one run:
/// a single-thread loop over <see cref="ImagePixels.DecodeFile(string, InputSpec, Span{float}, ImageDecodeOptions?)"/> (baseline),
/// the <see cref="ImageLoader"/> with one worker, and the <see cref="ImageLoader"/> with all cores; prints images/s and ratios.
/// Options: --dir PATH, --size N (default 224), --limit N (images), --dop N (default: processor count).
/// </summary>
internal static class DecodeBench
{
    public static Task<int> RunAsync(string[] args)
    {
        string? dir = null;
        int size = 224, limit = int.MaxValue, dop = Environment.ProcessorCount;
        for (var i = 0; i + 1 < args.Length; i += 2)
        {
            switch (args[i])
            {
                case "--data" or "--dir": dir = args[i + 1]; break;
                case "--size": size = int.Parse(args[i + 1], CultureInfo.InvariantCulture); break;
                case "--limit": limit = int.Parse(args[i + 1], CultureInfo.InvariantCulture); break;
                case "--dop": dop = int.Parse(args[i + 1], CultureInfo.InvariantCulture); break;
                default: Console.Error.WriteLine($"unknown option {args[i]}"); return Task.FromResult(2);
            }
        }

        dir ??= FindFlowers();
        var folder = ImageFolder.Load(dir);
        var data = new ImageDataset(folder.Classes, [.. folder.Samples.Take(limit)]);
        var spec = InputSpec.ImageNet(size);
        Console.WriteLine($"decode: {data.Count} images from {dir}, {size}x{size}, {Environment.ProcessorCount} cores, parallel degree {dop}");

        // Warm the OS file cache and the JIT so that every variant sees the same conditions.
        foreach (var s in data.Samples)
        {
            _ = File.ReadAllBytes(s.Path);
        }

        var serialConfig = ImageSharpConfiguration.Default.Clone();
        serialConfig.MaxDegreeOfParallelism = 1;
        var serial = new ImageDecodeOptions { Configuration = serialConfig };
        var chw = new float[3 * spec.Width * spec.Height];
        foreach (var s in data.Samples.Take(32))
        {
            ImagePixels.DecodeFile(s.Path, spec, chw, serial);
        }

        RunLoader(new ImageDataset(data.Classes, [.. data.Samples.Take(64)]), spec, dop);

        var sw = Stopwatch.StartNew();
        double checksum = 0;
        foreach (var s in data.Samples)
        {
            ImagePixels.DecodeFile(s.Path, spec, chw, serial);
            checksum += chw[0];
        }

        var single = data.Count / sw.Elapsed.TotalSeconds;
        Console.WriteLine($"  single-thread loop (ImagePixels.DecodeFile): {single,8:F1} images/s  ({sw.Elapsed.TotalSeconds:F2} s, checksum {checksum:F3})");

        var loader1 = Measure(data, spec, 1);
        Console.WriteLine($"  ImageLoader, 1 worker (ImageSharp may parallelise inside a decode): {loader1,8:F1} images/s");
        var loaderN = Measure(data, spec, dop);
        Console.WriteLine($"  ImageLoader, {dop} workers (one thread per decode)                : {loaderN,8:F1} images/s");
        Console.WriteLine($"  ratio parallel loader / single-thread loop: {loaderN / single:F2}x; / 1-worker loader: {loaderN / loader1:F2}x");
        var last1 = Measure(data, spec, 1, channelsLast: true);
        var lastN = Measure(data, spec, dop, channelsLast: true);
        Console.WriteLine($"  channels-last batches (as a fit reads them), 1 / {dop} workers          : {last1,8:F1} / {lastN:F1} images/s");
        return Task.FromResult(0);
    }

    private static double Measure(ImageDataset data, InputSpec spec, int dop, bool channelsLast = false)
    {
        var sw = Stopwatch.StartNew();
        var n = RunLoader(data, spec, dop, channelsLast);
        return n / sw.Elapsed.TotalSeconds;
    }

    private static int RunLoader(ImageDataset data, InputSpec spec, int dop, bool channelsLast = false)
    {
        using var loader = new ImageLoader(data, spec, new ImageLoaderOptions { BatchSize = 32, Shuffle = true, Seed = 1, DegreeOfParallelism = dop, ChannelsLast = channelsLast });
        var n = 0;
        foreach (var batch in loader.Batches())
        {
            using (batch)
            {
                n += batch.Count;
            }
        }

        return n;
    }

    private static string FindFlowers()
    {
        var d = new DirectoryInfo(AppContext.BaseDirectory);
        while (d is not null && !File.Exists(Path.Combine(d.FullName, "TransferLearning.sln")))
        {
            d = d.Parent;
        }

        return d is null
            ? throw new DirectoryNotFoundException("TransferLearning.sln not found; pass --dir")
            : Path.GetFullPath(Path.Combine(d.FullName, "..", "shared", "data", "flowers"));
    }
}
