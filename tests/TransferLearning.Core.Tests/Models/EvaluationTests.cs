using TransferLearning.Models;

namespace TransferLearning.Core.Tests.Models;

public class EvaluationTests
{
    [Fact]
    public void Metrics_KnownConfusionMatrix_ComputedByHand()
    {
        // rows = truth, columns = prediction
        var confusion = new int[,] { { 5, 1, 0 }, { 2, 3, 0 }, { 0, 0, 0 } };
        var e = new Evaluation(["a", "b", "c"], confusion, lossSum: 5.5, []);

        Assert.Equal(11, e.Count);
        Assert.Equal(8.0 / 11, e.Accuracy, 12);
        Assert.Equal(0.5, e.Loss, 12);
        Assert.Equal(5.0 / 7, e.PerClass[0].Precision, 12);
        Assert.Equal(5.0 / 6, e.PerClass[0].Recall, 12);
        Assert.Equal(2 * (5.0 / 7) * (5.0 / 6) / ((5.0 / 7) + (5.0 / 6)), e.PerClass[0].F1, 12);
        Assert.Equal(3.0 / 4, e.PerClass[1].Precision, 12);
        Assert.Equal(3.0 / 5, e.PerClass[1].Recall, 12);
        Assert.Equal(new ClassMetrics("c", 0, 0, 0, 0), e.PerClass[2]);
        Assert.Equal(6, e.PerClass[0].Support);
    }

    [Fact]
    public void FormatConfusionMatrix_TwoClasses_AlignedRows()
    {
        var e = new Evaluation(["cat", "dog"], new int[,] { { 3, 1 }, { 0, 4 } }, 0, []);
        var lines = e.FormatConfusionMatrix().TrimEnd().Split('\n').Select(l => l.TrimEnd('\r')).ToArray();

        Assert.Equal(3, lines.Length);
        Assert.Equal("true \\ predicted    cat   dog", lines[0]);
        Assert.Equal("cat                   3     1", lines[1]);
        Assert.Equal("dog                   0     4", lines[2]);
    }
}
