using TransferLearning.Datasets;
using TransferLearning.Heads;
using TransferLearning.Models;
using TransferLearning.Training;
using static TorchSharp.torch;

namespace TransferLearning.Core.Tests.Learner;

/// <summary>Class weights (given and balanced), weight decay, SGD with momentum and training without the feature cache, on tiny generated data.</summary>
public sealed class TrainingSettingsTests : IClassFixture<GeneratedImages>
{
    private readonly ImageFolder _all;
    private readonly DatasetSplit _data;

    public TrainingSettingsTests(GeneratedImages images)
    {
        _all = ImageFolder.Load(images.Root);
        _data = _all.Split(0.7, seed: 42);
    }

    private static TransferLearner Tiny() => TestBackbones.TinyLearner(out _);

    /// <summary>6 blue and 2 red training images; the other 12 validate.</summary>
    private DatasetSplit Imbalanced()
    {
        var blue = _all.Samples.Where(s => s.Label == 0).ToList();
        var red = _all.Samples.Where(s => s.Label == 1).ToList();
        return new DatasetSplit(
            new ImageDataset(_all.Classes, [.. blue.Take(6), .. red.Take(2)]),
            new ImageDataset(_all.Classes, [.. blue.Skip(6), .. red.Skip(2)]));
    }

    /// <summary>The training loss of a fit planned with <paramref name="options"/>, on logits that get a blue image wrong and a red one right.</summary>
    private float LossOnOneWrongOneRight(TrainingOptions options)
    {
        using var backbone = TestBackbones.Tiny();
        var plan = FitPlan.Create(backbone, null, _data.Classes, new HeadOptions(), Trainability.Frozen, options, _data, 1);
        using var weights = plan.ClassWeights is { } w ? tensor(w) : null;
        using var head = nn.Linear(8, 2);
        var trainer = new Trainer(backbone, head, CPU, plan.Options, weights);
        using var logits = tensor(new float[] { 0, 2, 0, 2 }, new long[] { 2, 2 }); // both say red
        using var labels = tensor(new long[] { 0, 1 }); // blue, red
        using var loss = trainer.Loss(logits, labels);
        return loss.item<float>();
    }

    private static double MeanProbability(TrainedModel model, IEnumerable<ImageSample> samples, string label) =>
        samples.Select(s => model.Predict(s.Path).Probabilities[model.Classes.ToList().IndexOf(label)]).Average();

    private static double SumOfSquares(nn.Module module) =>
        module.parameters().Sum(p => p.detach().square().sum().item<float>());

    [Fact]
    public void ClassWeights_HeavierClass_WeighsItsErrorsInTheLoss()
    {
        var wrong = Math.Log(1 + Math.Exp(2)); // cross-entropy of the blue image, predicted red
        var right = Math.Log(1 + Math.Exp(-2)); // of the red image, predicted red

        var plain = LossOnOneWrongOneRight(new TrainingOptions());
        var blueHeavy = LossOnOneWrongOneRight(new TrainingOptions { ClassWeights = new Dictionary<string, double> { ["blue"] = 4 } });
        var redHeavy = LossOnOneWrongOneRight(new TrainingOptions { ClassWeights = new Dictionary<string, double> { ["red"] = 4 } });

        Assert.Equal((wrong + right) / 2, plain, 5);
        Assert.Equal(((4 * wrong) + right) / 5, blueHeavy, 5); // the class the logits get wrong weighs more: the loss rises
        Assert.Equal((wrong + (4 * right)) / 5, redHeavy, 5); // the class they get right weighs more: the loss falls
        Assert.True(blueHeavy > plain && plain > redHeavy, $"{blueHeavy} > {plain} > {redHeavy}");
    }

    [Fact]
    public void WithClassWeights_RedWeighsMore_ModelLeansTowardRed()
    {
        var (plain, _) = Tiny().Freeze().AddHead(_data.Classes).Fit(_data, 3);
        var (weighted, _) = Tiny().Freeze().AddHead(_data.Classes).WithClassWeights(new Dictionary<string, double> { ["red"] = 20 }).Fit(_data, 3);
        using (plain)
        using (weighted)
        {
            var blueImages = _data.Validation.Samples.Where(s => s.Label == 0).ToList();
            var plainRed = MeanProbability(plain, blueImages, "red");
            var weightedRed = MeanProbability(weighted, blueImages, "red");
            Assert.True(weightedRed > plainRed, $"mean P(red) on blue images: weighted {weightedRed}, plain {plainRed}");
        }
    }

    [Fact]
    public void BalanceClasses_ImbalancedTraining_InverseFrequencyWeights()
    {
        var data = Imbalanced();
        using var backbone = TestBackbones.Tiny();

        var plan = FitPlan.Create(backbone, null, _all.Classes, new HeadOptions(), Trainability.Frozen, new TrainingOptions { BalanceClasses = true }, data, 1);

        // images / (classes × images of the class): 8 / (2 × 6) and 8 / (2 × 2).
        Assert.Equal([8f / 12, 2f], plan.ClassWeights!);
    }

