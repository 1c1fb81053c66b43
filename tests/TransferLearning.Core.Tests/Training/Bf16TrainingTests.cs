using TransferLearning.Backbones;
using TransferLearning.Backbones.Onnx;
using TransferLearning.Backbones.TorchVision;
using TransferLearning.Datasets;
using TransferLearning.Heads;
using TransferLearning.Training;
using static TorchSharp.torch;

namespace TransferLearning.Core.Tests.Training;

/// <summary>
/// Fine-tuning in bf16 (<see cref="TrainingOptions.Bf16Backbone"/> on a backbone that trains): the backbone computes in
/// bf16 while the optimizer updates float masters. These run the trainer directly, so they run on any CPU (bf16 is
/// emulated, slowly, where the CPU has no bf16 kernels: small images).
/// </summary>
public sealed class Bf16TrainingTests
{
    private const int Classes = 3;

    [Theory]
    [InlineData(null)]      // Unfreeze(): every block trains
    [InlineData("layer4")]  // the stem and layers 1-3 stay frozen
    public void Fit_Bf16OnTrainingTorchVisionBackbone_StepsLikeFloatAndLeavesFloatWeights(string? fromBlock)
    {
        using var scope = NewDisposeScope();
        using var floatRun = ResNet18();
        using var bf16Run = ResNet18();
        CopyWeights(floatRun, bf16Run);
        var before = State(floatRun);
        using var generator = new Generator(5, CPU);
        var images = rand([4, 3, 64, 64], generator: generator);
        var labels = tensor(new long[] { 0, 1, 2, 1 });

        var floatAfter = Train(floatRun, fromBlock, bf16: false, images, labels);
        var bf16After = Train(bf16Run, fromBlock, bf16: true, images, labels);

        Assert.All(bf16Run.Module.parameters(), p => Assert.Equal(ScalarType.Float32, p.dtype));
        Assert.All(bf16Run.Module.named_buffers().Where(b => b.buffer.is_floating_point()), b => Assert.Equal(ScalarType.Float32, b.buffer.dtype));
        var trained = bf16Run.Module.named_parameters().Where(p => p.parameter.requires_grad).Select(p => p.name).ToHashSet();
        Assert.NotEmpty(trained);
        foreach (var (name, value) in bf16After)
        {
            if (trained.Contains(name))
            {
                continue;
            }

            // Frozen weights and BatchNorm statistics (inference mode) come back exactly, not rounded to bf16.
            Assert.True(value.eq(before[name]).all().item<bool>(), $"{name} changed");
        }

        using var floatDelta = cat(trained.Select(n => (floatAfter[n] - before[n]).flatten()).ToArray());
        using var bf16Delta = cat(trained.Select(n => (bf16After[n] - before[n]).flatten()).ToArray());
        Assert.True(floatDelta.norm().item<float>() > 0, "the float run did not train");
        var cosine = nn.functional.cosine_similarity(floatDelta.unsqueeze(0), bf16Delta.unsqueeze(0)).item<float>();
        Assert.True(cosine >= 0.98f, $"update direction: cosine {cosine:F4} between the bf16 and float steps");
        var relative = ((bf16Delta - floatDelta).norm() / floatDelta.norm()).item<float>();
        Assert.True(relative is > 1e-4f and < 0.25f, $"bf16 update differs from float by {relative} (really computed in bf16, still close)");
    }

    [Fact]
    public void Bf16Training_BackwardStepAndDispose_GradientsInFloatMastersRoundedIntoTheModuleFloatAgainAfter()
    {
        using var scope = NewDisposeScope();
        using var backbone = ResNet18();
        backbone.Unfreeze("layer4");
        var frozenBefore = backbone.Module.named_parameters().Where(p => !p.parameter.requires_grad).ToDictionary(p => p.name, p => p.parameter.detach().clone());
        using var generator = new Generator(9, CPU);
        var images = rand([2, 3, 64, 64], generator: generator);

        var mixed = new Bf16Training(backbone);
        var pairs = backbone.Module.named_parameters().Where(p => p.parameter.requires_grad).Select(p => (p.name, Module: p.parameter, Master: mixed.MasterOf(p.parameter))).ToList();
        Assert.All(backbone.Module.parameters(), p => Assert.Equal(ScalarType.BFloat16, p.dtype));
        Assert.All(pairs, p => Assert.NotSame(p.Module, p.Master));
        Assert.All(pairs, p => Assert.Equal(ScalarType.Float32, p.Master.dtype));

        for (var slice = 0; slice < 2; slice++)
        {
            var features = mixed.Forward(images);
            Assert.Equal(ScalarType.Float32, features.dtype);
            features.square().sum().backward();
            mixed.AccumulateGradients();
        }

        Assert.All(pairs, p => Assert.Null(p.Module.grad));
        Assert.All(pairs, p => Assert.Equal(ScalarType.Float32, p.Master.grad!.dtype));
        using (var sgd = optim.SGD(pairs.Select(p => p.Master), 0.01))
        {
            sgd.step();
        }

        mixed.CopyMastersToModule();
        Assert.All(pairs, p => Assert.True(p.Module.eq(p.Master.to(ScalarType.BFloat16)).all().item<bool>(), $"{p.name}: module is not the master rounded"));
        var masters = pairs.ToDictionary(p => p.name, p => p.Master.detach().clone());

        mixed.Dispose();

        foreach (var (name, p) in backbone.Module.named_parameters())
        {
            Assert.Equal(ScalarType.Float32, p.dtype);
            var expected = masters.TryGetValue(name, out var m) ? m : frozenBefore[name];
            Assert.True(p.eq(expected).all().item<bool>(), $"{name}: not the float master or the frozen weight");
        }
    }

