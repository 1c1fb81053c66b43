using TransferLearning.Backbones.Onnx;
using TransferLearning.Core.Tests.Export;
using TransferLearning.Hub;
using TransferLearning.Models;
using static TorchSharp.torch;

namespace TransferLearning.Core.Tests.Onnx;

/// <summary><see cref="BackboneFeatures.MultiStage"/>: which maps are pooled, in which order, and that saving keeps them.</summary>
public sealed class MultiStageFeaturesTests : IClassFixture<ResNet18OnnxFixture>
{
    private readonly ResNet18OnnxFixture _fx;

    public MultiStageFeaturesTests(ResNet18OnnxFixture fx) => _fx = fx;

    [Fact]
    public void LoadResNet18_MultiStage_AverageAndMaxOfLayer4ThenLayer3()
    {
        using var multi = OnnxBackboneLoader.LoadResNet18(_fx.PreprocessPath, _fx.ResNetPath, "resnet18", null, BackboneFeatures.MultiStage);
        Assert.Equal(2 * (512 + 256), multi.FeatureSize);

        // The two maps, each from its own module cut at ResNet18's layer4 and layer3 outputs.
        var merged = OnnxBackboneLoader.Chain(OnnxBackboneLoader.Read(_fx.PreprocessPath), OnnxBackboneLoader.Read(_fx.ResNetPath), out var constants);
        using var layer4 = new OnnxGraphModule(merged, "layer4", inputName: "pre_OriginalInput", outputName: "ReLU393_Output_0", constantInitializers: constants);
        using var layer3 = new OnnxGraphModule(merged, "layer3", inputName: "pre_OriginalInput", outputName: "ReLU347_Output_0", constantInitializers: constants);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        layer4.eval();
        layer3.eval();
        multi.SetTrainingMode(false);
        var generator = new Generator(5, CPU);
        var images = rand([2, 3, 224, 224], generator: generator) * 255;
        var (l4, l3) = (layer4.forward(images), layer3.forward(images));
        Assert.Equal([2L, 512, 7, 7], l4.shape);
        Assert.Equal([2L, 256, 14, 14], l3.shape);
        var expected = cat([l4.mean([2, 3]), l4.amax([2, 3]), l3.mean([2, 3]), l3.amax([2, 3])], 1);

        var actual = multi.Forward(images);

        Assert.Equal(expected.shape, actual.shape);
        OrtReference.AssertClose(expected.data<float>().ToArray(), actual.data<float>().ToArray(), 1e-4, "multi-stage features");
        // Frozen, the backbone runs with BatchNorm folded into the convolutions: the same features.
        multi.Freeze();
        multi.SetTrainingMode(false);
        var folded = multi.Forward(images);
        multi.Unfreeze();
        OrtReference.AssertClose(expected.data<float>().ToArray(), folded.data<float>().ToArray(), 1e-4, "multi-stage features, frozen");

        // The first 512 are the network's own pooled features.
        _fx.Backbone.SetTrainingMode(false);
        var pooled = _fx.Backbone.Forward(images);
        OrtReference.AssertClose(pooled.data<float>().ToArray(), actual.narrow(1, 0, 512).contiguous().data<float>().ToArray(), 1e-4, "average of the last map");
    }

    [Fact]
    public void LoadOnnx_MultiStageWithoutALargerMap_ThrowsNotSupported()
    {
        // One convolution without stride: its 8×8 output is the last map, and no map before it is larger.
        var b = new OnnxModelBuilder(17, [1, 3, 8, 8]);
        var conv = b.Node("Conv", ["x", b.Weight(4, 3, 3, 3)], OnnxModelBuilder.Is("pads", 1, 1, 1, 1));
        var pooled = b.Node("GlobalAveragePool", [b.Node("Relu", [conv])]);
        b.Output(b.Node("Flatten", [pooled]));
        using var dir = new TempDir();
        var path = Path.Combine(dir.Path, "flat.onnx");
        File.WriteAllBytes(path, b.Bytes());

        var e = Assert.Throws<NotSupportedException>(() => ModelHub.LoadBackbone(path, new BackboneLoadOptions { Features = BackboneFeatures.MultiStage }));

        Assert.Equal(
            $"Multi-stage features need a feature map of a larger resolution before 'relu_2_out0' (8 × 8), and the ONNX model 'flat.onnx' has none. Load it with BackboneFeatures.Pooled.",
            e.Message);
    }

    [Fact]
    public void LoadBackbone_MultiStageOnTfjsModel_ThrowsNotSupported()
    {
        var path = RepoPaths.TestData("tfjs", "bn_act", "model.json");

        var e = Assert.Throws<NotSupportedException>(() => ModelHub.LoadBackbone(path, new BackboneLoadOptions { Features = BackboneFeatures.MultiStage }));

        Assert.Equal(
            $"BackboneLoadOptions.Features = MultiStage works with ONNX backbones (and the offline 'resnet18'); '{path}' is a TensorFlow.js layers model (model.json). Leave Features at Pooled for this backbone.",
            e.Message);
    }

    [Fact]
    public void SaveLoad_MultiStageModel_SameFeaturesAndProbabilities()
    {
        using var model = ExportTestSupport.Model(ModelHub.LoadBackbone("resnet18", new BackboneLoadOptions { Features = BackboneFeatures.MultiStage }));
        var photos = ExportTestSupport.Photos(1);
        using var dir = new TempDir();
        var path = Path.Combine(dir.Path, "multi.tlmodel");

        model.Save(path);
        using var loaded = TrainedModel.Load(path);

        Assert.Equal(1536, loaded.Backbone.FeatureSize);
        var expected = model.Predict(photos).SelectMany(p => p.Probabilities).ToArray();
        var actual = loaded.Predict(photos).SelectMany(p => p.Probabilities).ToArray();
        OrtReference.AssertClose(expected, actual, 1e-5, "loaded multi-stage model");
    }
}
