using TransferLearning.Heads;
using TransferLearning.Training;
using static TorchSharp.torch;

namespace TransferLearning.Core.Tests.Training;

public class TrainerTests
{
    /// <summary>Three well separated Gaussian blobs in 8 dimensions (feature space of the tiny backbone).</summary>
    private static (Tensor X, Tensor Y) Blobs(int perClass, int seed)
    {
        using var g = new Generator((ulong)seed, CPU);
        var xs = new List<Tensor>();
        var ys = new List<Tensor>();
        for (var c = 0; c < 3; c++)
        {
            var centre = zeros(8);
            centre[c] = 3f;
            xs.Add(randn(perClass, 8, generator: g) * 0.5f + centre);
            ys.Add(full(perClass, c, ScalarType.Int64));
        }

        return (cat(xs, 0), cat(ys, 0));
    }

    private static (History History, Dictionary<string, float[]> Head) TrainOnBlobs(TrainingOptions options, int epochs, bool withValidation = true)
    {
        using var backbone = TestBackbones.Tiny();
        backbone.Freeze();
        using var head = HeadFactory.Create(8, 3, new HeadOptions(), options.Seed);
        var (x, y) = Blobs(20, 1);
        var (vx, vy) = Blobs(10, 2);
        using var train = new TensorBatchSource(x, y, options.BatchSize, shuffle: true, options.Seed);
        using var validation = new TensorBatchSource(vx, vy, options.BatchSize, shuffle: false, options.Seed);
        var history = new History();
        new Trainer(backbone, head, CPU, options, null)
            .Fit(train, withValidation ? validation : null, inputsAreFeatures: true, epochs, history, null, CancellationToken.None);
        return (history, TestBackbones.Weights(head));
    }

    [Fact]
    public void Fit_SeparableFeatures_LearnsAndRecordsEveryEpoch()
    {
        var (history, _) = TrainOnBlobs(new TrainingOptions { BatchSize = 8, LearningRate = 0.05 }, epochs: 15);

        Assert.Equal(15, history.Count);
        Assert.Equal(Enumerable.Range(1, 15), history.Epochs.Select(e => e.Epoch));
        Assert.True(history[History.Loss][^1] < history[History.Loss][0], "training loss should fall");
        Assert.True(history[History.ValAccuracy][^1] >= 0.9, $"val accuracy {history[History.ValAccuracy][^1]}");
        Assert.All(history[History.Seconds], s => Assert.True(s >= 0));
        Assert.All(history[History.LearningRate], r => Assert.Equal(0.05, r));
    }

    [Fact]
    public void Fit_SameSeedTwice_IdenticalHistoryAndWeights()
    {
        var options = new TrainingOptions { BatchSize = 8, Seed = 5 };
        var (first, firstWeights) = TrainOnBlobs(options, 3);
        var (second, secondWeights) = TrainOnBlobs(options, 3);

        Assert.Equal(first[History.Loss], second[History.Loss]);
        Assert.Equal(first[History.ValLoss], second[History.ValLoss]);
        foreach (var (name, w) in firstWeights)
        {
            Assert.Equal(w, secondWeights[name]);
        }
    }

    [Fact]
    public void Fit_DifferentSeed_DifferentHistory()
    {
        var (a, _) = TrainOnBlobs(new TrainingOptions { BatchSize = 8, Seed = 1 }, 2);
        var (b, _) = TrainOnBlobs(new TrainingOptions { BatchSize = 8, Seed = 2 }, 2);
        Assert.NotEqual(a[History.Loss], b[History.Loss]);
    }

    [Fact]
    public void Fit_NoValidation_ValidationMetricsAreNaN()
    {
        var (history, _) = TrainOnBlobs(new TrainingOptions { BatchSize = 8 }, 1, withValidation: false);
        Assert.True(double.IsNaN(history[History.ValLoss][0]));
        Assert.False(double.IsNaN(history[History.Loss][0]));
    }

    [Fact]
    public void Fit_EarlyStoppingWithZeroPatienceOnTrainingLoss_StopsWhenLossStopsFalling()
    {
        // A huge learning rate makes the loss bounce, so loss stops improving well before 30 epochs.
        var options = new TrainingOptions { BatchSize = 60, LearningRate = 50, EarlyStopping = new EarlyStopping(History.Loss, patience: 0, restoreBestWeights: false) };
        var (history, _) = TrainOnBlobs(options, 30);

        Assert.InRange(history.Count, 2, 29);
        var losses = history[History.Loss];
        Assert.True(losses[^1] >= losses.Take(losses.Count - 1).Min(), "stopped on an epoch that did not improve");
    }

