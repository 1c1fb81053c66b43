using TransferLearning.Backbones;
using TransferLearning.Backbones.Onnx;
using TransferLearning.Backbones.TorchVision;
using TransferLearning.Core.Tests.TorchVision;
using TransferLearning.Datasets;
using TransferLearning.Hub;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace TransferLearning.Core.Tests.Int8;

/// <summary>
/// Int8 for every backbone family, on real photos (the sample's flowers): features within cosine 0.98 of float for each
/// image, in both activation ranges (7-bit, what CPUs without VNNI get, and the full 8 bits), whatever range this CPU
/// would pick.
/// </summary>
[Trait("Category", "RealData")]
public sealed class Int8FamilyTests(ITestOutputHelper output)
{
    /// <summary>A backbone of each family: real weights where the repository has them (TF.js, ONNX), else torchvision's formula weights.</summary>
    internal static Backbone Family(string family)
    {
        switch (family)
        {
            case "tfjs-mobilenetv2":
                return ModelHub.LoadBackbone(Path.Combine(Tfjs.TfjsTestData.TeachableMachineDir, "model.json"));
            case "onnx-resnet18":
                return ModelHub.LoadBackbone("resnet18");
            case "torchvision-mobilenet_v2":
                return TorchVisionBackbones.Load(RepoPaths.TestData("torchvision", "mobilenet_v2_w025_c10.pth"), "mobilenet_v2_w025_c10.pth", "mobilenet_v2", null, numClasses: 10, widthMult: 0.25);
            default:
                var architecture = family["torchvision-".Length..];
                var model = TorchVisionBackbones.Create(architecture);
                TorchVisionParityTests.FillFormula(model); // deterministic stand-ins for pretrained weights, as the parity fixtures use
                var module = TorchVisionBackbones.Cut(model);
                module.Architecture = (architecture, 1.0);
                var spec = InputSpec.ImageNet(224);
                return new Backbone(architecture, module, OnnxBackboneLoader.FeatureSize(module, spec.WithSize(64, 64)), spec);
        }
    }

    /// <summary>Every fourth shipped photo from <paramref name="offset"/> (spread over the five classes), prepared for <paramref name="spec"/>.</summary>
    internal static Tensor Photos(InputSpec spec, int offset, int count)
    {
        var samples = ImageFolder.Load(RepoPaths.SamplePhotos).Samples.Where((_, i) => i % 4 == offset).Take(count);
        return stack(samples.Select(s => ImageTensor.FromFile(s.Path, spec)).ToArray());
    }

    [Theory]
    [InlineData("tfjs-mobilenetv2", Int8Kernels.SevenBit)]
    [InlineData("tfjs-mobilenetv2", Int8Kernels.EightBit)]
    [InlineData("onnx-resnet18", Int8Kernels.SevenBit)]
    [InlineData("onnx-resnet18", Int8Kernels.EightBit)]
    [InlineData("torchvision-mobilenet_v2", Int8Kernels.SevenBit)]
    [InlineData("torchvision-mobilenet_v2", Int8Kernels.EightBit)]
    [InlineData("torchvision-mobilenet_v3_small", Int8Kernels.SevenBit)]
    [InlineData("torchvision-mobilenet_v3_small", Int8Kernels.EightBit)]
    [InlineData("torchvision-efficientnet_b0", Int8Kernels.SevenBit)]
    [InlineData("torchvision-efficientnet_b0", Int8Kernels.EightBit)]
    [InlineData("torchvision-resnet18", Int8Kernels.SevenBit)]
    [InlineData("torchvision-resnet18", Int8Kernels.EightBit)]
    public void QuantizeInt8_EachFamilyOnPhotos_FeaturesWithinCosine098OfFloat(string family, int levels)
    {
        using var range = Int8Kernels.Force(levels);
        using var backbone = Family(family);
        backbone.Freeze();
        backbone.SetTrainingMode(false);
        var spec = backbone.FixedInputSize || family.StartsWith("tfjs", StringComparison.Ordinal) ? backbone.InputSpec : backbone.InputSpec.WithSize(160, 160);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var photos = Photos(spec, offset: 0, count: 32);
        var reference = backbone.Forward(photos);

        backbone.QuantizeInt8([Photos(spec, offset: 1, count: 16), Photos(spec, offset: 2, count: 16)]);
        var int8 = backbone.Forward(photos);

        Assert.True(backbone.IsInt8);
        var graph = Assert.IsType<OnnxGraphModule>(backbone.Int8Module);
        Assert.InRange(graph.Int8ConvCount, 1, graph.ConvCount);
        var parameters = backbone.Int8Parameters!;
        Assert.Contains(parameters.Activations.Values, a => a.Levels == levels);
        Assert.All(parameters.Activations.Values, a => Assert.True(a.Levels <= levels));
        var cosine = nn.functional.cosine_similarity(int8, reference, 1);
        var (min, mean) = (cosine.min().item<float>(), cosine.mean().item<float>());
        output.WriteLine($"{family} {levels} levels: {graph.Int8ConvCount}/{graph.ConvCount} convolutions in int8 ({parameters.FloatConvs.Count} kept in float), cosine min {min:F4} mean {mean:F4}");
        Assert.True(min >= 0.98f, $"{family}: cosine similarity {min:F4} for the worst photo (mean {mean:F4})");
    }
}