    [Fact]
    public void BalanceClasses_ClassWithoutTrainingImages_WeighsZero()
    {
        var blue = _all.Samples.Where(s => s.Label == 0).Take(3).ToList();
        string[] classes = ["blue", "green", "red"];
        var red = _all.Samples.Where(s => s.Label == 1).Take(1).Select(s => s with { Label = 2 });
        var data = new DatasetSplit(new ImageDataset(classes, [.. blue, .. red]), new ImageDataset(classes, []));
        using var backbone = TestBackbones.Tiny();

        var plan = FitPlan.Create(backbone, null, classes, new HeadOptions(), Trainability.Frozen, new TrainingOptions { BalanceClasses = true }, data, 1);

        Assert.Equal([4f / 9, 0f, 4f / 3], plan.ClassWeights!);
    }

    [Fact]
    public void WithBalancedClassWeights_ImbalancedData_SameFitAsInverseFrequencyWeights()
    {
        var data = Imbalanced();
        var (balanced, balancedHistory) = Tiny().Freeze().AddHead(data.Classes).WithBalancedClassWeights().Fit(data, 2);
        var (explicitWeights, explicitHistory) = Tiny().Freeze().AddHead(data.Classes)
            .WithClassWeights(new Dictionary<string, double> { ["blue"] = 8.0 / 12, ["red"] = 2 }).Fit(data, 2);
        var (plain, plainHistory) = Tiny().Freeze().AddHead(data.Classes).Fit(data, 2);
        using (balanced)
        using (explicitWeights)
        using (plain)
        {
            Assert.Equal(explicitHistory[History.Loss], balancedHistory[History.Loss]);
            Assert.NotEqual(plainHistory[History.Loss], balancedHistory[History.Loss]);
        }
    }

    [Fact]
    public void WithWeightDecay_SameFitOtherwise_SmallerHeadWeights()
    {
        var (plain, _) = Tiny().Freeze().AddHead(_data.Classes).Fit(_data, 5);
        var (decayed, _) = Tiny().Freeze().AddHead(_data.Classes).WithWeightDecay(0.5).Fit(_data, 5);
        using (plain)
        using (decayed)
        {
            var plainNorm = SumOfSquares(plain.Head);
            var decayedNorm = SumOfSquares(decayed.Head);
            Assert.True(decayedNorm < 0.5 * plainNorm, $"sum of squared head weights: decayed {decayedNorm}, plain {plainNorm}");
        }
    }

    [Fact]
    public void WithOptimizer_SgdWithMomentum_LossDrops()
    {
        var (model, history) = Tiny().Freeze().AddHead(_data.Classes).WithOptimizer(OptimizerKind.Sgd, learningRate: 0.05, momentum: 0.9).Fit(_data, 8);
        var (noMomentum, noMomentumHistory) = Tiny().Freeze().AddHead(_data.Classes).WithOptimizer(OptimizerKind.Sgd, learningRate: 0.05, momentum: 0).Fit(_data, 8);
        var (adam, adamHistory) = Tiny().Freeze().AddHead(_data.Classes).Fit(_data, 8);
        using (model)
        using (noMomentum)
        using (adam)
        {
            var loss = history[History.Loss];
            Assert.True(loss[^1] < 0.5 * loss[0], $"loss {loss[0]} → {loss[^1]}");
            Assert.NotEqual(adamHistory[History.Loss], loss); // SGD, not the default Adam
            Assert.True(loss[^1] < noMomentumHistory[History.Loss][^1], $"momentum {loss[^1]}, none {noMomentumHistory[History.Loss][^1]}"); // the momentum is used, and speeds it up
        }
    }

    [Fact]
    public void WithoutFeatureCache_FrozenBackbone_SameFitButBackboneRunsEveryEpoch()
    {
        // One batch per epoch, so that the two paths' different shuffles give the same batches.
        var batch = _data.Train.Count;
        var cached = TestBackbones.TinyLearner(out var cachedCounter).WithBatchSize(batch).Freeze().AddHead(_data.Classes);
        var uncached = TestBackbones.TinyLearner(out var uncachedCounter).WithBatchSize(batch).Freeze().AddHead(_data.Classes).WithoutFeatureCache();
        var (a, ha) = cached.Fit(_data, 3);
        var (b, hb) = uncached.Fit(_data, 3);
        using (a)
        using (b)
        {
            var images = _data.Train.Count + _data.Validation.Count;
            Assert.Equal(images, cachedCounter.Images);
            Assert.Equal(3 * images, uncachedCounter.Images);
            foreach (var metric in new[] { History.Loss, History.Accuracy, History.ValLoss, History.ValAccuracy })
            {
                Assert.Equal(ha[metric], hb[metric], (x, y) => Math.Abs(x - y) < 1e-4);
            }
        }
    }
}
