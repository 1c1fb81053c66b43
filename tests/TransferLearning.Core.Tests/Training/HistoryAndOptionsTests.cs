using TransferLearning.Heads;
using TransferLearning.Training;

namespace TransferLearning.Core.Tests.Training;

public class HistoryAndOptionsTests
{
    [Fact]
    public void Indexer_KerasMetricNames_ListValuesPerEpoch()
    {
        var h = new History([new EpochMetrics(1, 0.9, 0.6, 0.8, 0.7, 1e-3, 3, true), new EpochMetrics(2, 0.5, 0.8, 0.6, 0.85, 1e-3, 1, true)]);

        Assert.Equal([0.9, 0.5], h["loss"]);
        Assert.Equal([0.6, 0.8], h["accuracy"]);
        Assert.Equal([0.8, 0.6], h["val_loss"]);
        Assert.Equal([0.7, 0.85], h["val_accuracy"]);
        Assert.Equal(History.MetricNames, h.Metrics.Keys);
        Assert.Equal(2, h.Last!.Epoch);
    }

    [Fact]
    public void Indexer_UnknownMetric_ThrowsListingMetrics()
    {
        var e = Assert.Throws<KeyNotFoundException>(() => new History()["acc"]);
        Assert.Equal("History has no metric 'acc'. Metrics: loss, accuracy, val_loss, val_accuracy, lr, seconds.", e.Message);
    }

    [Fact]
    public void Schedules_RatesPerEpoch_AsDocumented()
    {
        Assert.Equal(0.1, LearningRateSchedule.Constant.RateAt(0.1, 5, 10));
        Assert.Equal(0.1 * 0.5 * 0.5, LearningRateSchedule.StepDecay(2, 0.5).RateAt(0.1, 5, 10), 12);
        Assert.Equal(0.1, LearningRateSchedule.Cosine(0.01).RateAt(0.1, 0, 5), 12);
        Assert.Equal(0.01, LearningRateSchedule.Cosine(0.01).RateAt(0.1, 4, 5), 12);
        Assert.Equal(0.055, LearningRateSchedule.Cosine(0.01).RateAt(0.1, 2, 5), 12);
    }

    [Fact]
    public void Options_InvalidValues_ThrowWhenSet()
    {
        var o = new TrainingOptions();
        Assert.Throws<ArgumentOutOfRangeException>(() => o.BatchSize = 0);
        Assert.Throws<ArgumentOutOfRangeException>(() => o.LearningRate = -1);
        Assert.Throws<ArgumentOutOfRangeException>(() => o.ImageSize = 16);
        Assert.Throws<ArgumentOutOfRangeException>(() => o.Augmentation = new Augmentation { Zoom = 2 });
        Assert.Throws<ArgumentOutOfRangeException>(() => new HeadOptions().Dropout = 1);
        var e = Assert.Throws<ArgumentException>(() => new EarlyStopping("val_acc"));
        Assert.StartsWith("Cannot monitor 'val_acc'. Use one of: loss, accuracy, val_loss, val_accuracy.", e.Message);
    }

    [Fact]
    public void HeadFactory_HiddenLayersAndDropout_LayersInOrder()
    {
        using var head = HeadFactory.Create(8, 3, new HeadOptions { HiddenUnits = [16, 4], Dropout = 0.5, Activation = HeadActivation.Gelu });
        Assert.Equal(["dropout0", "dense0", "gelu0", "dropout1", "dense1", "gelu1", "dropout", "logits"], head.named_children().Select(c => c.name));
        using var single = HeadFactory.Create(8, 3, new HeadOptions());
        Assert.Equal(["logits"], single.named_children().Select(c => c.name));
    }
}
