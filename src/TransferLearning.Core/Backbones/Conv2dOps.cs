using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace TransferLearning.Backbones;

/// <summary>
/// The one 2-D convolution entry of the backbone families (torchvision's folded and unfolded convolutions, the ONNX
/// importer's Conv, TF.js Conv2D): <c>conv2d</c>, except that a wide 1×1 convolution without groups or padding runs as
/// a matrix product over channels (after a strided slice when the stride is above 1), and that on AMD CPUs with AVX-512
/// convolutions avoid the oneDNN kernels that are wrong there (<see cref="GuardsAvx512"/>, <see cref="GuardsGrouped"/>).
/// </summary>
/// <remarks>
/// LibTorch 2.10's oneDNN kills the process with SIGFPE (<c>brgemm_convolution_utils::brg_blocking_t::est_eff_1x1</c>)
/// for ResNet-50-class 1×1 convolutions at the AVX2 ISA. Measured on an AMD EPYC VM (batch 2 to 32, channels-last
/// input, 1 or 2 threads): 256→1024, 512→1024, 512→2048, 1024→512, 1024→2048, 1024→256 and 2048→512 died, the stride-2
/// 512→1024 and 1024→2048 also on a contiguous NCHW input; 64→64, 64→256, 256→64, 256→128, 128→512, 512→128, 512→256,
/// 256→512 (stride 2), 960→320, 320→1280 and every MobileNetV2 shape ran. A 1×1 convolution is exactly
/// <c>y[n,:,h,w] = W·x[n,:,h·s,w·s] + b</c>, so the matrix product gives the same values (up to float summation order)
/// and autograd the gradients, without oneDNN's 1×1 kernel. Elsewhere it runs for <see cref="RunsAsMatrixProduct">wide</see>
/// convolutions only, with a margin around the shapes that died: for ResNet-50's shapes it was about 4× faster than
/// oneDNN on an NCHW copy, but in MobileNetV2's high-resolution blocks (16→96 at 112×112, 24→144 at 56×56, …) its
/// backward pass took 2–3.5× oneDNN's (the <c>conv1x1</c> benchmark and a per-block fine-tuning profile).
/// <para>
/// The same VM (AMD EPYC, Zen 5) has AVX-512, and there some of oneDNN's AVX-512 float kernels are wrong
/// (<c>bench onednn-check</c> against float64, which does not run on oneDNN): the channels-last 1×1 forward kernel
/// (<c>brgconv_1x1</c>) for 144→40 at 14×14 and for 256→512 stride 2 at 14×14 (relative error 0.5–0.8), the direct
/// kernel on an NCHW input with 24 channels (3×3, 24→8 and 24→24 at 28×28: output and input gradient wrong or NaN). Channels-last 3×3, 5×5, 7×7 and
/// depthwise convolutions were right in every shape tried, except grouped ones with a channel multiplier (4→8 in 4
/// groups: forward and input gradient wrong) or a dilation (depthwise, dilation 2: input gradient wrong, at AVX2 as
/// well), which were right on a contiguous NCHW input (oneDNN's gemm-based or depthwise kernels); every matrix product
/// was right. So where <see cref="GuardsAvx512"/> holds (the default there: no <c>ONEDNN_MAX_CPU_ISA</c>), every 1×1
/// convolution is a matrix product, every grouped one with a channel multiplier or a dilation gets an NCHW input and every
/// other one a channels-last input (copied when the input is not already laid out so); under a cap the user sets below
/// AVX-512 (<see cref="GuardsGrouped"/>) only the grouped rule applies. Float32 backward passes that were off now and then
/// under load, at either level, came from a temporary TorchSharp Scalar freed during the native call (KeptScalars), not
/// from these kernels.
/// </para>
/// </remarks>
internal static class Conv2dOps
{
    private static readonly Lazy<bool> GroupedGuard = new(Native.TorchNativeLoader.IsAmdWithAvx512);
    private static readonly Lazy<bool> Avx512Guard = new(() => GroupedGuard.Value && OneDnnMayUseAvx512(Native.CpuFeatures.OneDnnIsaCap));

    /// <summary>
    /// Whether this process routes around oneDNN's AVX-512 float kernels that are wrong on AMD CPUs with AVX-512: such a
    /// CPU, and no <c>ONEDNN_MAX_CPU_ISA</c> (the default) or one at an AVX-512 level. Then every 1×1 convolution without
    /// groups or padding runs as a matrix product and every other ungrouped one reads a channels-last input.
    /// </summary>
    public static bool GuardsAvx512 => Avx512Guard.Value;

    /// <summary>
    /// Whether grouped convolutions with a channel multiplier or a dilation read a contiguous NCHW input: on AMD CPUs with
    /// AVX-512 at any oneDNN level (their channels-last input gradients were wrong at AVX2 too).
    /// </summary>
    public static bool GuardsGrouped => GroupedGuard.Value;