    [Fact]
    public void Fit_EarlyStoppingRestoreBest_HeadHasBestEpochWeights()
    {
        var options = new TrainingOptions { BatchSize = 8, LearningRate = 0.05, EarlyStopping = new EarlyStopping(History.ValLoss, patience: 100, restoreBestWeights: true) };
        using var backbone = TestBackbones.Tiny();
        backbone.Freeze();
        manual_seed(options.Seed);
        using var head = HeadFactory.Create(8, 3, new HeadOptions());
        var (x, y) = Blobs(20, 1);
        var (vx, vy) = Blobs(10, 2);
        using var train = new TensorBatchSource(x, y, 8, true, 1);
        using var validation = new TensorBatchSource(vx, vy, 8, false, 1);
        var history = new History();
        var trainer = new Trainer(backbone, head, CPU, options, null);
        trainer.Fit(train, validation, true, 12, history, null, CancellationToken.None);

        var loss = trainer.MeasurePass(validation, true, 0, null, CancellationToken.None).Loss;
        Assert.Equal(history[History.ValLoss].Min(), loss, 5);
    }

    [Fact]
    public void Fit_EarlyStoppingRestoreBest_ReturnsValidationPassOfRestoredWeights()
    {
        // Shuffled labels and a bouncing learning rate: the restored epoch is not the last one and predicts differently.
        var options = new TrainingOptions { BatchSize = 60, LearningRate = 50, EarlyStopping = new EarlyStopping(History.Loss, patience: 100, restoreBestWeights: true) };
        using var backbone = TestBackbones.Tiny();
        backbone.Freeze();
        using var head = HeadFactory.Create(8, 3, new HeadOptions(), options.Seed);
        var (x, _) = Blobs(20, 1);
        var (vx, vy) = Blobs(10, 2);
        using var g = new Generator(9, CPU);
        var y = randint(0, 3, [60], generator: g);
        using var train = new TensorBatchSource(x, y, 60, true, 1);
        using var validation = new TensorBatchSource(vx, vy, 8, false, 1);
        var history = new History();
        var trainer = new Trainer(backbone, head, CPU, options, null);

        var pass = trainer.Fit(train, validation, true, 12, history, null, CancellationToken.None);

        var losses = history[History.Loss];
        var best = losses.ToList().IndexOf(losses.Min());
        Assert.True(best < losses.Count - 1, $"the test needs a best epoch before the last; losses: {string.Join(", ", losses)}");
        Assert.NotNull(pass);
        Assert.Equal(30, pass.Count);
        Assert.Equal(history[History.ValLoss][best], pass.Loss, 6);
        Assert.Equal(history[History.ValAccuracy][best], pass.Accuracy);
        var now = trainer.MeasurePass(validation, true, 0, null, CancellationToken.None);
        Assert.Equal(now.Confusion, pass.Confusion);
        Assert.Equal(30, pass.Confusion.Cast<int>().Sum());
    }

    [Fact]
    public void Fit_NoValidation_ReturnsNoValidationPass()
    {
        using var backbone = TestBackbones.Tiny();
        backbone.Freeze();
        using var head = HeadFactory.Create(8, 3, new HeadOptions(), 1);
        var (x, y) = Blobs(5, 1);
        using var train = new TensorBatchSource(x, y, 8, true, 1);

        Assert.Null(new Trainer(backbone, head, CPU, new TrainingOptions { BatchSize = 8 }, null).Fit(train, null, true, 1, new History(), null, CancellationToken.None));
    }

    [Fact]
    public void Fit_Cancelled_ThrowsOperationCanceled()
    {
        using var backbone = TestBackbones.Tiny();
        using var head = HeadFactory.Create(8, 3, new HeadOptions());
        var (x, y) = Blobs(20, 1);
        using var train = new TensorBatchSource(x, y, 4, true, 1);
        using var cts = new CancellationTokenSource();
        var batches = 0;
        var progress = new SyncProgress<TrainingProgress>(p =>
        {
            if (p.Phase == TrainingPhase.Training && ++batches == 2)
            {
                cts.Cancel();
            }
        });

        Assert.Throws<OperationCanceledException>(() =>
            new Trainer(backbone, head, CPU, new TrainingOptions { BatchSize = 4 }, null).Fit(train, null, true, 5, new History(), progress, cts.Token));
        Assert.Equal(2, batches);
    }

