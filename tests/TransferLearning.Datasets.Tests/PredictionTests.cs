namespace TransferLearning.Datasets.Tests;

public sealed class PredictionTests
{
    private static readonly string[] Classes = ["a", "b", "c", "d", "e"];

    [Fact]
    public void FromProbabilities_TopIsMostProbableFirst_TiesInClassOrder()
    {
        var p = Prediction.FromProbabilities(Classes, [0.1f, 0.25f, 0.05f, 0.25f, 0.35f], topK: 4, source: "x.jpg");

        Assert.Equal("e", p.Label);
        Assert.Equal(4, p.Index);
        Assert.Equal(0.35f, p.Probability);
        Assert.Equal([4, 1, 3, 0], p.Top.Select(t => t.Index));
        Assert.Equal(["e", "b", "d", "a"], p.Top.Select(t => t.Label));
        Assert.Equal([0.1f, 0.25f, 0.05f, 0.25f, 0.35f], p.Probabilities);
        Assert.Equal("x.jpg", p.Source);
    }

    [Fact]
    public void FromProbabilities_TopKAboveClassCount_ListsEveryClass()
    {
        var p = Prediction.FromProbabilities(["x", "y"], [0.5f, 0.5f], topK: 10);

        Assert.Equal([0, 1], p.Top.Select(t => t.Index));
        Assert.Null(p.Source);
    }

    [Fact]
    public void FromProbabilities_CopiesTheProbabilities()
    {
        float[] row = [0.2f, 0.8f];
        var p = Prediction.FromProbabilities(["x", "y"], row, topK: 1);
        row[0] = 1;

        Assert.Equal(0.2f, p.Probabilities[0]);
    }

    [Fact]
    public void FromProbabilities_RejectsBadArguments()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => Prediction.FromProbabilities(Classes, new float[5], topK: 0));
        var ex = Assert.Throws<ArgumentException>(() => Prediction.FromProbabilities(Classes, new float[4], topK: 1));
        Assert.Contains("5 classes", ex.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => Prediction.FromProbabilities([], [], topK: 1));
    }
}
