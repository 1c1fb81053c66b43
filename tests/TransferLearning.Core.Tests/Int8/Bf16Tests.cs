using TransferLearning.Backbones;
using TransferLearning.Datasets;
using static TorchSharp.torch;

namespace TransferLearning.Core.Tests.Int8;

/// <summary>
/// Bfloat16 featurising: close to float where it runs, a clear refusal where the CPU would emulate it. (Not every network
/// takes bf16 this well: the Teachable Machine MobileNetV2 α=0.35 was at cosine 0.975 for its worst photo — see the README.)
/// </summary>
public sealed class Bf16Tests : IClassFixture<GeneratedImages>
{
    private readonly GeneratedImages _images;

    public Bf16Tests(GeneratedImages images) => _images = images;

    [Theory]
    [Trait("Category", "RealData")]
    [InlineData("torchvision-mobilenet_v2")]
    [InlineData("torchvision-resnet18")]
    public void EnableBf16_FrozenBackboneOnPhotos_FeaturesCloseToFloat(string family)
    {
        using var backbone = Int8FamilyTests.Family(family);
        backbone.Freeze();
        backbone.SetTrainingMode(false);
        var spec = backbone.InputSpec.WithSize(96, 96); // small: where bf16 is emulated (this test runs everywhere) it is slow
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var photos = Int8FamilyTests.Photos(spec, offset: 0, count: 8);
        var reference = backbone.Forward(photos);

        backbone.EnableBf16Unchecked();
        var bf16 = backbone.Forward(photos);

        Assert.True(backbone.IsBf16);
        Assert.Equal(ScalarType.Float32, bf16.dtype);
        Assert.Equal(reference.shape, bf16.shape);
        var cosine = nn.functional.cosine_similarity(bf16, reference, 1).min().item<float>();
        Assert.True(cosine >= 0.99f, $"{family}: cosine similarity {cosine:F4}");
        Assert.True(((bf16 - reference).norm() / reference.norm()).item<float>() > 1e-6f); // really rounded

        backbone.Unfreeze();
        Assert.False(backbone.IsBf16);
    }

    [Fact]
    public void EnableBf16_MobileNetLikeOperators_FeaturesCloseToFloatUntilUnfreeze()
    {
        using var backbone = Int8LoweringTests.MobileNetLike();
        backbone.Freeze();
        backbone.SetTrainingMode(false);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        using var generator = new Generator(11, CPU);
        var images = rand([4, 3, 32, 32], generator: generator);
        var reference = backbone.Forward(images);

        backbone.EnableBf16Unchecked();
        var bf16 = backbone.Forward(images);
        backbone.Unfreeze();
        var again = backbone.Forward(images);

        Assert.Equal(ScalarType.Float32, bf16.dtype);
        Assert.Equal(reference.shape, bf16.shape);
        var cosine = nn.functional.cosine_similarity(bf16, reference, 1).min().item<float>();
        Assert.True(cosine >= 0.99f, $"cosine similarity {cosine:F4}");
        var rounded = ((bf16 - reference).norm() / reference.norm()).item<float>();
        Assert.True(rounded > 1e-4f, $"bf16: relative difference {rounded} to float"); // really rounded (bf16 keeps 8 significant bits)
        var back = ((again - reference).norm() / reference.norm()).item<float>();
        Assert.True(back < 1e-5f, $"after Unfreeze: relative difference {back} to float"); // float again
    }

    [Fact]
    public void Fit_Bf16Backbone_RunsWhereTheCpuHasBf16ElseSaysWhichFeatureIsMissing()
    {
        var data = ImageFolder.Load(_images.Root).Split(0.7, seed: 1);
        using var learner = TransferLearner.From(Int8LoweringTests.MobileNetLike()).Freeze().AddHead(data.Classes).WithBf16Backbone().WithSeed(2);
        if (Bf16Kernels.Available)
        {
            var (model, _) = learner.Fit(data, 1);
            using (model)
            {
                Assert.True(model.Backbone.IsBf16);
            }

            return;
        }

        var e = Assert.Throws<NotSupportedException>(() => learner.Fit(data, 1));
        Assert.StartsWith("Bf16Backbone cannot speed up this machine: ", e.Message, StringComparison.Ordinal);
        Assert.Contains("avx512_bf16", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void WithBf16Backbone_AndInt8_FitSaysChooseOne()
    {
        var data = ImageFolder.Load(_images.Root).Split(0.7, seed: 1);
        using var learner = TransferLearner.From(Int8LoweringTests.MobileNetLike()).Freeze().AddHead(data.Classes).WithBf16Backbone().WithInt8Backbone();

        var e = Assert.Throws<InvalidOperationException>(() => learner.Fit(data, 1));

        Assert.Equal("Int8Backbone and Bf16Backbone both ask for a faster backbone; choose one.", e.Message);
    }

    [Theory]
    [InlineData(null, "avx512_bf16 avx512_vnni", true)]
    [InlineData(null, "amx_bf16 amx_tile", true)]
    [InlineData("AVX512_CORE_BF16", "avx512_bf16", true)]
    [InlineData("AVX2_VNNI", "avx512_bf16 avx_vnni", false)] // a cap set below AVX-512 (e.g. for custom modules on AMD): bf16 would be emulated
    [InlineData("AVX512_CORE_VNNI", "avx512_bf16", false)]
    [InlineData(null, "avx512_vnni avx2", false)]
    public void Detect_CpuFlagsAndOneDnnCap_SaysWhetherBf16IsNative(string? cap, string flags, bool available)
    {
        var reason = Bf16Kernels.Detect(cap, flags.Split(' ').Contains);

        Assert.Equal(available, reason is null);
        if (!available)
        {
            Assert.Contains("avx512_bf16", reason!, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Detect_AvxBf16CpuUnderAnAvx2Cap_NamesTheCapAndTheVariableThatLiftsIt()
    {
        var reason = Bf16Kernels.Detect("AVX2_VNNI", new HashSet<string> { "avx512f", "avx512_bf16", "avx_vnni" }.Contains);

        Assert.NotNull(reason);
        Assert.Contains("AVX-512 BF16 (avx512_bf16)", reason, StringComparison.Ordinal);
        Assert.Contains("oneDNN is capped at AVX2_VNNI (ONEDNN_MAX_CPU_ISA)", reason, StringComparison.Ordinal);
        Assert.Contains("remove that variable or set ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16 in the environment before the process starts", reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Detect_CpuWithoutBf16_NamesTheMissingFlags()
    {
        var reason = Bf16Kernels.Detect(null, new HashSet<string> { "avx2", "avx512_vnni" }.Contains);

        Assert.Equal(
            "bf16 needs a CPU with AVX-512 BF16 (flag avx512_bf16) or AMX (flag amx_bf16); this CPU has neither, so LibTorch would emulate bf16, slower than float.",
            reason);
    }
}
