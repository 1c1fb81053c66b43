using System.Globalization;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace TransferLearning.Bench;

/// <summary>
/// Correctness of LibTorch's float convolutions under this process's oneDNN cap: each shape of a grid (1×1, 3×3, 7×7
/// stem, depthwise; channel counts with and without a multiple of 16) in NCHW and channels-last, forward and backward
/// (input and weight gradients), against the same convolution in float64 (which does not run on oneDNN). Prints the
/// worst relative error per shape over <c>--reps</c> repetitions. The <c>routed-</c> rows go through the library's
/// <c>Conv2dOps</c> with its AVX-512 routing on (1×1 as a matrix product, grouped with a channel multiplier or a
/// dilation on NCHW, everything else channels-last); exit code 1
/// when any row is wrong. Usage: onednn-check [--reps 3] [--batch 8]
/// </summary>
internal static class OneDnnCheck
{
    public static Task<int> RunAsync(string[] args)
    {
        Native.TorchNativeLoader.EnsureLoaded();
        var reps = BenchSupport.ArgInt(args, "--reps", 3);
        var batch = BenchSupport.ArgInt(args, "--batch", 8);
        var only = BenchSupport.Arg(args, "--only", string.Empty);
        Console.WriteLine(BenchSupport.MachineLine());
        // (in, out, kernel, stride, groups, size, dilation)
        (long In, long Out, long K, long S, long G, long Hw, long D)[] grid =
        [
            (64, 64, 1, 1, 1, 28, 1), (144, 40, 1, 1, 1, 14, 1), (40, 144, 1, 1, 1, 14, 1), (24, 144, 1, 1, 1, 28, 1), (144, 24, 1, 1, 1, 28, 1),
            (16, 8, 1, 1, 1, 28, 1), (8, 48, 1, 1, 1, 28, 1), (96, 24, 1, 1, 1, 28, 1), (128, 256, 1, 2, 1, 28, 1), (256, 512, 1, 2, 1, 14, 1),
            (64, 64, 3, 1, 1, 28, 1), (24, 8, 3, 1, 1, 28, 1), (24, 24, 3, 1, 1, 28, 1), (128, 128, 3, 2, 1, 28, 1), (8, 16, 3, 2, 1, 56, 1), (3, 16, 3, 2, 1, 64, 1),
            (3, 64, 7, 2, 1, 64, 1), (3, 64, 7, 2, 1, 96, 1), (3, 64, 7, 2, 1, 224, 1), (3, 32, 3, 2, 1, 224, 1), (3, 24, 3, 2, 1, 64, 1),
            (144, 144, 3, 1, 144, 28, 1), (144, 144, 3, 2, 144, 28, 1), (96, 96, 3, 2, 96, 28, 1), (24, 24, 3, 1, 24, 28, 1), (40, 40, 5, 1, 40, 14, 1), (48, 48, 3, 1, 48, 28, 1), (32, 32, 3, 1, 32, 28, 1),
            (4, 8, 3, 2, 4, 10, 1), (8, 8, 2, 1, 8, 5, 1), (8, 8, 3, 1, 8, 5, 2), (6, 6, 3, 1, 6, 9, 2), (12, 12, 3, 1, 12, 14, 1), (4, 8, 3, 1, 4, 28, 1),
            (16, 16, 3, 1, 1, 14, 2), (24, 24, 3, 1, 1, 14, 2), (64, 64, 3, 1, 1, 14, 2), (40, 40, 3, 2, 40, 15, 1), (120, 120, 5, 2, 120, 27, 1),
        ];
        var failures = 0;
        foreach (var (cin, cout, k, s, g, hw, d) in grid)
        {
            if (only.Length > 0 && only != string.Create(CultureInfo.InvariantCulture, $"{cin},{cout},{k},{s},{g},{hw},{d}"))
            {
                continue;
            }

            foreach (var layout in new[] { "nchw", "nhwc", "routed-nchw", "routed-nhwc" })
            {
                double worstY = 0, worstDx = 0, worstDw = 0;
                for (var r = 0; r < reps; r++)
                {
                    using var scope = NewDisposeScope();
                    var gen = new TorchSharp.torch.Generator((ulong)(1000 + r));
                    var x64 = randn([batch, cin, hw, hw], dtype: float64, generator: gen);
                    var w64 = randn([cout, cin / g, k, k], dtype: float64, generator: gen) / Math.Sqrt(cin / g * k * k);
                    var o = ((hw + (2 * (d * (k / 2))) - (d * (k - 1)) - 1) / s) + 1;
                    var gy64 = randn([batch, cout, o, o], dtype: float64, generator: gen);
                    var (y64, dx64, dw64) = Run(x64, w64, gy64, s, d * (k / 2), d, g, cl: false, routed: false);
                    var (y32, dx32, dw32) = Run(x64.to(float32), w64.to(float32), gy64.to(float32), s, d * (k / 2), d, g, cl: layout.EndsWith("nhwc", StringComparison.Ordinal), routed: layout.StartsWith("routed", StringComparison.Ordinal));
                    worstY = Worst(worstY, Rel(y32, y64));
                    worstDx = Worst(worstDx, Rel(dx32, dx64));
                    worstDw = Worst(worstDw, Rel(dw32, dw64));
                }

                var bad = !(worstY <= 1e-4 && worstDx <= 1e-4 && worstDw <= 1e-4); // NaN is wrong too
                failures += bad ? 1 : 0;
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{(bad ? "WRONG" : "ok   ")} {cin,4}->{cout,-4} k{k} s{s} g{g,-3} d{d} {hw,3}px {layout,-11}: y {worstY:E1}  dx {worstDx:E1}  dw {worstDw:E1}"));
            }
        }

        Console.WriteLine($"{failures} wrong");
        return Task.FromResult(failures == 0 ? 0 : 1);
    }

    private static (Tensor Y, Tensor Dx, Tensor Dw) Run(Tensor x, Tensor w, Tensor gy, long s, long p, long d, long g, bool cl, bool routed)
    {
        if (cl)
        {
            x = x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2);
            w = w.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2);
            gy = gy.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2);
        }

        x = x.detach().requires_grad_(true);
        w = w.detach().requires_grad_(true);
        var y = routed ? Backbones.Conv2dOps.Conv2d(x, w, null, [s, s], [p, p], [d, d], g, guardAvx512: true) : F.conv2d(x, w, null, [s, s], [p, p], [d, d], g);
        y.backward([gy]);
        return (y.detach().to(float64), x.grad!.to(float64), w.grad!.to(float64));
    }

    private static double Worst(double a, double b) => double.IsNaN(a) || double.IsNaN(b) ? double.NaN : Math.Max(a, b);

    private static double Rel(Tensor a, Tensor b) =>
        (a - b).abs().max().item<double>() / Math.Max(1e-12, b.abs().max().item<double>());
}
