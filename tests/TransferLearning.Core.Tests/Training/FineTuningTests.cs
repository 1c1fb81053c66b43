using TransferLearning.Datasets;
using TransferLearning.Heads;
using TransferLearning.Models;
using TransferLearning.Training;
using static TorchSharp.torch;

namespace TransferLearning.Core.Tests.Training;

/// <summary>Augmentation, cached views, discriminative rates, schedules, label smoothing, test-time augmentation, the recipe.</summary>
public sealed class FineTuningTests : IClassFixture<GeneratedImages>
{
    private readonly DatasetSplit _data;

    public FineTuningTests(GeneratedImages images) => _data = ImageFolder.Load(images.Root).Split(0.7, seed: 42);

    private static TransferLearner Tiny(out CountingModule counter) => TestBackbones.TinyLearner(out counter);

    private static Augmentation Crops(int views = 0) =>
        new() { HorizontalFlip = true, RandomResizedCrop = true, CropScaleMin = 0.5, Brightness = 0.2, CachedViews = views };

    [Fact]
    public void Fit_FrozenWithCachedViews_BackboneRunsOncePerViewAndImage()
    {
        var (model, history) = Tiny(out var counter).Freeze().AddHead(_data.Classes).WithAugmentation(Crops(views: 3)).Fit(_data, epochs: 7);
        using (model)
        {
            Assert.Equal((3 * _data.Train.Count) + _data.Validation.Count, counter.Images);
            Assert.Equal(7, history.Count);
        }
    }

    [Fact]
    public void Fit_WithAugmentation_EvaluationAndPredictionSeePlainImages()
    {
        var (model, _) = Tiny(out _).Unfreeze().AddHead(_data.Classes).WithAugmentation(Crops()).Fit(_data, epochs: 2);
        using (model)
        {
            var evaluation = model.Evaluate(_data.Validation);
            var first = model.Predict(_data.Validation.Samples.Select(s => s.Path));
            var second = model.Predict(_data.Validation.Samples.Select(s => s.Path));
            Assert.Equal(first.Select(p => p.Probabilities.ToArray()), second.Select(p => p.Probabilities.ToArray()));
            Assert.Equal(evaluation.Loss, model.Evaluate(_data.Validation).Loss);
        }
    }

    [Fact]
    public void FitResult_WithAugmentation_ValidationEvaluationEqualsEvaluate()
    {
        var result = Tiny(out _).Unfreeze().AddHead(_data.Classes).WithAugmentation(Crops()).Fit(_data, epochs: 2);
        using (result.Model)
        {
            var evaluation = result.Model.Evaluate(_data.Validation);
            Assert.Equal(evaluation.Accuracy, result.ValidationEvaluation!.Accuracy);
            Assert.Equal(evaluation.Loss, result.ValidationEvaluation.Loss, 5);
        }
    }

    [Fact]
    public void Fit_SameSeedWithAugmentation_SameHistory()
    {
        History Run()
        {
            var (model, history) = Tiny(out _).Unfreeze().AddHead(_data.Classes).WithAugmentation(Crops()).WithSeed(8).Fit(_data, epochs: 2);
            model.Dispose();
            return history;
        }

        var (a, b) = (Run(), Run());
        Assert.Equal(a[History.Loss], b[History.Loss]);
        Assert.Equal(a[History.ValAccuracy], b[History.ValAccuracy]);
    }

    [Fact]
    public void ParameterGroups_DiscriminativeRates_ReachTheOptimizer()
    {
        using var backbone = TestBackbones.Tiny();
        backbone.Unfreeze();
        using var head = HeadFactory.Create(8, 2, new HeadOptions());
        var options = new TrainingOptions { LearningRate = 0.1, LowestBlockRateFactor = 0.01, Optimizer = OptimizerKind.AdamW };
        var trainer = new Trainer(backbone, head, CPU, options, null);

        var groups = trainer.ParameterGroups(headOnly: false);
        using var optimizer = trainer.CreateOptimizer(groups);
        new Trainer.StepRates(optimizer, [.. groups.Select(g => g.RateFactor)], options, 0, 1).Apply(0);

        var blocks = backbone.BlockModules.Count(b => b.parameters().Any());
        Assert.Equal(1 + blocks, groups.Count);
        Assert.Equal(1.0, groups[0].RateFactor);         // the head
        Assert.Equal(0.01, groups[1].RateFactor, 12);    // the first block
        Assert.Equal(1.0, groups[^1].RateFactor, 12);    // the last block
        var expected = groups.Select(g => 0.1 * g.RateFactor).ToArray();
        Assert.Equal(expected, optimizer.ParamGroups.Select(g => g.LearningRate).ToArray(), new ToleranceComparer(1e-12));
        Assert.Equal(backbone.Module.parameters().Count() + head.parameters().Count(), groups.Sum(g => g.Parameters.Count));
    }

