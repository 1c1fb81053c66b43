using TorchSharp;

namespace TransferLearning.Native;

/// <summary>
/// Scalars that live as long as the process, for operations that run on every batch. TorchSharp turns a number argument
/// (and the implicit alpha 1 of <c>add</c>, <c>add_</c> and <c>a + b</c>) into a temporary <see cref="Scalar"/> and passes
/// only its native handle on: a garbage collection during the call can finalize the temporary and free the handle while
/// LibTorch still reads it. Seen twice: inside an imported ONNX Add (<c>c10::Scalar::toFloat</c>) and inside a torchvision
/// MobileNetV2's ReLU6 (<c>hardtanh_</c>: "Expected false to be true" from <c>c10::Scalar::toDouble</c>) in full test runs;
/// float32 gradients off by a few percent now and then under load (BatchNorm folding's eps, the residual adds' alpha)
/// fit the same mechanism, and they are what had kept oneDNN capped at AVX2 on AMD CPUs (see TorchNativeLoader).
/// DisposeScopes do not track scalars, so these are never disposed.
/// </summary>
internal static class KeptScalars
{
    /// <summary>0 (an integer scalar, as an implicit <c>0</c> argument).</summary>
    public static readonly Scalar Zero = 0.ToScalar();

    /// <summary>1: the alpha to pass to <c>add</c>/<c>add_</c>.</summary>
    public static readonly Scalar One = 1.ToScalar();

    /// <summary>6: ReLU6's upper bound.</summary>
    public static readonly Scalar Six = 6.ToScalar();
}