    /// <summary>Trains <paramref name="backbone"/> + a fresh head on 8 random images; returns weights before and after.</summary>
    private static (Dictionary<string, float[]> Before, Dictionary<string, float[]> After, Dictionary<string, float[]> HeadBefore, Dictionary<string, float[]> HeadAfter)
        TrainOnRandomImages(TransferLearning.Backbones.Backbone backbone, TrainingOptions options, int epochs = 1)
    {
        using var head = HeadFactory.Create(8, 2, new HeadOptions(), seed: 1);
        var before = TestBackbones.Weights(backbone.Module);
        var headBefore = TestBackbones.Weights(head);
        using var generator = new Generator(3, CPU);
        using var images = new TensorBatchSource(rand(8, 3, 32, 32, generator: generator), tensor(new long[] { 0, 1, 0, 1, 0, 1, 0, 1 }), 4, true, 1);

        new Trainer(backbone, head, CPU, options, null).Fit(images, null, false, epochs, new History(), null, CancellationToken.None);
        return (before, TestBackbones.Weights(backbone.Module), headBefore, TestBackbones.Weights(head));
    }

    [Fact]
    public void Fit_ImagesThroughFrozenBackbone_BackboneUnchangedHeadChanged()
    {
        using var backbone = TestBackbones.Tiny();
        backbone.Freeze();

        var (before, after, headBefore, headAfter) = TrainOnRandomImages(backbone, new TrainingOptions { BatchSize = 4 }, epochs: 2);

        foreach (var (name, w) in after)
        {
            Assert.Equal(before[name], w); // weights and BatchNorm running statistics: inference mode when frozen
        }

        Assert.NotEqual(headBefore["logits.weight"], headAfter["logits.weight"]);
    }

    [Fact]
    public void Fit_ImagesThroughUnfrozenBackbone_WeightsChangeStatisticsKeptByDefault()
    {
        using var backbone = TestBackbones.Tiny();
        backbone.Unfreeze();

        var (before, after, _, _) = TrainOnRandomImages(backbone, new TrainingOptions { BatchSize = 4 });

        Assert.NotEqual(before["stem.weight"], after["stem.weight"]);
        Assert.NotEqual(before["stem_bn.weight"], after["stem_bn.weight"]);
        Assert.Equal(before["stem_bn.running_mean"], after["stem_bn.running_mean"]); // inference mode, as Keras fine-tuning
    }

    [Fact]
    public void Fit_UnfrozenWithBatchNormUpdates_WeightsAndStatisticsChange()
    {
        using var backbone = TestBackbones.Tiny();
        backbone.Unfreeze();

        var (before, after, _, _) = TrainOnRandomImages(backbone, new TrainingOptions { BatchSize = 4, UpdateBatchNormStatistics = true });

        Assert.NotEqual(before["stem.weight"], after["stem.weight"]);
        Assert.NotEqual(before["stem_bn.running_mean"], after["stem_bn.running_mean"]);
    }

    [Fact]
    public void Fit_PartlyUnfrozen_EarlierBlocksKeepWeightsAndStatistics()
    {
        using var backbone = TestBackbones.Tiny();
        backbone.Freeze();
        backbone.Unfreeze("block1");

        var (before, after, _, _) = TrainOnRandomImages(backbone, new TrainingOptions { BatchSize = 4, UpdateBatchNormStatistics = true });

        Assert.Equal(before["stem.weight"], after["stem.weight"]);
        Assert.Equal(before["stem_bn.running_mean"], after["stem_bn.running_mean"]);
        Assert.NotEqual(before["block1.weight"], after["block1.weight"]);
        Assert.NotEqual(before["block1_bn.running_mean"], after["block1_bn.running_mean"]);
    }

    [Fact]
    public void Featurize_FrozenBackbone_EqualsForwardInEvalMode()
    {
        using var backbone = TestBackbones.Tiny();
        backbone.Freeze();
        using var head = HeadFactory.Create(8, 2, new HeadOptions());
        manual_seed(4);
        var images = rand(6, 3, 32, 32);
        backbone.SetTrainingMode(false);
        using var expected = backbone.Forward(images);
        backbone.SetTrainingMode(true);
        using var source = new TensorBatchSource(images, tensor(new long[] { 0, 1, 0, 1, 0, 1 }), 4, false, 1);

        using var features = new Trainer(backbone, head, CPU, new TrainingOptions { BatchSize = 4 }, null).Featurize(source, false, null, CancellationToken.None);

        using var scope = NewDisposeScope();
        var all = cat(features.Batches(0, CancellationToken.None).Select(b => b.Inputs).ToList(), 0);
        Assert.True(all.allclose(expected, 1e-5, 1e-6));
    }
}

/// <summary>IProgress that reports synchronously (Progress&lt;T&gt; posts to the thread pool).</summary>
internal sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}
