using TransferLearning.Backbones;

namespace TransferLearning.Core.Tests.Int8;

public sealed class Int8KernelsTests
{
    private static Func<string, bool> Flags(params string[] flags) => flags.Contains;

    [Theory]
    [InlineData(true, null, "avx512_vnni avx_vnni", Int8Kernels.EightBit)]
    [InlineData(true, null, "avx512_vnni", Int8Kernels.EightBit)]
    [InlineData(true, "AVX2_VNNI", "avx512_vnni avx_vnni", Int8Kernels.EightBit)] // the cap the library set on AMD Zen 5 until 2026-12-01
    [InlineData(true, "avx512_core_vnni", "avx512_vnni", Int8Kernels.EightBit)]
    [InlineData(true, "AVX2", "avx512_vnni avx_vnni", Int8Kernels.SevenBit)] // oneDNN capped below VNNI: vpmaddubsw saturates
    [InlineData(true, "AVX2_VNNI", "avx512_vnni", Int8Kernels.SevenBit)] // the cap names AVX-VNNI, which this CPU lacks
    [InlineData(true, "AVX512_CORE", "avx512_vnni", Int8Kernels.SevenBit)]
    [InlineData(true, null, "avx_vnni avx2", Int8Kernels.SevenBit)] // without AVX-512 VNNI, LibTorch uses FBGEMM
    [InlineData(true, null, "avx2 fma", Int8Kernels.SevenBit)]
    [InlineData(false, null, "avx512_vnni", Int8Kernels.SevenBit)] // oneDNN int8 only on Linux
    public void Detect_CpuFlagsAndOneDnnCap_PicksActivationRange(bool linux, string? cap, string flags, int expected)
    {
        var (levels, reason) = Int8Kernels.Detect(linux, cap, Flags(flags.Split(' ')));

        Assert.Equal(expected, levels);
        Assert.False(string.IsNullOrWhiteSpace(reason));
    }

    [Fact]
    public void InputLevels_EightBitRange_DepthwiseWithMoreThan100GroupsStaysSevenBit()
    {
        using (Int8Kernels.Force(Int8Kernels.EightBit))
        {
            Assert.Equal(Int8Kernels.EightBit, Int8Kernels.InputLevels(1));
            Assert.Equal(Int8Kernels.EightBit, Int8Kernels.InputLevels(100));
            Assert.Equal(Int8Kernels.SevenBit, Int8Kernels.InputLevels(101)); // FBGEMM's depthwise kernels saturate at 8 bits
            Assert.StartsWith("8-bit (0..255) activations", Int8Kernels.Description, StringComparison.Ordinal);
        }

        using (Int8Kernels.Force(Int8Kernels.SevenBit))
        {
            Assert.Equal(Int8Kernels.SevenBit, Int8Kernels.InputLevels(1));
        }
    }

    [Fact]
    public void WithLevels_SameRealRange_InSevenOrEightBits()
    {
        var eight = new ActivationQuantization(0.02, 128, Int8Kernels.EightBit); // -2.56 .. 2.54

        var seven = eight.WithLevels(Int8Kernels.SevenBit);

        Assert.Equal(Int8Kernels.SevenBit, seven.Levels);
        Assert.Equal(64, seven.ZeroPoint);
        Assert.InRange(Math.Abs((-eight.ZeroPoint * eight.Scale) - (-seven.ZeroPoint * seven.Scale)), 0, seven.Scale / 2); // the zero point is rounded
        Assert.InRange(Math.Abs(((255 - 128) * 0.02) - ((127 - 64) * seven.Scale)), 0, seven.Scale / 2);
        var back = seven.WithLevels(Int8Kernels.EightBit);
        Assert.Equal(eight.Scale, back.Scale, 12);
        Assert.InRange(back.ZeroPoint, eight.ZeroPoint - 1, eight.ZeroPoint + 1); // rounded twice
        Assert.Equal(seven, seven.WithLevels(Int8Kernels.SevenBit));
    }
}