    [Theory]
    [Trait("Category", "RealData")]
    [InlineData("tfjs-mobilenetv2")]
    [InlineData("onnx-resnet18")]
    [InlineData("torchvision-mobilenet_v2")]
    public void Bf16Training_EachFamilyOnPhotos_FeaturesCloseToFloatAndTheSameNetworkAfter(string family)
    {
        using var backbone = Int8.Int8FamilyTests.Family(family);
        backbone.Unfreeze();
        backbone.SetTrainingMode(false);
        var spec = backbone.FixedInputSize ? backbone.InputSpec : backbone.InputSpec.WithSize(96, 96);
        using var scope = NewDisposeScope();
        var photos = Int8.Int8FamilyTests.Photos(spec, offset: 1, count: 2);
        Tensor reference;
        using (no_grad())
        {
            reference = backbone.Forward(photos);
        }

        var before = State(backbone);
        var mixed = new Bf16Training(backbone);
        var features = mixed.Forward(photos);
        features.square().sum().backward();
        mixed.AccumulateGradients();
        var gradients = backbone.Module.parameters().Count(p => mixed.MasterOf(p).grad is not null);
        mixed.Dispose();
        Tensor again;
        using (no_grad())
        {
            again = backbone.Forward(photos);
        }

        Assert.True(Bf16Training.Supports(backbone));
        Assert.Equal(backbone.Module.parameters().Count(), gradients);
        var cosine = nn.functional.cosine_similarity(features.detach(), reference, 1).min().item<float>();
        Assert.True(cosine >= 0.95f, $"{family}: bf16 features at cosine {cosine:F4} to float");
        var rounded = ((features.detach() - reference).norm() / reference.norm()).item<float>();
        Assert.True(rounded > 1e-4f, $"{family}: bf16 features differ from float by only {rounded}: not computed in bf16");
        Assert.All(backbone.Module.state_dict(), kv => Assert.True(kv.Value.eq(before[kv.Key]).all().item<bool>(), $"{family}: {kv.Key} changed"));
        Assert.True(again.eq(reference).all().item<bool>(), $"{family}: float features changed after the bf16 pass");
    }

    [Fact]
    public void FloatStateDict_SnapshotThenStepThenLoad_RestoresTheFloatWeightsExactly()
    {
        using var scope = NewDisposeScope();
        using var backbone = ResNet18();
        backbone.Unfreeze("layer4");
        using var generator = new Generator(10, CPU);
        var images = rand([2, 3, 64, 64], generator: generator);
        var mixed = new Bf16Training(backbone);
        var snapshot = mixed.FloatStateDict(); // what early stopping keeps of the best epoch
        var trained = backbone.Module.named_parameters().Where(p => p.parameter.requires_grad).Select(p => (p.name, Master: mixed.MasterOf(p.parameter))).ToList();

        mixed.Forward(images).square().sum().backward();
        mixed.AccumulateGradients();
        using (var sgd = optim.SGD(trained.Select(p => p.Master), 0.01))
        {
            sgd.step();
        }

        mixed.CopyMastersToModule();
        Assert.Contains(trained, p => !p.Master.eq(snapshot[p.name]).all().item<bool>()); // the step moved the masters
        mixed.LoadFloatStateDict(snapshot); // what early stopping's restore does
        mixed.Dispose();

        Assert.All(snapshot.Values.Where(v => v.is_floating_point()), v => Assert.Equal(ScalarType.Float32, v.dtype));
        foreach (var (name, value) in backbone.Module.state_dict())
        {
            Assert.True(value.eq(snapshot[name]).all().item<bool>(), $"{name}: not the snapshot's float value after the restore");
        }
    }

