using TransferLearning.Datasets;
using TransferLearning.Models;
using TransferLearning.Training;

namespace TransferLearning.Core.Tests.Learner;

/// <summary><see cref="FitResult.ValidationEvaluation"/>: the fit's own validation pass, equal to a separate Evaluate.</summary>
public sealed class FitValidationEvaluationTests : IClassFixture<GeneratedImages>
{
    private readonly DatasetSplit _data;

    public FitValidationEvaluationTests(GeneratedImages images) => _data = ImageFolder.Load(images.Root).Split(0.7, seed: 42);

    private static TransferLearner Tiny(out CountingModule counter) => TestBackbones.TinyLearner(out counter);

    private static void AssertSameEvaluation(Evaluation expected, Evaluation? actual)
    {
        Assert.NotNull(actual);
        Assert.Equal(expected.Classes, actual.Classes);
        Assert.Equal(expected.Count, actual.Count);
        Assert.Equal(expected.ConfusionMatrix, actual.ConfusionMatrix);
        Assert.Equal(expected.Accuracy, actual.Accuracy);
        Assert.Equal(expected.Loss, actual.Loss, 4); // cached features vs a new forward pass in other batches: rounding only
        Assert.Equal(expected.PerClass, actual.PerClass);
        Assert.Empty(actual.Skipped);
    }

    [Fact]
    public void Fit_FrozenWithFeatureCache_ValidationEvaluationEqualsEvaluateWithoutSecondBackbonePass()
    {
        var result = Tiny(out var counter).Freeze().AddHead(_data.Classes).Fit(_data, epochs: 3);
        using var model = result.Model;

        // Featurizing ran the backbone once per image; the evaluation came with the fit, not from another pass.
        Assert.Equal(_data.Train.Count + _data.Validation.Count, counter.Images);
        var evaluation = result.ValidationEvaluation;
        Assert.NotNull(evaluation);
        Assert.Equal(_data.Validation.Count, evaluation.Count);
        Assert.Equal(result.History[History.ValAccuracy][^1], evaluation.Accuracy);
        Assert.Equal(result.History[History.ValLoss][^1], evaluation.Loss, 6);

        AssertSameEvaluation(model.Evaluate(_data.Validation), evaluation);
        Assert.Equal(_data.Train.Count + (2 * _data.Validation.Count), counter.Images);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Fit_EarlyStoppingRestoresBestWeights_ValidationEvaluationIsBestEpochsAndEqualsEvaluate(bool unfrozen)
    {
        // A learning rate this large makes validation loss jump around (for the frozen backbone, whose head alone learns
        // the colours at once, with labels unrelated to the images), so the best epoch is not the last one and restoring
        // it changes the predictions.
        var data = unfrozen ? _data : Relabelled(_data);
        using var learner = Tiny(out _).AddHead(data.Classes).WithLearningRate(5)
            .WithEarlyStopping(new EarlyStopping(History.ValLoss, patience: 100, restoreBestWeights: true));
        if (unfrozen)
        {
            learner.Unfreeze();
        }
        else
        {
            learner.Freeze();
        }

        var result = learner.Fit(data, epochs: 8);
        using var model = result.Model;

        var losses = result.History[History.ValLoss];
        var best = losses.ToList().IndexOf(losses.Min());
        Assert.True(best < losses.Count - 1, $"the test needs a best epoch before the last; validation losses: {string.Join(", ", losses)}");
        var evaluation = result.ValidationEvaluation;
        Assert.NotNull(evaluation);
        Assert.Equal(result.History[History.ValAccuracy][best], evaluation.Accuracy);
        Assert.Equal(losses[best], evaluation.Loss, 6);

        AssertSameEvaluation(model.Evaluate(data.Validation), evaluation);
    }

    /// <summary>The same images with labels from a fixed pseudo-random pattern (not learnable from the pixels).</summary>
    private static DatasetSplit Relabelled(DatasetSplit split)
    {
        static ImageDataset Relabel(ImageDataset d, int salt) =>
            new(d.Classes, [.. d.Samples.Select((s, i) => s with { Label = ((i * 7) + salt) % 5 < 2 ? 0 : 1 })]);
        return new DatasetSplit(Relabel(split.Train, 0), Relabel(split.Validation, 3));
    }

    [Fact]
    public void Fit_NoValidationImages_ValidationEvaluationIsNull()
    {
        var split = new DatasetSplit(_data.Train, new ImageDataset(_data.Classes, []));
        var result = Tiny(out _).Freeze().AddHead(_data.Classes).Fit(split, epochs: 1);
        using var model = result.Model;

        Assert.Null(result.ValidationEvaluation);
        var (deconstructed, history) = result;
        Assert.Same(model, deconstructed);
        Assert.Same(model.History, history);
    }
}
