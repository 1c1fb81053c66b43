using System.Text.Json;
using TorchSharp;
using TorchSharp.PyBridge;
using TransferLearning.Backbones.TorchVision;
using TransferLearning.Core.Tests.Onnx;
using TransferLearning.Hub;
using Xunit.Abstractions;

namespace TransferLearning.Core.Tests.TorchVision;

/// <summary>Features of torchvision backbones against PyTorch 1.13 / torchvision 0.14 (fixtures from tools/fixtures/make_torchvision_fixtures.py).</summary>
public class TorchVisionParityTests(ITestOutputHelper output)
{
    private static readonly string FixtureDir = Path.Combine(AppContext.BaseDirectory, "TestData", "torchvision");

    /// <summary>Logs the largest absolute difference (visible with <c>--logger "console;verbosity=detailed"</c>), then asserts.</summary>
    private void AssertClose(float[] expected, float[] actual, string what)
    {
        var maxDiff = expected.Zip(actual, (e, a) => Math.Abs(e - a)).DefaultIfEmpty().Max();
        var maxRef = expected.Select(Math.Abs).DefaultIfEmpty().Max();
        output.WriteLine($"{what}: max |diff| {maxDiff:G3}, max |ref| {maxRef:G4}, relative {maxDiff / Math.Max(maxRef, 1e-3):G3}");
        OrtReference.AssertClose(expected, actual, 1e-4, what);
    }

