namespace TransferLearning.Native;

/// <summary>
/// What this CPU offers the int8 and bf16 kernels, and what oneDNN is allowed to use of it: the flags Linux lists in
/// <c>/proc/cpuinfo</c> (read once) and the <c>ONEDNN_MAX_CPU_ISA</c> cap the environment sets, if any.
/// </summary>
internal static class CpuFeatures
{
    private static readonly Lazy<IReadOnlySet<string>> LinuxFlags = new(ReadFlags);

    /// <summary>oneDNN caps (its <c>ONEDNN_MAX_CPU_ISA</c> values) that keep its AVX-512 VNNI int8 kernels.</summary>
    private static readonly HashSet<string> Avx512VnniCaps = new(StringComparer.OrdinalIgnoreCase)
    {
        "AVX512_CORE_VNNI", "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX10_1_512", "AVX512_CORE_AMX", "AVX10_1_512_AMX",
        "AVX512_CORE_AMX_FP16", "AVX10_1_512_AMX_FP16",
    };

    /// <summary>oneDNN caps that keep its AVX-512 bf16 kernels.</summary>
    private static readonly HashSet<string> Bf16Caps = new(StringComparer.OrdinalIgnoreCase)
    {
        "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX10_1_512", "AVX512_CORE_AMX", "AVX10_1_512_AMX", "AVX512_CORE_AMX_FP16",
        "AVX10_1_512_AMX_FP16",
    };

    /// <summary>The CPU flags of the first processor in <c>/proc/cpuinfo</c>; empty off Linux or when unreadable.</summary>
    public static IReadOnlySet<string> Flags => LinuxFlags.Value;

    /// <summary>Whether Linux lists <paramref name="flag"/> (e.g. <c>avx512_vnni</c>) for this CPU.</summary>
    public static bool Has(string flag) => Flags.Contains(flag);

    /// <summary>The cap on oneDNN's instruction set in force for this process, or null when none is set.</summary>
    public static string? OneDnnIsaCap
    {
        get
        {
            var cap = Environment.GetEnvironmentVariable(TorchNativeLoader.OneDnnIsaVariable);
            if (string.IsNullOrWhiteSpace(cap))
            {
                cap = Environment.GetEnvironmentVariable("DNNL_MAX_CPU_ISA");
            }

            return string.IsNullOrWhiteSpace(cap) || cap.Trim().Equals("ALL", StringComparison.OrdinalIgnoreCase)
                || cap.Trim().Equals("DEFAULT", StringComparison.OrdinalIgnoreCase) ? null : cap.Trim();
        }
    }

    /// <summary>
    /// Whether oneDNN's int8 convolutions accumulate u8×s8 products without 16-bit saturation here: the CPU has a VNNI
    /// dot product (<c>vpdpbusd</c>) and the oneDNN cap lets oneDNN use it (AVX-512 VNNI, or AVX-VNNI under an
    /// <c>AVX2_VNNI</c> cap). Without it, oneDNN and FBGEMM use <c>vpmaddubsw</c>, which saturates for 8-bit activations.
    /// </summary>
    public static bool OneDnnHasVnni(string? cap, Func<string, bool> has) => cap switch
    {
        null => has("avx512_vnni") || has("avx_vnni"),
        _ when Avx512VnniCaps.Contains(cap) => has("avx512_vnni"),
        _ when cap.Equals("AVX2_VNNI", StringComparison.OrdinalIgnoreCase) || cap.Equals("AVX2_VNNI_2", StringComparison.OrdinalIgnoreCase) => has("avx_vnni"),
        _ => false,
    };

    /// <summary>Whether oneDNN may run bf16 convolutions and matrix products natively (AVX-512 BF16 or AMX, not capped below).</summary>
    public static bool OneDnnHasBf16(string? cap, Func<string, bool> has) =>
        (has("avx512_bf16") || has("amx_bf16")) && (cap is null || Bf16Caps.Contains(cap));

    private static HashSet<string> ReadFlags()
    {
        var flags = new HashSet<string>(StringComparer.Ordinal);
        if (!OperatingSystem.IsLinux())
        {
            return flags;
        }

        try
        {
            foreach (var line in File.ReadLines("/proc/cpuinfo"))
            {
                if (line.StartsWith("flags", StringComparison.Ordinal) && line.IndexOf(':', StringComparison.Ordinal) is var colon and > 0)
                {
                    flags.UnionWith(line[(colon + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
                    break;
                }
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }

        return flags;
    }
}
