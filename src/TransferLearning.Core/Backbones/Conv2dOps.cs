using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace TransferLearning.Backbones;

/// <summary>
/// The one 2-D convolution entry of the backbone families (torchvision's folded and unfolded convolutions, the ONNX
/// importer's Conv, TF.js Conv2D): <c>conv2d</c>, except that a wide 1×1 convolution without groups or padding runs as
/// a matrix product over channels (after a strided slice when the stride is above 1).
/// </summary>
/// <remarks>
/// LibTorch 2.10's oneDNN kills the process with SIGFPE (<c>brgemm_convolution_utils::brg_blocking_t::est_eff_1x1</c>)
/// for ResNet-50-class 1×1 convolutions at the AVX2 ISA (the cap <see cref="Native.TorchNativeLoader"/> sets on AMD CPUs
/// with AVX-512). Measured on an AMD EPYC VM (batch 2 to 32, channels-last input, 1 or 2 threads): 256→1024, 512→1024,
/// 512→2048, 1024→512, 1024→2048, 1024→256 and 2048→512 died, the stride-2 512→1024 and 1024→2048 also on a contiguous
/// NCHW input; 64→64, 64→256, 256→64, 256→128, 128→512, 512→128, 512→256, 256→512 (stride 2), 960→320, 320→1280 and
/// every MobileNetV2 shape ran. A 1×1 convolution is exactly <c>y[n,:,h,w] = W·x[n,:,h·s,w·s] + b</c>, so the matrix
/// product gives the same values (up to float summation order) and autograd the gradients, without oneDNN's 1×1
/// kernel. It runs for <see cref="RunsAsMatrixProduct">wide</see> convolutions only, with a margin around the shapes
/// that died: for ResNet-50's shapes it was about 4× faster than oneDNN on an NCHW copy, but in MobileNetV2's
/// high-resolution blocks (16→96 at 112×112, 24→144 at 56×56, …) its backward pass took 2–3.5× oneDNN's (the
/// <c>conv1x1</c> benchmark and a per-block fine-tuning profile).
/// </remarks>
internal static class Conv2dOps
{
    /// <summary><c>conv2d(x, weight, bias, stride, padding, dilation, groups)</c>; a wide 1×1 kernel as a matrix product.</summary>
    public static Tensor Conv2d(Tensor x, Tensor weight, Tensor? bias, long[] stride, long[] padding, long[] dilation, long groups) =>
        RunsAsMatrixProduct(x, weight, padding, groups)
            ? Pointwise(x, weight, bias, stride)
            : F.conv2d(x, weight, bias, stride, padding, dilation, groups);

    /// <summary>
    /// True for a 4-D input and a 1×1 kernel with one group and no padding that is wide: both channel counts at least
    /// 256, or either at least 1024 (every shape oneDNN died on, with a margin; narrower ones stay with oneDNN, faster there).
    /// </summary>
    public static bool RunsAsMatrixProduct(Tensor x, Tensor weight, long[] padding, long groups)
    {
        if (groups != 1 || x.dim() != 4 || weight.dim() != 4 || weight.shape[2] != 1 || weight.shape[3] != 1 || padding.Any(p => p != 0))
        {
            return false;
        }

        var (output, input) = (weight.shape[0], weight.shape[1]);
        return Math.Min(input, output) >= 256 || Math.Max(input, output) >= 1024;
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