    private static (long[] InputShape, float[] Expected) Reference(string file)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(FixtureDir, file)));
        var shape = doc.RootElement.GetProperty("input_shape").EnumerateArray().Select(e => e.GetInt64()).ToArray();
        var output = doc.RootElement.GetProperty("output").EnumerateArray().Select(e => e.GetSingle()).ToArray();
        return (shape, output);
    }

    private static torch.Tensor FormulaInput(long[] shape)
    {
        var n = (int)shape.Aggregate(1L, (a, b) => a * b);
        return torch.tensor(Enumerable.Range(0, n).Select(i => (float)Math.Sin(0.1 * i)).ToArray(), shape);
    }

    /// <summary>Fills every state-dict tensor with the same closed formula the fixture script uses.</summary>
    internal static void FillFormula(torch.nn.Module model)
    {
        using var noGrad = torch.no_grad();
        var sd = model.state_dict();
        var names = sd.Keys.Where(k => !k.EndsWith("num_batches_tracked", StringComparison.Ordinal)).Order(StringComparer.Ordinal).ToList();
        for (var k = 0; k < names.Count; k++)
        {
            var t = sd[names[k]];
            var n = (int)t.numel();
            var values = new float[n];
            var fanIn = t.dim() > 1 ? t.shape[1..].Aggregate(1L, (a, b) => a * b) : 1;
            for (var i = 0; i < n; i++)
            {
                var s = Math.Sin((0.37 * i) + (1.3 * k));
                values[i] = (float)(names[k].EndsWith("running_var", StringComparison.Ordinal) ? 1.0 + (0.5 * s)
                    : t.dim() > 1 ? s / Math.Sqrt(fanIn)
                    : names[k].EndsWith("weight", StringComparison.Ordinal) ? 1.0 + (0.2 * s)
                    : 0.1 * s);
            }

            using var src = torch.tensor(values, t.shape);
            t.copy_(src);
        }
    }

    [Theory]
    [Trait("Category", "Parity")]
    [InlineData("resnet18", 512)]
    [InlineData("mobilenet_v2", 1280)]
    [InlineData("mobilenet_v3_small", 576)]
    [InlineData("mobilenet_v3_large", 960)]
    [InlineData("efficientnet_b0", 1280)]
    public void Forward_FormulaWeights_MatchesPyTorch(string arch, int features)
    {
        var (shape, expected) = Reference($"formula_{arch}.json");
        var model = TorchVisionBackbones.Create(arch);
        FillFormula(model); // on the full classifier, so state-dict names and order match torchvision's
        using var module = TorchVisionBackbones.Cut(model);
        module.eval();
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var y = module.forward(FormulaInput(shape));
        Assert.Equal(new long[] { shape[0], features }, y.shape);
        AssertClose(expected, y.data<float>().ToArray(), arch);
    }

    [Theory]
    [Trait("Category", "Parity")]
    [InlineData("mobilenet_v2_w025_c10.pth")]
    [InlineData("mobilenet_v2_w025_c10.safetensors")]
    public void Load_PyTorchStateDictFile_MatchesPyTorchFeatures(string file)
    {
        var (shape, expected) = Reference("mobilenet_v2_w025_c10.json");
        using var backbone = TorchVisionBackbones.Load(Path.Combine(FixtureDir, file), file, "mobilenet_v2", null, numClasses: 10, widthMult: 0.25);
        backbone.SetTrainingMode(false);
        Assert.Equal(1280, backbone.FeatureSize);
        Assert.Equal(Datasets.InputSpec.ImageNet(224), backbone.InputSpec);
        Assert.Equal("features_0", backbone.Blocks[0]);
        Assert.Equal("features_18", backbone.Blocks[^1]);
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var y = backbone.Forward(FormulaInput(shape));
        AssertClose(expected, y.data<float>().ToArray(), file);
    }

    [Theory]
    [InlineData("mobilenet_v3_small")]
    [InlineData("mobilenet_v3_large")]
    [InlineData("efficientnet_b0")]
    [InlineData("resnet18")]
    [InlineData("resnet50")]
    [InlineData("mobilenet_v2")]
    public void Create_OwnArchitectures_HaveTorchVisionStateDictNamesAndShapes(string arch)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(FixtureDir, "state_dict_names.json")));
        var expected = doc.RootElement.GetProperty(arch).EnumerateArray()
            .Select(e => $"{e[0].GetString()} [{string.Join(",", e[1].EnumerateArray().Select(d => d.GetInt64()))}] {e[2].GetString()}")
            .ToList();
        using var model = TorchVisionBackbones.Create(arch);
        var actual = model.state_dict()
            .Select(kv => $"{kv.Key} [{string.Join(",", kv.Value.shape)}] {(kv.Value.dtype == torch.ScalarType.Int64 ? "int64" : kv.Value.dtype == torch.ScalarType.Float32 ? "float32" : kv.Value.dtype.ToString())}")
            .ToList();
        Assert.Equal(expected.Order(StringComparer.Ordinal), actual.Order(StringComparer.Ordinal));
    }

    [Fact]
    [Trait("Category", "Parity")]
    public void Forward_MobileNetV3SqueezeActivationsAboveSix_MatchesPyTorch()
    {
        // torchvision's MobileNetV3 squeeze-excitation uses ReLU; TorchSharp's uses ReLU6, which clips here.
        var (shape, expected) = Reference("formula_se8_mobilenet_v3_small.json");
        var model = TorchVisionBackbones.Create("mobilenet_v3_small");
        FillFormula(model);
        using (torch.no_grad())
        {
            foreach (var (name, p) in model.named_parameters().Where(p => p.name.EndsWith("fc1.bias", StringComparison.Ordinal)))
            {
                p.add_(8.0f);
            }
        }

        using var module = TorchVisionBackbones.Cut(model);
        module.eval();
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        AssertClose(expected, module.forward(FormulaInput(shape)).data<float>().ToArray(), "mobilenet_v3_small, SE fc1 bias + 8");
    }

    [Fact]
    [Trait("Category", "Parity")]
    public void Cut_TorchSharpMobileNetV3WithAvgpoolRegisteredFirst_PoolsOnlyAfterFeatures()
    {
        // TorchSharp's own MobileNetV3 registers avgpool before features; the cut once ran it first (max |diff| 0.013 vs PyTorch).
        var (shape, expected) = Reference("formula_mobilenet_v3_small.json");
        var model = torchvision.models.mobilenet_v3_small();
        Assert.Equal("avgpool", model.named_children().First().name);
        FillFormula(model);
        using var module = TorchVisionBackbones.Cut(model);
        module.eval();
        Assert.Equal(Enumerable.Range(0, 13).Select(i => $"features_{i}"), module.named_children().Select(c => c.name));
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        AssertClose(expected, module.forward(FormulaInput(shape)).data<float>().ToArray(), "TorchSharp mobilenet_v3_small");
    }

    [Fact]
    [Trait("Category", "Parity")]
    public void LoadBackbone_EfficientNetB0FileName_InfersArchitectureAndMatchesPyTorch()
    {
        // The formula-filled network is written as a PyTorch state-dict file under torchvision's published name; the names
        // themselves are pinned against torchvision by Create_OwnArchitectures_HaveTorchVisionStateDictNamesAndShapes.
        var (shape, expected) = Reference("formula_efficientnet_b0.json");
        var dir = Directory.CreateTempSubdirectory("tl-tv-");
        try
        {
            var path = Path.Combine(dir.FullName, "efficientnet_b0_rwightman-7f5810bc.pth");
            using (var model = TorchVisionBackbones.Create("efficientnet_b0"))
            {
                FillFormula(model);
                model.save_py(path);
            }

            using var backbone = ModelHub.LoadBackbone(path);
            backbone.SetTrainingMode(false);
            Assert.Equal(1280, backbone.FeatureSize);
            Assert.Equal(Datasets.InputSpec.ImageNet(224), backbone.InputSpec);
            Assert.Equal(Enumerable.Range(0, 9).Select(i => $"features_{i}"), backbone.Blocks);
            using var scope = torch.NewDisposeScope();
            using var noGrad = torch.no_grad();
            var y = backbone.Forward(FormulaInput(shape));
            AssertClose(expected, y.data<float>().ToArray(), path);
        }
        finally
        {
            dir.Delete(true);
        }
    }

    [Fact]
    public void LoadBackbone_TorchSaveWithSharedStorageViews_ExplainsHowToResave()
    {
        // A real torch.save of efficientnet_b0 whose tensors are strided views of a few shared storages: TorchSharp.PyBridge
        // 1.4.4 reads only contiguous, unshared tensors, so the loader must say how to re-save the file.
        var path = Path.Combine(FixtureDir, "efficientnet_b0_views.pth");
        var ex = Assert.Throws<InvalidDataException>(() => ModelHub.LoadBackbone(path, new BackboneLoadOptions { Architecture = "efficientnet_b0" }));
        Assert.Contains("{k: v.contiguous().clone() for k, v in state_dict.items()}", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Forward_EfficientNetB0Features_StochasticDepthRandomOnlyInTraining()
    {
        // The cut network has no dropout, and BatchNorm is deterministic in both modes: randomness can only be stochastic depth.
        using var module = TorchVisionBackbones.Cut(TorchVisionBackbones.Create("efficientnet_b0"));
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var x = FormulaInput([4, 3, 32, 32]);
        module.eval();
        Assert.True(module.forward(x).eq(module.forward(x)).all().item<bool>(), "eval forward must be deterministic");
        module.train();
        var outputs = Enumerable.Range(0, 3).Select(_ => module.forward(x)).ToList();
        Assert.Equal(new long[] { 4, 1280 }, outputs[0].shape);
        Assert.Contains(outputs.Skip(1), o => !o.allclose(outputs[0]));
    }

    [Theory]
    [InlineData("efficientnet_b0_rwightman-7f5810bc.pth", "efficientnet_b0")]
    [InlineData("efficientnet_b0_rwightman-3dd342df.pth", "efficientnet_b0")]
    [InlineData("efficientnet_b1_rwightman-bac287d4.pth", null)]
    [InlineData("resnet18-f37072fd.pth", "resnet18")]
    [InlineData("https://example.invalid/models/resnet50-0676ba61.pth", "resnet50")]
    [InlineData("mobilenet_v2-b0353104.pth", "mobilenet_v2")]
    [InlineData("mobilenet_v3_small-047dcff4.pth", "mobilenet_v3_small")]
    [InlineData("mobilenet_v3_large-8738ca79.safetensors", "mobilenet_v3_large")]
    [InlineData("resnet101.pt", "resnet101")]
    [InlineData("resnet1.pth", null)]
    [InlineData("weights.pth", null)]
    public void InferArchitecture_FileName_FindsArchitecture(string name, string? expected) =>
        Assert.Equal(expected, TorchVisionBackbones.InferArchitecture(name));

    [Fact]
    public void LoadBackbone_StateDictWithUnknownName_AsksForArchitecture()
    {
        var dir = Directory.CreateTempSubdirectory("tl-tv-");
        try
        {
            var path = Path.Combine(dir.FullName, "weights.pth");
            File.Copy(Path.Combine(FixtureDir, "mobilenet_v2_w025_c10.pth"), path);
            var ex = Assert.Throws<ArgumentException>(() => ModelHub.LoadBackbone(path));
            Assert.Contains("set BackboneLoadOptions.Architecture", ex.Message, StringComparison.Ordinal);
        }
        finally
        {
            dir.Delete(true);
        }
    }

    [Fact]
    public void LoadBackbone_WrongArchitecture_FailsWithInvalidData()
    {
        var path = Path.Combine(FixtureDir, "mobilenet_v2_w025_c10.pth");
        var ex = Assert.Throws<InvalidDataException>(() => ModelHub.LoadBackbone(path, new BackboneLoadOptions { Architecture = "resnet18" }));
        Assert.StartsWith("Could not load 'mobilenet_v2_w025_c10.pth' as a torchvision resnet18 state dict", ex.Message, StringComparison.Ordinal);
    }
}
