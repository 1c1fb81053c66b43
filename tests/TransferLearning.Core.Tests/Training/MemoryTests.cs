using TorchSharp;
using TransferLearning.Heads;
using TransferLearning.Training;
using static TorchSharp.torch;

namespace TransferLearning.Core.Tests.Training;

public class MemoryTests
{
    /// <summary>Native tensors still alive on this thread after a fit of <paramref name="epochs"/> epochs.</summary>
    private static long LiveTensorsAfterFit(int epochs, bool featuresOnly, bool bf16)
    {
        using var backbone = TestBackbones.Tiny();
        if (featuresOnly)
        {
            backbone.Freeze();
        }

        using var head = HeadFactory.Create(8, 2, new HeadOptions { HiddenUnits = [4] });
        manual_seed(3);
        var inputs = featuresOnly ? rand(16, 8) : rand(16, 3, 32, 32);
        var labels = tensor(Enumerable.Range(0, 16).Select(i => (long)(i % 2)).ToArray());
        var before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        using (var source = new TensorBatchSource(inputs.clone(), labels.clone(), 4, true, 1))
        {
            var options = new TrainingOptions { BatchSize = 4, EarlyStopping = new EarlyStopping(History.Loss, patience: 100), Bf16Backbone = bf16 };
            new Trainer(backbone, head, CPU, options, null).Fit(source, source, featuresOnly, epochs, new History(), null, CancellationToken.None);
        }

        GC.Collect();
        GC.WaitForPendingFinalizers();
        return DisposeScopeManager.Statistics.ThreadTotalLiveCount - before;
    }

    [Theory]
    [InlineData(true, false)]
    [InlineData(false, false)]
    [InlineData(false, true)] // the backbone trained in bf16 with float masters (snapshots of the best epoch included)
    public void Fit_MoreEpochs_NoMoreLiveNativeTensors(bool featuresOnly, bool bf16)
    {
        var afterOne = LiveTensorsAfterFit(1, featuresOnly, bf16);
        var afterFive = LiveTensorsAfterFit(5, featuresOnly, bf16);
        Assert.Equal(afterOne, afterFive);
    }
}
