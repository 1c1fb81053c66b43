using TransferLearning.Backbones.Onnx;
using TransferLearning.Core.Tests.Export;
using TransferLearning.Hub;
using TransferLearning.Models;
using static TorchSharp.torch;

namespace TransferLearning.Core.Tests.Onnx;

/// <summary><see cref="BackboneLoadOptions.MirrorAveraged"/>: the features are the mean over each image and its mirror.</summary>
public sealed class MirrorAveragedFeaturesTests : IClassFixture<ResNet18OnnxFixture>
{
    private readonly ResNet18OnnxFixture _fx;

    public MirrorAveragedFeaturesTests(ResNet18OnnxFixture fx) => _fx = fx;

    [Fact]
    public void LoadResNet18_MirrorAveraged_MeanOfImageAndMirrorFeatures()
    {
        using var mirrored = OnnxBackboneLoader.LoadResNet18(_fx.PreprocessPath, _fx.ResNetPath, "resnet18", null, mirrorAveraged: true);
        Assert.Equal(512, mirrored.FeatureSize);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var images = rand([3, 3, 224, 224], generator: new Generator(7, CPU)) * 255;
        _fx.Backbone.SetTrainingMode(false);
        var plain = _fx.Backbone.Forward(images);
        var flipped = _fx.Backbone.Forward(images.flip(3));
        var expected = (plain + flipped) / 2;
        // An image's features and its mirror's differ, so the mean is not one of them.
        Assert.True((plain - flipped).abs().max().item<float>() > 1e-2f);

        mirrored.SetTrainingMode(false);
        var actual = mirrored.Forward(images);

        Assert.Equal([3L, 512], actual.shape);
        OrtReference.AssertClose(expected.data<float>().ToArray(), actual.data<float>().ToArray(), 1e-4, "mirror-averaged features");
        // A mirrored image gives the same features.
        OrtReference.AssertClose(actual.data<float>().ToArray(), mirrored.Forward(images.flip(3)).data<float>().ToArray(), 1e-4, "features of the mirror");
        // Frozen (BatchNorm folded) and in slices of a larger batch: the same features.
        mirrored.Freeze();
        mirrored.SetTrainingMode(false);
        var folded = mirrored.Forward(images.repeat(4, 1, 1, 1)).narrow(0, 0, 3);
        OrtReference.AssertClose(expected.data<float>().ToArray(), folded.contiguous().data<float>().ToArray(), 1e-4, "mirror-averaged features, frozen");
    }

    [Fact]
    public void LoadResNet18_MirrorAveragedMultiStage_MultiStageMeans()
    {
        using var both = OnnxBackboneLoader.LoadResNet18(_fx.PreprocessPath, _fx.ResNetPath, "resnet18", null, BackboneFeatures.MultiStage, mirrorAveraged: true);
        using var multi = OnnxBackboneLoader.LoadResNet18(_fx.PreprocessPath, _fx.ResNetPath, "resnet18", null, BackboneFeatures.MultiStage);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        both.SetTrainingMode(false);
        multi.SetTrainingMode(false);
        var images = rand([2, 3, 224, 224], generator: new Generator(8, CPU)) * 255;

        var expected = (multi.Forward(images) + multi.Forward(images.flip(3))) / 2;
        var actual = both.Forward(images);

        Assert.Equal(1536, both.FeatureSize);
        OrtReference.AssertClose(expected.data<float>().ToArray(), actual.data<float>().ToArray(), 1e-4, "mirror-averaged multi-stage features");
    }

    [Fact]
    public void Forward_MirrorAveragedTrainable_GradientsReachEveryConvolution()
    {
        using var mirrored = OnnxBackboneLoader.LoadResNet18(_fx.PreprocessPath, _fx.ResNetPath, "resnet18", null, mirrorAveraged: true);
        mirrored.Unfreeze();
        mirrored.SetTrainingMode(false);
        using var scope = NewDisposeScope();
        var images = rand([2, 3, 224, 224], generator: new Generator(9, CPU)) * 255;

        mirrored.Forward(images).sum().backward();

        var weights = mirrored.Module.named_parameters().Where(p => p.parameter.dim() == 4).ToList();
        Assert.NotEmpty(weights);
        Assert.All(weights, p => Assert.True(p.parameter.grad is { } g && g.abs().sum().item<float>() > 0, $"no gradient for {p.name}"));
    }

