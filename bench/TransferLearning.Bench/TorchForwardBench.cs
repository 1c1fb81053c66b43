using System.Diagnostics;
using System.Globalization;
using TransferLearning.Backbones;
using TransferLearning.Backbones.TorchVision;
using static TorchSharp.torch;

namespace TransferLearning.Bench;

/// <summary>
/// Frozen eval forward of a torchvision architecture (random weights, features pooled, batch 32), ours next to PyTorch's
/// channels_last eager forward (<c>tools/pytorch/reference_bench.py</c>) in the same run: repetitions alternate between
/// the sides (the starting side rotates), each repetition times <c>--steps</c> batches after one warm-up repetition;
/// the table shows each side's median seconds per batch over <c>--reps</c> repetitions and the speed ratio.
/// Usage: torch-forward [--arch resnet18|mobilenet_v2] [--reps 7] [--steps 2] [--batch 32] [--threads 2]
///        [--python-isa default[,AVX2,…]] [--no-python] [--unfolded (also ours with BatchNorm unfolded)]
/// </summary>
internal static class TorchForwardBench
{
    public static Task<int> RunAsync(string[] args)
    {
        Native.TorchNativeLoader.EnsureLoaded();
        var arch = BenchSupport.Arg(args, "--arch", "resnet18");
        var reps = BenchSupport.ArgInt(args, "--reps", 7);
        var steps = BenchSupport.ArgInt(args, "--steps", 2);
        var batch = BenchSupport.ArgInt(args, "--batch", 32);
        var threads = BenchSupport.ArgInt(args, "--threads", 2);
        set_num_threads(threads);
        Console.WriteLine(BenchSupport.MachineLine());
        Console.WriteLine($"torch-forward: torchvision {arch}, random weights, frozen, eval, batch {batch}, 224x224, {threads} threads, {reps} reps x {steps} steps");

        using var backbone = TorchVisionBackbones.CreateBackbone(arch);
        backbone.Freeze();
        backbone.SetTrainingMode(false);
        using var x = randn(batch, 3, 224, 224, generator: new Generator(1));

        var runners = new List<(BenchSupport.Side Side, Func<double[]> Run)>();
        var ours = new BenchSupport.Side("ours (Backbone.Forward, NCHW input)");
        runners.Add((ours, () => Repeat(steps, () => Forward(backbone, x))));
        Backbone? unfolded = null;
        if (args.Contains("--unfolded"))
        {
            // The same network with every BatchNorm as its own op (what folding buys).
            unfolded = TorchVisionBackbones.CreateBackbone(arch);
            unfolded.Freeze();
            unfolded.SetTrainingMode(false);
            BatchNormFolding.SetEnabled(unfolded.Module, false);
            runners.Add((new BenchSupport.Side("ours, BatchNorm unfolded"), () => Repeat(steps, () => Forward(unfolded, x))));
        }

        var pythons = new List<PyTorchReference>();
        try
        {
            if (!args.Contains("--no-python"))
            {
                foreach (var isa in BenchSupport.Arg(args, "--python-isa", "default").Split(','))
                {
                    var py = PyTorchReference.TryStart(
                        ["--mode", "forward", "--arch", arch, "--batch", $"{batch}", "--threads", $"{threads}", "--steps", $"{steps}"], isa);
                    if (py is null)
                    {
                        break;
                    }

                    pythons.Add(py);
                    var side = new BenchSupport.Side($"{py.Label}, channels_last", isReference: pythons.Count == 1);
                    runners.Add((side, py.RunRepetition));
                }
            }

            Alternate(runners, reps);
            BenchSupport.PrintTable([.. runners.Select(r => r.Side)], batch);
        }
        finally
        {
            foreach (var p in pythons)
            {
                p.Dispose();
            }

            unfolded?.Dispose();
        }

        return Task.FromResult(0);
    }

    /// <summary>One warm-up repetition each, then <paramref name="reps"/> rounds, the first side rotating round by round.</summary>
    public static void Alternate(List<(BenchSupport.Side Side, Func<double[]> Run)> runners, int reps)
    {
        foreach (var (_, run) in runners)
        {
            run();
        }

        for (var r = 0; r < reps; r++)
        {
            for (var k = 0; k < runners.Count; k++)
            {
                var (side, run) = runners[(r + k) % runners.Count];
                var seconds = run();
                side.Add(seconds);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  rep {r + 1}: {side.Name,-44} {seconds.Average(),8:F3} s/step"));
            }
        }
    }

    private static double[] Repeat(int steps, Action step)
    {
        var seconds = new double[steps];
        for (var i = 0; i < steps; i++)
        {
            var clock = Stopwatch.StartNew();
            step();
            seconds[i] = clock.Elapsed.TotalSeconds;
        }

        return seconds;
    }

    private static void Forward(Backbone backbone, Tensor x)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        _ = backbone.Forward(x).sum().item<float>();
    }
}
