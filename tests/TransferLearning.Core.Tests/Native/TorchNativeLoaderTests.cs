using System.Security.Cryptography;
using TorchSharp;
using TransferLearning.Native;

namespace TransferLearning.Core.Tests.Native;

public class TorchNativeLoaderTests
{
    [Fact]
    public void EnsureLoaded_FromTestHost_TorchSharpRunsAConvolution()
    {
        TorchNativeLoader.EnsureLoaded();

        using var input = torch.ones(1, 1, 3, 3);
        using var kernel = torch.ones(1, 1, 2, 2);
        using var output = torch.nn.functional.conv2d(input, kernel);

        Assert.Equal(new long[] { 1, 1, 2, 2 }, output.shape);
        Assert.All(output.data<float>().ToArray(), v => Assert.Equal(4f, v));
        Assert.NotNull(TorchNativeLoader.Status);
    }

    /// <summary>
    /// Shapes whose oneDNN AVX-512 kernels gave wrong results on an AMD Zen 5 (channel counts not multiples of 16), in
    /// both memory layouts the library uses, through the library's convolution entry (which routes around those kernels
    /// on such CPUs) against a float64 reference: guards every machine the suite runs on.
    /// </summary>
    [Theory]
    [InlineData(144, 40, 1, 7, true)]
    [InlineData(96, 512, 1, 14, true)]
    [InlineData(8, 40, 1, 28, true)]
    [InlineData(24, 8, 3, 7, false)]
    [InlineData(24, 16, 3, 28, false)]
    [InlineData(40, 64, 3, 14, true)]
    [InlineData(64, 64, 3, 56, true)]
    public void Conv2d_ChannelCountsNotMultipleOf16_MatchFloat64Reference(int inChannels, int outChannels, int kernel, int size, bool channelsLast)
    {
        TorchNativeLoader.EnsureLoaded();
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var generator = new torch.Generator(7);
        var x = torch.randn([2, inChannels, size, size], generator: generator);
        var w = torch.randn([outChannels, inChannels, kernel, kernel], generator: generator) / Math.Sqrt(inChannels * kernel * kernel);
        var input = channelsLast ? x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2) : x;
        long[] padding = [kernel / 2, kernel / 2];

        var actual = TransferLearning.Backbones.Conv2dOps.Conv2d(input, w, null, [1, 1], padding, [1, 1], 1);
        var expected = torch.nn.functional.conv2d(x.to(torch.float64), w.to(torch.float64), padding: padding).to(torch.float32);

