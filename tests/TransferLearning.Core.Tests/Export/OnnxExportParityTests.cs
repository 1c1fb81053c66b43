using TransferLearning.Backbones;
using TransferLearning.Backbones.Tfjs;
using TransferLearning.Backbones.TorchVision;
using TransferLearning.Core.Tests.Tfjs;
using TransferLearning.Datasets;
using TransferLearning.Heads;
using TransferLearning.Hub;
using Xunit.Abstractions;

namespace TransferLearning.Core.Tests.Export;

/// <summary>
/// The exported classifier on ONNX Runtime against <c>TrainedModel</c> on the committed flower photos, one backbone
/// family at a time: probabilities within 1e-4 absolute, same top-1, logits within 1e-4 relative.
/// </summary>
[Trait("Category", "Parity")]
[Trait("Category", "RealData")]
public sealed class OnnxExportParityTests(ITestOutputHelper output)
{
    private static readonly string TorchVisionFixture = RepoPaths.TestData("torchvision", "mobilenet_v2_w025_c10.pth");

    [Fact]
    public void ExportOnnx_ResNet18FromOnnx_MatchesOnnxRuntimeOnPhotos()
    {
        using var model = ExportTestSupport.Model(ModelHub.LoadBackbone("resnet18"));
        ExportTestSupport.AssertParity(model, ExportTestSupport.Photos(3), "resnet18", output);
    }

    [Fact]
    public void ExportOnnx_ResNet18MultiStage_MatchesOnnxRuntimeOnPhotos()
    {
        using var model = ExportTestSupport.Model(ModelHub.LoadBackbone("resnet18", new BackboneLoadOptions { Features = BackboneFeatures.MultiStage }));
        Assert.Equal(1536, model.Backbone.FeatureSize);
        ExportTestSupport.AssertParity(model, ExportTestSupport.Photos(3), "resnet18_multistage", output);
    }

    [Fact]
    public void ExportOnnx_ResNet18MirrorAveraged_MatchesOnnxRuntimeOnPhotos()
    {
        using var model = ExportTestSupport.Model(ModelHub.LoadBackbone("resnet18", new BackboneLoadOptions { MirrorAveraged = true }));
        ExportTestSupport.AssertParity(model, ExportTestSupport.Photos(3), "resnet18_mirror", output);
    }

    [Fact]
    public void ExportOnnx_ResNet18FineTuned_WritesTheChangedWeights()
    {
        using var model = ExportTestSupport.Model(ModelHub.LoadBackbone("resnet18"));
        var photos = ExportTestSupport.Photos(2);
        var before = model.Predict(photos).SelectMany(p => p.Probabilities).ToArray();
        model.Backbone.Unfreeze(); // trainable, as after fine-tuning: the BatchNorm fold is not cached
        ExportTestSupport.Perturb(model.Backbone.Module, seed: 11);
        var after = model.Predict(photos).SelectMany(p => p.Probabilities).ToArray();
        Assert.True(before.Zip(after, (a, b) => Math.Abs(a - b)).Max() > 1e-3, "the perturbation should change the predictions");
        ExportTestSupport.AssertParity(model, photos, "resnet18_finetuned", output);
    }

    [Fact]
    public void ExportOnnx_TorchVisionMobileNetV2_MatchesOnnxRuntimeOnPhotos()
    {
        var backbone = TorchVisionBackbones.Load(TorchVisionFixture, "mobilenet_v2_w025_c10.pth", "mobilenet_v2", null, numClasses: 10, widthMult: 0.25);
        using var model = ExportTestSupport.Model(backbone, headOptions: new HeadOptions { HiddenUnits = [32] });
        ExportTestSupport.Scale(model, 8);
        ExportTestSupport.AssertParity(model, ExportTestSupport.Photos(3), "torchvision_mobilenet_v2", output);
    }

    [Theory]
    [InlineData("resnet18")]
    [InlineData("mobilenet_v3_small")]
    [InlineData("efficientnet_b0")]
    public void ExportOnnx_TorchVisionFineTuned_MatchesOnnxRuntimeOnPhotos(string architecture)
    {
        // Random weights with non-trivial BatchNorm statistics, then changed as fine-tuning would, at 96×96 and center crop.
        var module = TorchVisionBackbones.Cut(TorchVisionBackbones.Create(architecture));
        ExportTestSupport.ReinitializeWeights(module, seed: 3);
        ExportTestSupport.RandomizeBatchNorm(module, seed: 5);
        var spec = InputSpec.ImageNet(96).WithResizeMode(ResizeMode.CenterCrop);
        var backbone = new Backbone(architecture + ".pth", module, Backbones.Onnx.OnnxBackboneLoader.FeatureSize(module, spec), spec);
        using var model = ExportTestSupport.Model(backbone);
        model.Backbone.Unfreeze();
        ExportTestSupport.Perturb(model.Backbone.Module, seed: 12);
        ExportTestSupport.Scale(model, 8); // random features are small: a sharper head makes the comparison stricter
        ExportTestSupport.AssertParity(model, ExportTestSupport.Photos(2), "torchvision_" + architecture + "_finetuned", output);
    }

    [Theory]
    [InlineData(HeadActivation.Relu)]
    [InlineData(HeadActivation.Gelu)]
    [InlineData(HeadActivation.Tanh)]
    [InlineData(HeadActivation.Silu)]
    public void ExportOnnx_TfjsModel_MatchesOnnxRuntimeOnPhotos(HeadActivation activation)
    {
        // bn_act (Conv2D, BatchNormalization, ReLU, LeakyReLU, Activation, Multiply, Add, pooling, Flatten, Concatenate)
        // at its fixed 6×7 input, with a spec that exercises every preprocessing step: BGR, range, mean/std, center crop.
        var spec = new InputSpec(6, 7, -1f, 1f, ChannelOrder.Bgr, [0.1f, -0.2f, 0.3f], [0.5f, 0.6f, 0.7f], ResizeMode.CenterCrop);
        var backbone = TfjsModel.Load(TfjsTestData.ModelJson("bn_act"), new TfjsLoadOptions { InputSpec = spec, Source = "bn_act/model.json" });
        using var model = ExportTestSupport.Model(backbone, headOptions: new HeadOptions { HiddenUnits = [16, 8], Activation = activation, Dropout = 0.2 });
        ExportTestSupport.Scale(model, 4);
        ExportTestSupport.AssertParity(model, ExportTestSupport.Photos(3), "tfjs_bn_act_" + activation, output);
    }

    [Fact]
    public void ExportOnnx_TfjsFineTuned_MatchesOnnxRuntimeOnPhotos()
    {
        var backbone = TfjsModel.Load(TfjsTestData.ModelJson("bn_act"), new TfjsLoadOptions { Source = "bn_act/model.json" });
        using var model = ExportTestSupport.Model(backbone);
        model.Backbone.Unfreeze();
        ExportTestSupport.Perturb(model.Backbone.Module, seed: 13);
        ExportTestSupport.Scale(model, 4);
        ExportTestSupport.AssertParity(model, ExportTestSupport.Photos(3), "tfjs_bn_act_finetuned", output);
    }
}