    [Theory]
    [InlineData(18, false)] // Slice with step −1, ReduceMean with an axes input
    [InlineData(17, false)] // Slice with step −1: any width
    [InlineData(9, true)] // Gather over the load's width: that width only
    public void LoadOnnx_MirrorAveraged_MeanOverMirrorAtEveryOpset(int opset, bool widthBound)
    {
        using var dir = new TempDir();
        var path = Path.Combine(dir.Path, "tiny.onnx");
        File.WriteAllBytes(path, TinyModel(opset));
        using var plain = ModelHub.LoadBackbone(path);
        using var mirrored = ModelHub.LoadBackbone(path, new BackboneLoadOptions { MirrorAveraged = true });
        plain.SetTrainingMode(false);
        mirrored.SetTrainingMode(false);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var images = rand([2, 3, 8, 8], generator: new Generator(10, CPU));

        var expected = (plain.Forward(images) + plain.Forward(images.flip(3))) / 2;
        var actual = mirrored.Forward(images);

        Assert.Equal(plain.FeatureSize, mirrored.FeatureSize);
        Assert.Equal(widthBound, mirrored.FixedInputSize);
        Assert.False(plain.FixedInputSize);
        OrtReference.AssertClose(expected.data<float>().ToArray(), actual.data<float>().ToArray(), 1e-5, $"opset {opset}");
        if (!widthBound)
        {
            var wider = rand([1, 3, 8, 12], generator: new Generator(11, CPU));
            var expectedWider = (plain.Forward(wider) + plain.Forward(wider.flip(3))) / 2;
            OrtReference.AssertClose(expectedWider.data<float>().ToArray(), mirrored.Forward(wider).data<float>().ToArray(), 1e-5, "12 columns");
        }
    }

    [Fact]
    public void LoadOnnx_MirrorAveragedBeforeOpset5_ThrowsNotSupported()
    {
        using var dir = new TempDir();
        var path = Path.Combine(dir.Path, "old.onnx");
        File.WriteAllBytes(path, TinyModel(4));

        var e = Assert.Throws<NotSupportedException>(() => ModelHub.LoadBackbone(path, new BackboneLoadOptions { MirrorAveraged = true }));

        Assert.Equal(
            "Mirror-averaged features need ONNX opset 5 or later (Reshape with a shape input), and the ONNX model 'old.onnx' uses opset 4. Load it with BackboneLoadOptions.MirrorAveraged = false.",
            e.Message);
    }

    [Fact]
    public void LoadBackbone_MirrorAveragedOnTfjsModel_ThrowsNotSupported()
    {
        var path = RepoPaths.TestData("tfjs", "bn_act", "model.json");

        var e = Assert.Throws<NotSupportedException>(() => ModelHub.LoadBackbone(path, new BackboneLoadOptions { MirrorAveraged = true }));

        Assert.Equal(
            $"BackboneLoadOptions.MirrorAveraged works with ONNX backbones (and the offline 'resnet18'); '{path}' is a TensorFlow.js layers model (model.json). Leave MirrorAveraged false for this backbone.",
            e.Message);
    }

    [Fact]
    public void SaveLoad_MirrorAveragedModel_SameProbabilities()
    {
        using var model = ExportTestSupport.Model(ModelHub.LoadBackbone("resnet18", new BackboneLoadOptions { MirrorAveraged = true }));
        var photos = ExportTestSupport.Photos(1);
        using var dir = new TempDir();
        var path = Path.Combine(dir.Path, "mirror.tlmodel");

        model.Save(path);
        using var loaded = TrainedModel.Load(path);

        var expected = model.Predict(photos).SelectMany(p => p.Probabilities).ToArray();
        var actual = loaded.Predict(photos).SelectMany(p => p.Probabilities).ToArray();
        OrtReference.AssertClose(expected, actual, 1e-5, "loaded mirror-averaged model");
        // The mirror is in the saved graph: an image and its mirror get the same features.
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        loaded.Backbone.SetTrainingMode(false);
        var images = rand([2, 3, 224, 224], generator: new Generator(12, CPU)) * 255;
        OrtReference.AssertClose(
            loaded.Backbone.Forward(images).data<float>().ToArray(), loaded.Backbone.Forward(images.flip(3)).data<float>().ToArray(), 1e-4, "mirrored images");
    }

    /// <summary>A convolution without symmetry (so a mirror changes its output), ReLU, global average pooling, flatten.</summary>
    private static byte[] TinyModel(int opset)
    {
        var b = new OnnxModelBuilder(opset, [1, 3, 8, 8]);
        var conv = b.Node("Conv", ["x", b.Weight(4, 3, 3, 3)], OnnxModelBuilder.Is("pads", 1, 1, 1, 1));
        var pooled = b.Node("GlobalAveragePool", [b.Node("Relu", [conv])]);
        b.Output(b.Node("Flatten", [pooled]));
        return b.Bytes();
    }
}
