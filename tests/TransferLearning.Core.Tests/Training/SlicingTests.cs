using TransferLearning.Backbones;
using TransferLearning.Heads;
using TransferLearning.Training;
using static TorchSharp.torch;

namespace TransferLearning.Core.Tests.Training;

/// <summary>Large batches run in slices where no layer mixes images: the same features and gradients as one pass.</summary>
public class SlicingTests
{
    private static Tensor Images(int count, int size)
    {
        using var generator = new Generator(5, CPU);
        return rand([count, 3, size, size], generator: generator);
    }

    /// <summary><see cref="TestBackbones.Tiny"/> with a <see cref="CountingModule"/> that records every forward call's batch size.</summary>
    private static Backbone CountedTiny(out CountingModule counter)
    {
        var tiny = TestBackbones.Tiny();
        counter = new CountingModule(tiny.Module);
        return new Backbone(TestBackbones.TinySource, counter, 8, tiny.InputSpec);
    }

    [Theory]
    [InlineData(224, 224, 8)]
    [InlineData(32, 32, 8)]
    [InlineData(448, 448, 2)]
    [InlineData(300, 400, 3)]
    [InlineData(1000, 1000, 1)]
    public void InferenceSliceSize_ImageArea_ScalesInverselyFromEightAt224(long height, long width, int expected) =>
        Assert.Equal(expected, Backbone.InferenceSliceSize(height, width));

    [Fact]
    public void Forward_InferenceBatchOfTwenty_RunsInSlicesWithTheSameFeatures()
    {
        using var scope = NewDisposeScope();
        using var backbone = CountedTiny(out var counter);
        backbone.SetTrainingMode(false);
        var images = Images(20, 32);

        var whole = backbone.Forward(images).detach(); // gradients recorded: one pass
        Tensor sliced;
        using (no_grad())
        {
            sliced = backbone.Forward(images);
        }

        Assert.Equal([20L, 8, 8, 4], counter.BatchSizes);
        Assert.Equal(new long[] { 20, 8 }, sliced.shape);
        Assert.True(sliced.allclose(whole, rtol: 1e-5, atol: 1e-6));
    }

    [Fact]
    public void Forward_TrainingModeWithoutGradients_RunsTheWholeBatch()
    {
        using var scope = NewDisposeScope();
        using var backbone = CountedTiny(out var counter);
        backbone.SetTrainingMode(true); // BatchNorm uses the batch's statistics: slices would change the features
        using (no_grad())
        {
            backbone.Forward(Images(20, 32));
        }

        Assert.Equal([20L], counter.BatchSizes);
    }

    [Fact]
    public void SlicedStep_ClassWeightsAndLabelSmoothing_SameLossAndGradientsAsOneBatch()
    {
        using var scope = NewDisposeScope();
        using var backbone = CountedTiny(out var counter);
        backbone.Unfreeze();
        backbone.SetTrainingMode(false);
        using var head = HeadFactory.Create(8, 3, new HeadOptions());
        head.train();
        var weights = tensor(new float[] { 1f, 2f, 0.5f });
        var trainer = new Trainer(backbone, head, CPU, new TrainingOptions { LabelSmoothing = 0.1 }, weights);
        var images = Images(20, 32);
        var labels = tensor(Enumerable.Range(0, 20).Select(i => (long)(i * 7 % 3)).ToArray());
        var parameters = backbone.Module.parameters().Concat(head.parameters()).ToList();

        var (wholeLogits, wholeLoss) = trainer.WholeBatchStep(images, labels, inputsAreFeatures: false, backboneFrozen: false);
        var wholeGradients = parameters.Select(p => p.grad!.detach().clone()).ToList();
        foreach (var p in parameters)
        {
            p.grad = null;
        }

        var (slicedLogits, slicedLoss) = trainer.SlicedStep(images, labels);

        Assert.Equal([20L, 8, 8, 4], counter.BatchSizes);
        Assert.Equal(wholeLoss.item<float>(), slicedLoss.item<float>(), 1e-5);
        Assert.True(slicedLogits.allclose(wholeLogits.detach(), rtol: 1e-5, atol: 1e-6));
        for (var i = 0; i < parameters.Count; i++)
        {
            var expected = wholeGradients[i];
            var actual = parameters[i].grad!;
            var error = (actual - expected).abs().max().item<float>() / Math.Max(1e-6f, expected.abs().max().item<float>());
            Assert.True(error < 1e-4, $"parameter {i}: relative gradient error {error}");
        }
    }
}