    [Fact]
    public void Bf16Training_OnnxGraphWithAMeanImageConstant_ComputesInBf16AndComesBackExactly()
    {
        var model = Int8.Int8LoweringTests.MeanImageModel();
        var mean = model.Graph.Node.Single(n => n.OpType == "Sub").Input[1];
        using var backbone = new Backbone("test:mean-image", new OnnxGraphModule(model, "mean-image.onnx", constantInitializers: new HashSet<string> { mean }) { FlattenOutput = true }, 8, new InputSpec(16, 16, 0f, 255f));
        backbone.Unfreeze();
        backbone.SetTrainingMode(false);
        using var scope = NewDisposeScope();
        using var generator = new Generator(4, CPU);
        var images = rand([4, 3, 16, 16], generator: generator) * 255;
        Tensor reference;
        using (no_grad())
        {
            reference = backbone.Forward(images);
        }

        var mixed = new Bf16Training(backbone);
        var features = mixed.Forward(images);
        features.square().sum().backward();
        mixed.AccumulateGradients();
        var gradients = backbone.Module.parameters().Select(p => mixed.MasterOf(p).grad!.dtype).ToList();
        mixed.Dispose();
        Tensor again;
        using (no_grad())
        {
            again = backbone.Forward(images);
        }

        Assert.True(Bf16Training.Supports(backbone));
        Assert.Equal(6, gradients.Count); // two convolutions and two BatchNorm scales and shifts
        Assert.All(gradients, g => Assert.Equal(ScalarType.Float32, g));
        var cosine = nn.functional.cosine_similarity(features.detach(), reference, 1).min().item<float>();
        Assert.True(cosine >= 0.99f, $"bf16 features: cosine {cosine:F4} to float");
        var rounded = ((features.detach() - reference).norm() / reference.norm()).item<float>();
        Assert.True(rounded > 1e-4f, $"bf16 features differ from float by only {rounded}: not computed in bf16");
        Assert.True(again.eq(reference).all().item<bool>(), "after the bf16 run the float graph (weights, mean image) is not as before");
    }

    [Fact]
    public void Fit_Bf16OnTrainingBackboneWrappedByHand_SaysToTrainItInFloat()
    {
        var images = new Datasets.ImageDataset(["a", "b"], [new Datasets.ImageSample("a.jpg", 0), new Datasets.ImageSample("b.jpg", 1)]);
        var data = new Datasets.DatasetSplit(images, images);
        using var learner = TransferLearner.From(TestBackbones.Tiny()).Unfreeze().AddHead(data.Classes).WithBf16Backbone();

        var e = Assert.Throws<NotSupportedException>(() => learner.Fit(data, 1));

        Assert.Equal(
            "Bf16Backbone trains a backbone in bf16 when it was loaded from ONNX, a torchvision checkpoint or a TF.js layers model; 'test:tiny' is a Sequential wrapped by hand. " +
            "Remove WithBf16Backbone() to train it in float.",
            e.Message);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void BackbonePhase_Bf16Backbone_KeptForTheTrainedBackbone(bool bf16)
    {
        var learner = new TrainingOptions { Bf16Backbone = bf16 };

        var phase = FineTuneRecipe.BackbonePhase(learner, new HashSet<string>());

        Assert.Equal(bf16, phase.Bf16Backbone);
    }

    [Fact]
    public void Supports_LoadedFamiliesAndAModuleWrappedByHand_NotTheWrappedOne()
    {
        using var torchVision = ResNet18();
        using var onnx = Int8.Int8LoweringTests.MobileNetLike();
        using var wrapped = TestBackbones.Tiny();

        Assert.True(Bf16Training.Supports(torchVision));
        Assert.True(Bf16Training.Supports(onnx));
        Assert.False(Bf16Training.Supports(wrapped));
    }

    /// <summary>A torchvision ResNet18 with weights drawn from a generator of its own (He initialisation), not the global one that parallel tests share.</summary>
    private static Backbone ResNet18()
    {
        var backbone = TorchVisionBackbones.CreateBackbone("resnet18");
        using var generator = new Generator(17, CPU);
        using var noGrad = no_grad();
        foreach (var p in backbone.Module.parameters().Where(p => p.dim() >= 2))
        {
            var fanIn = p.numel() / p.shape[0];
            using var drawn = randn(p.shape, generator: generator) * Math.Sqrt(2.0 / fanIn);
            p.copy_(drawn);
        }

        return backbone;
    }

    private static void CopyWeights(Backbone from, Backbone to)
    {
        using var noGrad = no_grad();
        var source = from.Module.state_dict();
        foreach (var (name, value) in to.Module.state_dict())
        {
            value.copy_(source[name]);
        }
    }

    private static Dictionary<string, Tensor> State(Backbone backbone) =>
        backbone.Module.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone());

    /// <summary>One SGD step (a batch of 4 in slices of 2) on the images; the backbone's state afterwards.</summary>
    private static Dictionary<string, Tensor> Train(Backbone backbone, string? fromBlock, bool bf16, Tensor images, Tensor labels)
    {
        if (fromBlock is null)
        {
            backbone.Unfreeze();
        }
        else
        {
            backbone.Unfreeze(fromBlock);
        }

        using var head = HeadFactory.Create(backbone.FeatureSize, Classes, new HeadOptions(), seed: 3);
        var options = new TrainingOptions { BatchSize = 4, Optimizer = OptimizerKind.Sgd, LearningRate = 0.05, Bf16Backbone = bf16, TrainingSliceSize = 2 };
        using var source = new TensorBatchSource(images.clone(), labels.clone(), options.BatchSize, shuffle: false, options.Seed);
        new Trainer(backbone, head, CPU, options, null).Fit(source, null, inputsAreFeatures: false, epochs: 1, new History(), null, CancellationToken.None);
        return State(backbone);
    }
}