    [Fact]
    public void Loss_LabelSmoothing_MatchesTheFormula()
    {
        using var scope = NewDisposeScope();
        using var backbone = TestBackbones.Tiny();
        using var head = HeadFactory.Create(8, 3, new HeadOptions());
        const double Epsilon = 0.2;
        var trainer = new Trainer(backbone, head, CPU, new TrainingOptions { LabelSmoothing = Epsilon }, null);
        var logits = tensor(new float[] { 2, -1, 0.5f, 0, 3, -2 }, [2, 3]);
        var labels = tensor(new long[] { 0, 2 });

        var loss = trainer.Loss(logits, labels).item<float>();

        var logp = logits.log_softmax(1).data<float>().ToArray();
        var expected = 0.0;
        for (var n = 0; n < 2; n++)
        {
            var y = n == 0 ? 0 : 2;
            var row = logp.AsSpan(n * 3, 3);
            expected += ((1 - Epsilon) * -row[y]) + (Epsilon * -(row[0] + row[1] + row[2]) / 3);
        }

        Assert.Equal(expected / 2, loss, 1e-5);
    }

    [Fact]
    public void Schedules_OneCycleAndWarmupCosine_FollowTheirShape()
    {
        var oneCycle = LearningRateSchedule.OneCycle(0.25, 10, 100);
        Assert.Equal(0.1, oneCycle.RateAt(1, 0, 4), 12);          // starts at base / 10
        Assert.Equal(1.0, oneCycle.RateAt(1, 1, 4), 12);          // peaks at the end of the warm-up (1 of 4 epochs)
        Assert.Equal(0.001, oneCycle.RateAt(1, 4, 4), 12);        // ends at base / 10 / 100
        Assert.True(oneCycle.RateAt(1, 0.5, 4) is > 0.1 and < 1);
        var warm = LearningRateSchedule.WarmupCosine(0.5, 0.1);
        Assert.Equal(0.0, warm.RateAt(2, 0, 2), 12);
        Assert.Equal(1.0, warm.RateAt(2, 0.5, 2), 12);            // halfway up the linear warm-up
        Assert.Equal(2.0, warm.RateAt(2, 1, 2), 12);
        Assert.Equal(0.1, warm.RateAt(2, 2, 2), 12);
    }

    [Fact]
    public void PredictProbabilities_TestTimeAugmentation_AveragesImageAndMirror()
    {
        var (model, _) = Tiny(out _).Unfreeze().AddHead(_data.Classes).Fit(_data, epochs: 1);
        using (model)
        using (var scope = NewDisposeScope())
        {
            var images = rand([3, 3, 32, 32], generator: new Generator(9, CPU));
            var plain = model.PredictProbabilities(images);
            var mirrored = model.PredictProbabilities(images.flip(3));
            var tta = model.PredictProbabilities(images, testTimeAugmentation: true);
            Assert.True(tta.allclose((plain + mirrored) / 2, 1e-6, 1e-7));
            Assert.False(tta.allclose(plain, 1e-6, 1e-7));

            var path = _data.Validation.Samples[0].Path;
            var single = model.Predict(path, new PredictOptions { TestTimeAugmentation = true });
            var batch = model.Predict([path], new PredictOptions { TestTimeAugmentation = true });
            Assert.Equal(single.Probabilities, batch[0].Probabilities);
            var evaluation = model.Evaluate(_data.Validation, new EvaluateOptions { TestTimeAugmentation = true });
            Assert.Equal(_data.Validation.Count, evaluation.Count);
        }
    }

    [Fact]
    public void FineTune_TinyBackbone_HeadEpochsFrozenThenBackboneEpochsWithTheRecipe()
    {
        var result = Tiny(out _).AddHead(_data.Classes).FineTune(_data, epochs: 2, freezeEpochs: 1);
        using (result.Model)
        {
            Assert.Equal([true, false, false], result.History.Epochs.Select(e => e.BackboneFrozen));
            Assert.Equal(0.05, result.History[History.LearningRate][0], 12); // the head phase: the learner's rate
            Assert.Equal(0.05 / 25, result.History[History.LearningRate][1], 12); // one cycle from the learner's (explicit) rate, starting low
            Assert.False(result.Model.Backbone.IsFrozen);
            Assert.NotNull(result.ValidationEvaluation);
        }
    }

