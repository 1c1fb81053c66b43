using TransferLearning.Native;

namespace TransferLearning.Backbones;

/// <summary>
/// How wide the 8-bit activations of int8 backbones may be on this machine (detected once per process).
/// </summary>
/// <remarks>
/// LibTorch's x86 quantized engine runs a convolution on oneDNN when the CPU has AVX-512 VNNI (Linux) and the
/// convolution has at most 100 groups, and on FBGEMM otherwise. Kernels that multiply u8 activations by s8 weights
/// with <c>vpmaddubsw</c> add pairs of products in 16 bits and saturate when activations use the full 0..255 range
/// (255·127·2 &gt; 32767); kernels with a VNNI dot product (<c>vpdpbusd</c>) accumulate in 32 bits and do not. So:
/// <list type="bullet">
/// <item>full range (0..255) for the inputs of convolutions that oneDNN runs with VNNI: CPU flag <c>avx512_vnni</c>,
/// Linux, and a oneDNN cap that keeps VNNI (none, an AVX-512 VNNI level, or <c>AVX2_VNNI</c> with <c>avx_vnni</c>);</item>
/// <item>7-bit range (0..127) everywhere else, including the inputs of depthwise convolutions with more than 100
/// channels even on VNNI CPUs (FBGEMM's depthwise kernels use <c>vpmaddubsw</c>; measured saturating on AVX-512 VNNI).</item>
/// </list>
/// </remarks>
internal static class Int8Kernels
{
    /// <summary>Activation levels (largest quantized value) without VNNI: 7 bits.</summary>
    public const int SevenBit = 127;

    /// <summary>Activation levels with VNNI: the full 8 bits.</summary>
    public const int EightBit = 255;

    /// <summary>Largest group count that LibTorch's x86 engine sends to oneDNN (more goes to FBGEMM).</summary>
    public const long OneDnnMaxGroups = 100;

    private static readonly Lazy<(int Levels, string Reason)> Detected = new(() => Detect(OperatingSystem.IsLinux(), CpuFeatures.OneDnnIsaCap, CpuFeatures.Has));
    private static readonly AsyncLocal<int?> Forced = new();

    /// <summary>Levels for activations that only non-saturating kernels read: 255 with VNNI, else 127.</summary>
    public static int ActivationLevels => Forced.Value ?? Detected.Value.Levels;

    /// <summary>Why <see cref="ActivationLevels"/> is what it is (for messages and benchmarks).</summary>
    public static string Description => Forced.Value is { } forced
        ? $"{Bits(forced)} activations (forced)"
        : $"{Bits(Detected.Value.Levels)} activations: {Detected.Value.Reason}";

    /// <summary>Levels a convolution with <paramref name="groups"/> groups can take as input without saturating.</summary>
    public static int InputLevels(long groups) => ActivationLevels == EightBit && groups <= OneDnnMaxGroups ? EightBit : SevenBit;

    /// <summary>Runs the calling flow (and what it awaits) with the given levels instead of the detected ones (tests).</summary>
    internal static IDisposable Force(int levels)
    {
        if (levels is not (SevenBit or EightBit))
        {
            throw new ArgumentOutOfRangeException(nameof(levels), levels, "Use 127 or 255.");
        }

        var previous = Forced.Value;
        Forced.Value = levels;
        return new Restore(() => Forced.Value = previous);
    }

    /// <summary>The detection rule, given the facts (testable without the CPU at hand).</summary>
    internal static (int Levels, string Reason) Detect(bool linux, string? oneDnnCap, Func<string, bool> cpuHas)
    {
        if (!linux)
        {
            return (SevenBit, "LibTorch sends int8 convolutions to oneDNN only on Linux; FBGEMM's kernels saturate at 8 bits");
        }

        if (!cpuHas("avx512_vnni"))
        {
            return (SevenBit, cpuHas("avx_vnni")
                ? "the CPU has AVX-VNNI but not AVX-512 VNNI, and LibTorch then runs int8 convolutions on FBGEMM, whose kernels saturate at 8 bits"
                : "the CPU has no AVX-512 VNNI (flag avx512_vnni), so the int8 kernels saturate at 8 bits");
        }

        if (!CpuFeatures.OneDnnHasVnni(oneDnnCap, cpuHas))
        {
            return (SevenBit, $"the CPU has AVX-512 VNNI but oneDNN is capped at {oneDnnCap} ({TorchNativeLoader.OneDnnIsaVariable}), below VNNI");
        }

        return (EightBit, oneDnnCap is null
            ? "AVX-512 VNNI (oneDNN convolutions; depthwise convolutions with more than 100 channels stay 7-bit on FBGEMM)"
            : $"VNNI under oneDNN cap {oneDnnCap} (oneDNN convolutions; depthwise convolutions with more than 100 channels stay 7-bit on FBGEMM)");
    }

    private static string Bits(int levels) => levels == EightBit ? "8-bit (0..255)" : "7-bit (0..127)";

    private sealed class Restore(Action restore) : IDisposable
    {
        public void Dispose() => restore();
    }
}
