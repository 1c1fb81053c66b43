using Microsoft.ML.OnnxRuntime;
using TorchSharp;
using TransferLearning.Backbones;
using TransferLearning.Backbones.Onnx;
using TransferLearning.Hub;

namespace TransferLearning.Core.Tests.Onnx;

public sealed class ResNet18OnnxFixture : IDisposable
{
    public ResNet18OnnxFixture()
    {
        (PreprocessPath, ResNetPath) = OfflineModels.LocateResNet18();
        Backbone = OnnxBackboneLoader.LoadResNet18(PreprocessPath, ResNetPath, "resnet18", null);
    }

    public string PreprocessPath { get; }

    public string ResNetPath { get; }

    public Backbone Backbone { get; }

    public void Dispose() => Backbone.Dispose();
}

public class ResNet18OnnxTests : IClassFixture<ResNet18OnnxFixture>
{
    private readonly ResNet18OnnxFixture _fx;

    public ResNet18OnnxTests(ResNet18OnnxFixture fx) => _fx = fx;

    private static float[] Images(int n, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n * 3 * 224 * 224).Select(_ => (float)(rng.NextDouble() * 255)).ToArray();
    }

    private float[] OrtFeatures(float[] images, int n)
    {
        using var prep = new InferenceSession(_fx.PreprocessPath);
        using var net = new InferenceSession(_fx.ResNetPath);
        var per = 3 * 224 * 224;
        var result = new List<float>();
        for (var i = 0; i < n; i++)
        {
            var one = images.AsSpan(i * per, per).ToArray();
            var pre = OrtReference.Run(prep, one, [1, 3, 224, 224]);
            result.AddRange(OrtReference.Run(net, pre, [1, 3, 224, 224]));
        }

        return [.. result];
    }

    [Fact]
    public void LoadResNet18_Offline_Has512FeaturesAndPerNodeBlocks()
    {
        var b = _fx.Backbone;
        Assert.Equal(512, b.FeatureSize);
        Assert.True(b.FixedInputSize); // the preprocessing subtracts a 224×224 mean image
        Assert.Equal(new Datasets.InputSpec(224, 224, 0f, 255f), b.InputSpec);
        Assert.Equal(44, b.Blocks.Count); // 20 Conv + 20 BN in the residual blocks, 2+2 in stem/downsample... one child per weighted node
        Assert.Equal("Convolution249", b.Blocks[0]);
        Assert.Equal("BatchNormalization251", b.Blocks[1]);
        Assert.DoesNotContain(b.Blocks, n => n.StartsWith("pre_", StringComparison.Ordinal));
    }

    [Fact]
    [Trait("Category", "Parity")]
    public void Forward_ResNet18WithPreprocess_MatchesOnnxRuntime()
    {
        const int N = 2;
        var images = Images(N, 7);
        var expected = OrtFeatures(images, N);
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        _fx.Backbone.Unfreeze();
        _fx.Backbone.SetTrainingMode(false);
        var actual = _fx.Backbone.Forward(torch.tensor(images, [N, 3, 224, 224])).data<float>().ToArray();
        OrtReference.AssertClose(expected, actual, 1e-4, "resnet18 unfrozen eval");

        // Frozen + eval runs with BatchNormalization folded into the convolutions: same numbers.
        _fx.Backbone.Freeze();
        _fx.Backbone.SetTrainingMode(false);
        var folded = _fx.Backbone.Forward(torch.tensor(images, [N, 3, 224, 224])).data<float>().ToArray();
        _fx.Backbone.Unfreeze();
        OrtReference.AssertClose(expected, folded, 1e-4, "resnet18 frozen (folded) eval");
    }

    [Fact]
    public void LoadBackbone_ShortNameResNet18_LoadsOfflineOnnx()
    {
        using var backbone = ModelHub.LoadBackbone("ResNet18");
        Assert.Equal("resnet18", backbone.Source);
        Assert.Equal(512, backbone.FeatureSize);
        Assert.Equal(_fx.Backbone.Blocks, backbone.Blocks);
    }
}