    /// <summary><c>conv2d(x, weight, bias, stride, padding, dilation, groups)</c>; a wide 1×1 kernel as a matrix product.</summary>
    public static Tensor Conv2d(Tensor x, Tensor weight, Tensor? bias, long[] stride, long[] padding, long[] dilation, long groups) =>
        Conv2d(x, weight, bias, stride, padding, dilation, groups, GuardsAvx512, GuardsGrouped);

    /// <summary>The same, with the routings on or off (tests run them on any CPU).</summary>
    internal static Tensor Conv2d(Tensor x, Tensor weight, Tensor? bias, long[] stride, long[] padding, long[] dilation, long groups, bool guardAvx512, bool guardGrouped = true)
    {
        if (RunsAsMatrixProduct(x, weight, padding, groups, guardAvx512))
        {
            return Pointwise(x, weight, bias, stride);
        }

        if (x.dim() != 4 || !(guardAvx512 || (guardGrouped && groups > 1)))
        {
            return F.conv2d(x, weight, bias, stride, padding, dilation, groups);
        }

        if (groups > 1 && (weight.shape[0] != groups || dilation.Any(d => d != 1)))
        {
            // Grouped: oneDNN's channels-last kernels were wrong with a channel multiplier or a dilation; plain
            // depthwise convolutions (one output channel per group, no dilation) stay channels-last, right and faster.
            using var nchw = x.contiguous();
            return F.conv2d(nchw, weight, bias, stride, padding, dilation, groups);
        }

        if (!guardAvx512 || IsChannelsLast(x))
        {
            return F.conv2d(x, weight, bias, stride, padding, dilation, groups);
        }

        using var nhwc = x.permute(0, 2, 3, 1).contiguous();
        using var channelsLast = nhwc.permute(0, 3, 1, 2);
        return F.conv2d(channelsLast, weight, bias, stride, padding, dilation, groups);
    }

    /// <summary>
    /// True for a 4-D input and a 1×1 kernel with one group and no padding that is wide: both channel counts at least
    /// 256, or either at least 1024 (every shape oneDNN died on, with a margin; narrower ones stay with oneDNN, faster there).
    /// With <paramref name="guardAvx512"/>, every such 1×1 kernel (oneDNN's AVX-512 1×1 kernel is wrong for some shapes).
    /// </summary>
    public static bool RunsAsMatrixProduct(Tensor x, Tensor weight, long[] padding, long groups, bool guardAvx512 = false)
    {
        if (groups != 1 || x.dim() != 4 || weight.dim() != 4 || weight.shape[2] != 1 || weight.shape[3] != 1 || padding.Any(p => p != 0))
        {
            return false;
        }

        var (output, input) = (weight.shape[0], weight.shape[1]);
        return guardAvx512 || Math.Min(input, output) >= 256 || Math.Max(input, output) >= 1024;
    }

    /// <summary>Whether a cap (an <c>ONEDNN_MAX_CPU_ISA</c> value, null for none) leaves oneDNN its AVX-512 kernels.</summary>
    internal static bool OneDnnMayUseAvx512(string? cap) =>
        cap is null || cap.StartsWith("AVX512", StringComparison.OrdinalIgnoreCase) || cap.StartsWith("AVX10", StringComparison.OrdinalIgnoreCase);

    /// <summary>Whether a 4-D tensor is laid out channels-last (NHWC strides), the layout oneDNN's AVX-512 kernels get right here.</summary>
    internal static bool IsChannelsLast(Tensor x)
    {
        var (c, h, w) = (x.shape[1], x.shape[2], x.shape[3]);
        return (c == 1 || x.stride(1) == 1) && (w == 1 || x.stride(3) == c) && (h == 1 || x.stride(2) == w * c);
    }

    /// <summary>
    /// A 1×1 convolution (no padding, one group) of <paramref name="x"/> <c>[N, C, H, W]</c>: the strided slice
    /// <c>x[:, :, ::s, ::s]</c> viewed as <c>[N, H', W', C]</c> times the transposed weight <c>[C, O]</c>. The result
    /// <c>[N, O, H', W']</c> is channels-last. A channels-last input at stride 1 is read in place; any other input is
    /// copied once into NHWC order by the product.
    /// </summary>
    public static Tensor Pointwise(Tensor x, Tensor weight, Tensor? bias, long[] stride)
    {
        var (sh, sw) = stride.Length switch
        {
            0 => (1L, 1L),
            1 => (stride[0], stride[0]),
            _ => (stride[0], stride[1]),
        };
        using var rows = sh == 1 ? x.alias() : x.slice(2, 0, x.shape[2], sh);
        using var sampled = sw == 1 ? rows.alias() : rows.slice(3, 0, x.shape[3], sw);
        using var matrix = weight.flatten(1);
        using var nhwc = sampled.permute(0, 2, 3, 1);
        using var y = F.linear(nhwc, matrix, bias);
        return y.permute(0, 3, 1, 2);
    }
}
