using Google.Protobuf;
using DenseTensor = Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float>;
using Onnx;
using TransferLearning.Backbones;
using TransferLearning.Backbones.Onnx;
using TransferLearning.Backbones.Onnx.Export;
using TransferLearning.Backbones.Tfjs;
using TransferLearning.Backbones.TorchVision;
using TransferLearning.Core.Tests.Onnx;
using TransferLearning.Core.Tests.Tfjs;
using TransferLearning.Datasets;
using TransferLearning.Hub;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace TransferLearning.Core.Tests.Export;

/// <summary>
/// Standalone backbone exports (input = the prepared batch, output = features) against the backbone itself, on ONNX
/// Runtime and re-imported as an <see cref="OnnxGraphModule"/> (the int8 path imports them that way).
/// </summary>
[Trait("Category", "Parity")]
public sealed class OnnxBackboneExportTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData("resnet18")]
    [InlineData("resnet50")]
    [InlineData("mobilenet_v2")]
    [InlineData("mobilenet_v3_small")]
    [InlineData("mobilenet_v3_large")]
    [InlineData("efficientnet_b0")]
    public void ToModel_TorchVisionArchitecture_MatchesOnnxRuntimeAndReimports(string architecture)
    {
        var module = TorchVisionBackbones.Cut(TorchVisionBackbones.Create(architecture));
        ExportTestSupport.RandomizeBatchNorm(module, seed: 21);
        var spec = InputSpec.ImageNet(64);
        using var backbone = new Backbone(architecture + ".pth", module, OnnxBackboneLoader.FeatureSize(module, spec), spec);
        AssertBackboneExport(backbone, "backbone_" + architecture, Images(2, spec, seed: 4));
    }

    [Fact]
    public void ToModel_ResNet18FromOnnx_MatchesOnnxRuntimeAndReimports()
    {
        using var backbone = ModelHub.LoadBackbone("resnet18");
        var spec = backbone.InputSpec;
        using var images = rand(2, 3, spec.Height, spec.Width).mul_(255);
        AssertBackboneExport(backbone, "backbone_resnet18", images);
    }

    [Fact]
    public void ToModel_TfjsBackbone_MatchesOnnxRuntimeAndReimports()
    {
        using var backbone = TfjsModel.Load(TfjsTestData.ModelJson("bn_act"));
        AssertBackboneExport(backbone, "backbone_tfjs_bn_act", Images(3, backbone.InputSpec, seed: 5));
    }

    /// <summary>Every TF.js fixture network (its whole graph, head included) written with the builder, run by ONNX Runtime.</summary>
    [Theory]
    [InlineData("conv_same_odd")]
    [InlineData("conv_same_even")]
    [InlineData("depthwise")]
    [InlineData("bn_act")]
    [InlineData("merge_reshape")]
    [InlineData("nested")]
    [InlineData("reused_layers")]
    [InlineData("views")]
    [InlineData("seq_flatten_old")]
    [InlineData("quantized_uint8")]
    public void Export_TfjsFixtureNetwork_MatchesOnnxRuntime(string name)
    {
        var meta = TfjsTestData.Meta(name);
        var nhwc = TfjsTestData.Shape(meta, "inputShape");
        using var network = TfjsModel.LoadNetwork(TfjsTestData.ModelJson(name));
        network.eval();
        using var noGrad = no_grad();
        using var x = TfjsTestData.NchwFromNhwc(TfjsTestData.ReadFloats(Path.Combine(TfjsTestData.FixtureDir(name), "input.bin")), nhwc);
        using var expected = network.forward(x);

        var builder = new OnnxGraphBuilder(name);
        var input = builder.AddInput("input", [-1, nhwc[3], nhwc[1], nhwc[2]]);
        var y = network.Export(builder, input);
        builder.AddOutput(y, "output", [-1, .. expected.shape[1..]]);
        var bytes = builder.ToModel("test", "0", name, []).ToByteArray();
        ExportTestSupport.Keep(bytes, "tfjs_fixture_" + name);

        var ort = ExportTestSupport.Run(bytes, "input", new DenseTensor(x.data<float>().ToArray(), x.shape.Select(d => (int)d).ToArray()))["output"];
        Report(name + " ONNX Runtime", expected.data<float>().ToArray(), ort);
        using var reimported = new OnnxGraphModule(ModelProto.Parser.ParseFrom(bytes), name);
        reimported.eval();
        using var again = reimported.forward(x);
        Report(name + " re-imported", expected.data<float>().ToArray(), again.data<float>().ToArray());
    }

    private void AssertBackboneExport(Backbone backbone, string name, Tensor images)
    {
        using var noGrad = no_grad();
        backbone.SetTrainingMode(false);
        // The module on NCHW input (Backbone.Forward makes it channels-last, on which LibTorch 2.10 crashes with a
        // division by zero in ResNet50's bottleneck convolutions at 64×64 on this AMD EPYC).
        using var expected = backbone.Module.forward(images);
        var bytes = OnnxBackboneExport.ToModel(backbone).ToByteArray();
        ExportTestSupport.Keep(bytes, name);

        var model = ModelProto.Parser.ParseFrom(bytes);
        Assert.Equal(OnnxGraphBuilder.Opset, model.OpsetImport.Single().Version);
        Assert.All(model.Graph.Node, n => Assert.Contains(n.OpType, OnnxGraphModule.SupportedOperators));
        var ort = ExportTestSupport.Run(bytes, OnnxBackboneExport.InputName, new DenseTensor(images.contiguous().data<float>().ToArray(), images.shape.Select(d => (int)d).ToArray()));
        Report(name + " ONNX Runtime", expected.data<float>().ToArray(), ort[OnnxBackboneExport.OutputName]);

        using var reimported = new OnnxGraphModule(model, name) { FlattenOutput = true };
        reimported.eval();
        using var again = reimported.forward(images);
        Report(name + " re-imported", expected.data<float>().ToArray(), again.data<float>().ToArray());
    }

    private void Report(string what, float[] expected, float[] actual)
    {
        var maxDiff = expected.Zip(actual, (e, a) => Math.Abs(e - a)).DefaultIfEmpty().Max();
        output.WriteLine($"{what}: max |diff| {maxDiff:G3}, max |ref| {expected.Select(Math.Abs).DefaultIfEmpty().Max():G4}");
        OrtReference.AssertClose(expected, actual, 1e-4, what);
    }

    private static Tensor Images(int n, InputSpec spec, int seed)
    {
        using var generator = new Generator((ulong)seed, CPU);
        return randn([n, 3, spec.Height, spec.Width], generator: generator);
    }
}
