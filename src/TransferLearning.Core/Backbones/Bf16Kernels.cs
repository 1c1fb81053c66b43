using TransferLearning.Native;

namespace TransferLearning.Backbones;

/// <summary>Whether this machine runs bf16 convolutions natively (detected once per process).</summary>
/// <remarks>
/// LibTorch runs bf16 convolutions and matrix products on oneDNN, which has native bf16 kernels only with AVX-512 BF16
/// (<c>vdpbf16ps</c>) or AMX. Without them bf16 is emulated and slower than float, so <see cref="Backbone.EnableBf16"/>
/// refuses rather than slow down silently.
/// </remarks>
internal static class Bf16Kernels
{
    private static readonly Lazy<string?> Missing = new(() => Detect(CpuFeatures.OneDnnIsaCap, CpuFeatures.Has));

    /// <summary>True when native bf16 kernels are available here.</summary>
    public static bool Available => Missing.Value is null;

    /// <summary>Why bf16 is unavailable (naming the CPU feature), or null when it is available.</summary>
    public static string? Unavailable => Missing.Value;

    /// <summary>The detection rule, given the facts: null when bf16 runs natively, else why not.</summary>
    internal static string? Detect(string? oneDnnCap, Func<string, bool> cpuHas)
    {
        if (!cpuHas("avx512_bf16") && !cpuHas("amx_bf16"))
        {
            return "bf16 needs a CPU with AVX-512 BF16 (flag avx512_bf16) or AMX (flag amx_bf16); this CPU has neither, so LibTorch would emulate bf16, slower than float.";
        }

        if (!CpuFeatures.OneDnnHasBf16(oneDnnCap, cpuHas))
        {
            return $"this CPU has {(cpuHas("amx_bf16") ? "AMX" : "AVX-512 BF16 (avx512_bf16)")}, but oneDNN is capped at {oneDnnCap} ({TorchNativeLoader.OneDnnIsaVariable}), "
                + "below AVX512_CORE_BF16, so bf16 would be emulated, slower than float. To use bf16, remove that variable or set "
                + $"{TorchNativeLoader.OneDnnIsaVariable}=AVX512_CORE_BF16 in the environment before the process starts (and check your accuracy).";
        }

        return null;
    }
}
