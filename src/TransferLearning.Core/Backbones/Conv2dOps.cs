using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace TransferLearning.Backbones;

/// <summary>
/// The one 2-D convolution entry of the backbone families (torchvision's folded and unfolded convolutions, the ONNX
/// importer's Conv, TF.js Conv2D): <c>conv2d</c>, except that a 1×1 convolution without groups or padding runs as a
/// matrix product over channels (after a strided slice when the stride is above 1).
/// </summary>
/// <remarks>
/// LibTorch 2.10's oneDNN kills the process with SIGFPE (<c>brgemm_convolution_utils::brg_blocking_t::est_eff_1x1</c>)
/// for some 1×1 convolutions on channels-last input — 256→1024, 512→1024, 512→2048, 1024→512, 1024→2048 channels, any
/// stride — at the AVX2 ISA (the cap <see cref="Native.TorchNativeLoader"/> sets on AMD CPUs with AVX-512), first seen
/// with two intra-op threads; on the AMD EPYC VM it was measured on it also died with one thread, at batch 2, and for
/// the stride-2 shapes (512→1024, 1024→2048) on a contiguous NCHW input. Those are ResNet-50-class bottleneck shapes,
/// so every 1×1 convolution stays away from that kernel, whatever the layout. A 1×1 convolution is exactly
/// <c>y[n,:,h,w] = W·x[n,:,h·s,w·s] + b</c>, so the matrix product gives the same values (up to float summation order),
/// its gradients come from autograd, and oneDNN's 1×1 kernel is never asked; on this machine the product was also
/// faster than oneDNN on an NCHW copy (the <c>conv1x1</c> benchmark).
/// </remarks>
internal static class Conv2dOps
{
    /// <summary><c>conv2d(x, weight, bias, stride, padding, dilation, groups)</c>, a 1×1 kernel as a matrix product.</summary>
    public static Tensor Conv2d(Tensor x, Tensor weight, Tensor? bias, long[] stride, long[] padding, long[] dilation, long groups) =>
        IsPointwise(x, weight, padding, groups)
            ? Pointwise(x, weight, bias, stride)
            : F.conv2d(x, weight, bias, stride, padding, dilation, groups);

    /// <summary>True for a 4-D input and a 1×1 kernel with one group and no padding.</summary>
    public static bool IsPointwise(Tensor x, Tensor weight, long[] padding, long groups) =>
        groups == 1 && x.dim() == 4 && weight.dim() == 4 && weight.shape[2] == 1 && weight.shape[3] == 1 && padding.All(p => p == 0);

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