    [Theory]
    [InlineData("torchvision")]
    [InlineData("tfjs")]
    public void FineTune_TorchVisionAndTfjsBackbones_EveryBlockTrainedBatchNormStatisticsKept(string family)
    {
        using var backbone = family == "torchvision"
            ? Backbones.TorchVision.TorchVisionBackbones.Load(RepoPaths.TestData("torchvision", "mobilenet_v2_w025_c10.pth"), "mobilenet_v2_w025_c10.pth",
                "mobilenet_v2", null, numClasses: 10, widthMult: 0.25)
            : Backbones.Tfjs.TfjsModel.Load(RepoPaths.TestData("tfjs", "bn_act", "model.json"), new Backbones.Tfjs.TfjsLoadOptions { Source = "bn_act/model.json" });
        var blocks = backbone.BlockModules.Where(b => b.parameters().Any()).ToList();
        Assert.True(blocks.Count >= 2, $"{family}: {blocks.Count} blocks with parameters");
        var weightsBefore = blocks.Select(b => b.parameters().Select(p => p.detach().clone()).ToList()).ToList();
        var statisticsBefore = RunningStatistics(backbone.Module);
        Assert.NotEmpty(statisticsBefore);

        var learner = TransferLearner.From(backbone).AddHead(_data.Classes).WithBatchSize(4).WithSeed(3);
        if (family == "torchvision")
        {
            learner.WithImageSize(32);
        }

        var result = learner.FineTune(_data, epochs: 1, freezeEpochs: 1);
        using (result.Model)
        {
            Assert.Equal([true, false], result.History.Epochs.Select(e => e.BackboneFrozen));
            for (var i = 0; i < blocks.Count; i++)
            {
                var changed = blocks[i].parameters().Zip(weightsBefore[i]).Any(p => !p.First.detach().allclose(p.Second, 0, 0));
                Assert.True(changed, $"{family}: block {i} of {blocks.Count} kept its weights");
            }

            // BatchNorm in inference mode (the recipe's default): running statistics are used, never updated.
            var statisticsAfter = RunningStatistics(result.Model.Backbone.Module);
            Assert.Equal(statisticsBefore.Keys, statisticsAfter.Keys);
            Assert.All(statisticsBefore, s => Assert.True(s.Value.allclose(statisticsAfter[s.Key], 0, 0), $"{family}: {s.Key} changed"));
        }

        static Dictionary<string, Tensor> RunningStatistics(TorchSharp.torch.nn.Module module) =>
            module.named_buffers().Where(b => b.name.EndsWith("running_mean", StringComparison.Ordinal) || b.name.EndsWith("running_var", StringComparison.Ordinal))
                .ToDictionary(b => b.name, b => b.buffer.detach().clone());
    }

    [Fact]
    public void BackbonePhase_ExplicitSettings_WinOverTheRecipe()
    {
        var learner = new TrainingOptions { LearningRate = 0.02, LabelSmoothing = 0 };
        var recipe = FineTuneRecipe.BackbonePhase(learner, new HashSet<string> { nameof(TransferLearner.WithLearningRate), nameof(TransferLearner.WithLabelSmoothing) });
        Assert.Equal(0.02, recipe.LearningRate);
        Assert.Equal(0, recipe.LabelSmoothing);
        Assert.Equal(OptimizerKind.AdamW, recipe.Optimizer);
        Assert.Equal(FineTuneRecipe.WeightDecay, recipe.WeightDecay);
        Assert.Equal(FineTuneRecipe.LowestBlockRateFactor, recipe.LowestBlockRateFactor);
        Assert.True(recipe.Augmentation.RandomResizedCrop);

        var defaults = FineTuneRecipe.BackbonePhase(learner, new HashSet<string>());
        Assert.Equal(FineTuneRecipe.LearningRate, defaults.LearningRate);
        Assert.Equal(FineTuneRecipe.LabelSmoothing, defaults.LabelSmoothing);
    }

    private sealed class ToleranceComparer(double tolerance) : IEqualityComparer<double>
    {
        public bool Equals(double x, double y) => Math.Abs(x - y) <= tolerance;

        public int GetHashCode(double obj) => 0;
    }
}