        var maxDiff = (actual - expected).abs().max().item<float>();
        Assert.True(maxDiff < 1e-4f, $"conv {inChannels}→{outChannels} k{kernel} {size}×{size} channels-last={channelsLast}: max |diff| {maxDiff} ({TorchNativeLoader.Status}; AVX-512 routing {TransferLearning.Backbones.Conv2dOps.GuardsAvx512})");
    }

    [Fact]
    public void MarkWeak_RealTorchSharpLibrary_OnlyNewLibstdcxxNeedsBecomeWeak()
    {
        var path = TorchNativeLoader.FindLibrary("libLibTorchSharp.so");
        Assert.NotNull(path);
        var image = File.ReadAllBytes(path);
        var before = ElfVersionNeedPatcher.ReadNeeds(image, path);
        Assert.Contains(before, n => n.Version == "GLIBCXX_3.4.32" && !n.IsWeak);

        var changed = ElfVersionNeedPatcher.MarkWeak(image, path, ElfVersionNeedPatcher.IsNewerThanGcc12);

        var after = ElfVersionNeedPatcher.ReadNeeds(image, path);
        Assert.Contains("GLIBCXX_3.4.32", changed);
        Assert.Equal(before.Count, after.Count);
        for (var i = 0; i < before.Count; i++)
        {
            Assert.Equal(before[i].Version, after[i].Version);
            var shouldBeWeak = before[i].IsWeak || ElfVersionNeedPatcher.IsNewerThanGcc12(before[i].File, before[i].Version);
            Assert.Equal(shouldBeWeak, after[i].IsWeak);
        }

        Assert.Contains(after, n => n.Version == "GLIBCXX_3.4.30" && !n.IsWeak);
        Assert.Equal(before.Count(n => !n.IsWeak) - changed.Count, after.Count(n => !n.IsWeak));
    }

    [Fact]
    public void WritePatchedCopy_RealLibrary_OriginalUntouchedAndCopyPatched()
    {
        var path = TorchNativeLoader.FindLibrary("libLibTorchSharp.so");
        Assert.NotNull(path);
        var hashBefore = SHA256.HashData(File.ReadAllBytes(path));

        var copy = TorchNativeLoader.WritePatchedCopy(path, "test");

        Assert.NotEqual(Path.GetFullPath(path), Path.GetFullPath(copy));
        Assert.Equal(hashBefore, SHA256.HashData(File.ReadAllBytes(path)));
        var needs = ElfVersionNeedPatcher.ReadNeeds(File.ReadAllBytes(copy), copy);
        Assert.Contains(needs, n => n.Version == "GLIBCXX_3.4.32" && n.IsWeak);
        Assert.Equal(copy, TorchNativeLoader.WritePatchedCopy(path, "test"));
    }

    [Fact]
    public void WritePatchedCopy_FolderNotWritable_ThrowsNamingTheVariable()
    {
        var path = TorchNativeLoader.FindLibrary("libLibTorchSharp.so");
        Assert.NotNull(path);

        var e = Assert.Throws<TorchNativeLoadException>(() => TorchNativeLoader.WritePatchedCopy(path, "test", cacheRoot: "/proc/tl-native"));

        Assert.StartsWith(
            "TorchSharp's native library needs a newer libstdc++ (GCC 13) than this system has, so TransferLearning loads a copy of it with those " +
            "needs relaxed, but the copy could not be written to '/proc/tl-native/",
            e.Message);
        Assert.EndsWith(
            "Set TRANSFERLEARNING_NATIVE_DIR to a writable folder (it defaults to ~/.cache/transferlearning/native), or install libstdc++6 from GCC 13 or later.",
            e.Message);
    }

    [Fact]
    public void ReadNeeds_NotAnElfFile_ThrowsNamingTheFile()
    {
        var ex = Assert.Throws<InvalidDataException>(() => ElfVersionNeedPatcher.ReadNeeds(new byte[100], "lib.so"));
        Assert.Equal("'lib.so' is not an ELF file.", ex.Message);
    }

    [Fact]
    public void ReadNeeds_TruncatedSectionTable_Throws()
    {
        var path = TorchNativeLoader.FindLibrary("libLibTorchSharp.so")!;
        var head = File.ReadAllBytes(path).AsSpan(0, 4096).ToArray();
        var ex = Assert.Throws<InvalidDataException>(() => ElfVersionNeedPatcher.ReadNeeds(head, "head.so"));
        Assert.Equal("'head.so' has a truncated or missing section header table.", ex.Message);
    }

    [Theory]
    [InlineData("libstdc++.so.6", "GLIBCXX_3.4.32", true)]
    [InlineData("libstdc++.so.6", "GLIBCXX_3.4.31", true)]
    [InlineData("libstdc++.so.6", "GLIBCXX_3.4.30", false)]
    [InlineData("libstdc++.so.6", "CXXABI_1.3.14", true)]
    [InlineData("libstdc++.so.6", "CXXABI_1.3.13", false)]
    [InlineData("libc.so.6", "GLIBC_2.34", false)]
    public void IsNewerThanGcc12_Versions_AsExpected(string file, string version, bool expected) =>
        Assert.Equal(expected, ElfVersionNeedPatcher.IsNewerThanGcc12(file, version));
}
