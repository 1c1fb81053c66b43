using System.Diagnostics;
using System.Globalization;
using TorchSharp;
using TransferLearning.Backbones.Tfjs;
using static TorchSharp.torch;

namespace TransferLearning.Bench;

/// <summary>
/// Forward throughput of a TF.js layers model loaded by <see cref="TfjsModel"/> (default: the Teachable Machine
/// MobileNetV2 α=0.35) against the same-run baseline of TorchVision's MobileNetV2 (width 0.35, random weights, features
/// + pooling only), which has the same layer sizes. Prints images/s for both and the ratio.
/// Usage: tfjs [model.json] [--batch 16] [--iterations 10] [--threads N]
/// </summary>
internal static class TfjsForwardBench
{
    public static Task<int> RunAsync(string[] args)
    {
        TransferLearning.Native.TorchNativeLoader.EnsureLoaded();
        var modelPath = args.FirstOrDefault(a => !a.StartsWith("--", StringComparison.Ordinal) && a.EndsWith(".json", StringComparison.Ordinal))
            ?? Path.Combine(FindRepoRoot(), "..", "shared", "models", "teachable-machine-mobilenetv2", "model.json");
        var batch = Option(args, "--batch", 16);
        var iterations = Option(args, "--iterations", 10);
        var threads = Option(args, "--threads", 0);
        if (threads > 0)
        {
            torch.set_num_threads(threads);
        }

        using var backbone = TfjsModel.Load(modelPath);
        backbone.SetTrainingMode(false);
        using var baseline = torchvision.models.mobilenet_v2(num_classes: 1000, width_mult: 0.35);
        baseline.eval();
        var features = (nn.Module<Tensor, Tensor>)baseline.named_children().First(c => c.name == "features").module;
        using var x = rand(batch, 3, backbone.InputSpec.Height, backbone.InputSpec.Width, generator: new Generator(1)) * 2 - 1;

        Func<Tensor> tfjsForward = () => backbone.Forward(x);
        Func<Tensor> baselineForward = () =>
        {
            using var f = features.call(x);
            return f.mean([2, 3]);
        };

        // Alternate the two so machine load hits both alike; keep each one's fastest batch.
        using (no_grad())
        {
            tfjsForward().Dispose();
            baselineForward().Dispose();
        }

        var tfjs = double.MaxValue;
        var torchVision = double.MaxValue;
        for (var i = 0; i < iterations; i++)
        {
            tfjs = Math.Min(tfjs, Measure(tfjsForward));
            torchVision = Math.Min(torchVision, Measure(baselineForward));
        }

        var inv = CultureInfo.InvariantCulture;
        Console.WriteLine(string.Create(inv, $"model: {modelPath} (features {backbone.FeatureSize}), batch {batch}, {iterations} iterations, {torch.get_num_threads()} threads"));
        Console.WriteLine(string.Create(inv, $"TfjsModel forward:               {batch / tfjs:F1} images/s (best of {iterations} batches)"));
        Console.WriteLine(string.Create(inv, $"TorchVision MobileNetV2 0.35:    {batch / torchVision:F1} images/s (baseline, best of {iterations})"));
        Console.WriteLine(string.Create(inv, $"ratio TfjsModel / baseline time: {tfjs / torchVision:F2}"));
        return Task.FromResult(0);
    }

    private static double Measure(Func<Tensor> forward)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var sw = Stopwatch.StartNew();
        forward();
        return sw.Elapsed.TotalSeconds;
    }

    private static int Option(string[] args, string name, int fallback)
    {
        var i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? int.Parse(args[i + 1], CultureInfo.InvariantCulture) : fallback;
    }

    private static string FindRepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "TransferLearning.sln")))
        {
            dir = dir.Parent;
        }

        return dir?.FullName ?? Directory.GetCurrentDirectory();
    }
}
