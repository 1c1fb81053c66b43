using System.Diagnostics;
using System.Globalization;
using TransferLearning.Backbones;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace TransferLearning.Bench;

/// <summary>
/// The 1×1 convolutions of a ResNet-50 (or, with <c>--net mobilenet_v2</c>, a MobileNetV2) at batch 32, 224×224 (every distinct shape, weighted by how often the network
/// runs it), on channels-last input, in one of three formulations: <c>matmul</c> (<see cref="Conv2dOps.Pointwise"/>:
/// strided slice, then a matrix product over channels), <c>nchw</c> (a contiguous NCHW copy into oneDNN's convolution,
/// the output copied back to channels-last) or <c>onednn</c> (oneDNN's channels-last 1×1 kernel directly: with two
/// threads at AVX2 this SIGFPEs on this machine for 256→1024, 512→1024, 512→2048, 1024→512, 1024→2048, even at batch 2
/// and with one thread — it is here to reproduce the crash). On this VM <c>nchw</c> dies too on the stride-2 shapes
/// 512→1024 and 1024→2048: <c>--stride1</c> leaves the strided shapes out. Times the forward (inference) and forward +
/// backward (weights and input trainable) per network pass, median of <c>--reps</c>.
/// Usage: conv1x1 [--net resnet50|mobilenet_v2] [--modes matmul,nchw] [--threads 2] [--reps 5] [--batch 32] [--stride1] [--shape CIN,COUT,HW,STRIDE (one shape only)]
/// </summary>
internal static class Conv1x1Bench
{
    /// <summary>(in, out, input height = width, stride, occurrences in a ResNet-50).</summary>
    private static readonly (long In, long Out, long Size, long Stride, int Count)[] ResNet50 =
    [
        (64, 64, 56, 1, 1), (64, 256, 56, 1, 4), (256, 64, 56, 1, 2), // layer1 (conv3 ×3 + downsample)
        (256, 128, 56, 1, 1), (128, 512, 28, 1, 4), (512, 128, 28, 1, 3), (256, 512, 56, 2, 1), // layer2
        (512, 256, 28, 1, 1), (256, 1024, 14, 1, 6), (1024, 256, 14, 1, 5), (512, 1024, 28, 2, 1), // layer3
        (1024, 512, 14, 1, 1), (512, 2048, 7, 1, 3), (2048, 512, 7, 1, 2), (1024, 2048, 14, 2, 1), // layer4
    ];

    /// <summary>The same for a MobileNetV2 (expansions and projections of the inverted residuals, the last 1×1 conv).</summary>
    private static readonly (long In, long Out, long Size, long Stride, int Count)[] MobileNetV2 =
    [
        (32, 16, 112, 1, 1), (16, 96, 112, 1, 1), (96, 24, 56, 1, 1), (24, 144, 56, 1, 2), (144, 24, 56, 1, 1),
        (144, 32, 28, 1, 1), (32, 192, 28, 1, 3), (192, 32, 28, 1, 2), (192, 64, 14, 1, 1), (64, 384, 14, 1, 4),
        (384, 64, 14, 1, 3), (384, 96, 14, 1, 1), (96, 576, 14, 1, 3), (576, 96, 14, 1, 2), (576, 160, 7, 1, 1),
        (160, 960, 7, 1, 3), (960, 160, 7, 1, 2), (960, 320, 7, 1, 1), (320, 1280, 7, 1, 1),
    ];

    public static Task<int> RunAsync(string[] args)
    {
        Native.TorchNativeLoader.EnsureLoaded();
        var modes = BenchSupport.Arg(args, "--modes", "matmul,nchw").Split(',');
        var threads = BenchSupport.ArgInt(args, "--threads", 2);
        var reps = BenchSupport.ArgInt(args, "--reps", 5);
        var batch = BenchSupport.ArgInt(args, "--batch", 32);
        var net = BenchSupport.Arg(args, "--net", "resnet50");
        var shapes = net == "mobilenet_v2" ? MobileNetV2 : ResNet50;
        if (BenchSupport.Arg(args, "--shape", string.Empty) is { Length: > 0 } one)
        {
            var v = one.Split(',').Select(s => long.Parse(s, CultureInfo.InvariantCulture)).ToArray();
            shapes = [(v[0], v[1], v[2], v[3], 1)];
        }

        if (args.Contains("--stride1"))
        {
            shapes = [.. shapes.Where(s => s.Stride == 1)];
        }

        set_num_threads(threads);
        Console.WriteLine(BenchSupport.MachineLine());
        Console.WriteLine($"conv1x1: {net} 1x1 convolutions, batch {batch}, channels-last input, {threads} threads, median of {reps} reps (ms per network pass)");
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{"shape",-24} {"mode",-8} {"forward ms",11} {"fwd+bwd ms",11}"));
        var totals = modes.ToDictionary(m => m, _ => (Forward: 0.0, Backward: 0.0));
        foreach (var (cin, cout, size, stride, count) in shapes)
        {
            foreach (var mode in modes)
            {
                using var scope = NewDisposeScope();
                var x = ChannelsLast(randn(batch, cin, size, size, generator: new Generator(1)));
                var w = randn(cout, cin, 1, 1, generator: new Generator(2)).mul_(1.0 / Math.Sqrt(cin));
                Func<Tensor, Tensor, Tensor> conv = mode switch
                {
                    "matmul" => (a, b) => Conv2dOps.Pointwise(a, b, null, [stride, stride]),
                    "nchw" => (a, b) =>
                    {
                        using var c = a.contiguous();
                        using var y = F.conv2d(c, b, null, [stride, stride]);
                        return ChannelsLast(y);
                    },
                    "onednn" => (a, b) => F.conv2d(a, b, null, [stride, stride]),
                    _ => throw new ArgumentException($"unknown mode '{mode}' (matmul, nchw, onednn)"),
                };

                var forward = Time(reps, () =>
                {
                    using var s = NewDisposeScope();
                    using var noGrad = no_grad();
                    _ = conv(x, w).sum().item<float>();
                });
                var xg = x.detach().requires_grad_();
                var wg = w.detach().requires_grad_();
                var backward = Time(reps, () =>
                {
                    using var s = NewDisposeScope();
                    xg.grad = null;
                    wg.grad = null;
                    using var y = conv(xg, wg);
                    using var g = ChannelsLast(ones_like(y));
                    y.backward([g]);
                });
                Console.WriteLine(string.Create(
                    CultureInfo.InvariantCulture, $"{$"{cin}->{cout} {size}x{size} s{stride} x{count}",-24} {mode,-8} {forward * count * 1e3,11:F1} {backward * count * 1e3,11:F1}"));
                var (tf, tb) = totals[mode];
                totals[mode] = (tf + (forward * count), tb + (backward * count));
            }
        }

        Console.WriteLine();
        foreach (var (mode, (f, b)) in totals)
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"total {mode,-8}: forward {f * 1e3,8:F1} ms, forward+backward {b * 1e3,8:F1} ms per {net} pass"));
        }

        return Task.FromResult(0);
    }

    private static Tensor ChannelsLast(Tensor x) => x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2);

    /// <summary>One warm-up run, then the median seconds of <paramref name="reps"/> runs.</summary>
    private static double Time(int reps, Action run)
    {
        run();
        var seconds = new List<double>();
        for (var i = 0; i < reps; i++)
        {
            var clock = Stopwatch.StartNew();
            run();
            seconds.Add(clock.Elapsed.TotalSeconds);
        }

        return BenchSupport.Median(seconds);
    }
}
