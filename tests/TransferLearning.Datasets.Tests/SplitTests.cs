namespace TransferLearning.Datasets.Tests;

public sealed class SplitTests
{
    private static ImageDataset Synthetic(params int[] perClass)
    {
        var classes = perClass.Select((_, i) => "c" + i).ToList();
        var samples = new List<ImageSample>();
        for (var c = 0; c < perClass.Length; c++)
        {
            for (var i = 0; i < perClass[c]; i++)
            {
                samples.Add(new ImageSample($"/data/c{c}/img{i:D4}.jpg", c));
            }
        }

        return new ImageDataset(classes, samples);
    }

    [Fact]
    public void Split_SeventyThirty_IsStratifiedPerClass()
    {
        var data = Synthetic(633, 898, 641, 699, 799); // tf_flowers class sizes
        var split = data.Split(0.7, seed: 123);
        Assert.Equal([443, 629, 449, 489, 559], split.Train.CountPerClass());
        Assert.Equal([190, 269, 192, 210, 240], split.Validation.CountPerClass());
        Assert.Empty(split.Test.Samples);
        Assert.Empty(split.Train.Samples.Select(s => s.Path).Intersect(split.Validation.Samples.Select(s => s.Path)));
    }

    [Fact]
    public void Split_SameSeed_SameSplit_DifferentSeed_DifferentSplit()
    {
        var data = Synthetic(50, 60);
        var a = data.Split(0.7, seed: 7).Validation.Samples.Select(s => s.Path).ToList();
        var b = data.Split(0.7, seed: 7).Validation.Samples.Select(s => s.Path).ToList();
        var c = data.Split(0.7, seed: 8).Validation.Samples.Select(s => s.Path).ToList();
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);
    }

    [Fact]
    public void Split_IndependentOfInputOrder()
    {
        var data = Synthetic(20, 20);
        var reversed = new ImageDataset(data.Classes, [.. data.Samples.Reverse()]);
        Assert.Equal(
            data.Split(0.7, seed: 1).Train.Samples.Select(s => s.Path),
            reversed.Split(0.7, seed: 1).Train.Samples.Select(s => s.Path));
    }

    [Fact]
    public void Split_IsPinnedAcrossRuntimes()
    {
        // SplitMix64 is fully specified: these exact picks must never change between runs, machines or .NET versions.
        var data = Synthetic(10);
        var val = data.Split(0.7, seed: 42).Validation.Samples.Select(s => Path.GetFileName(s.Path));
        Assert.Equal(PinnedValidation, val);
    }

    [Fact]
    public void Split_ThreeWay_PutsRemainderInTest()
    {
        var split = Synthetic(100, 40).Split(0.7, 0.15, seed: 3);
        Assert.Equal([70, 28], split.Train.CountPerClass());
        Assert.Equal([15, 6], split.Validation.CountPerClass());
        Assert.Equal([15, 6], split.Test.CountPerClass());
    }

    [Theory]
    [InlineData(1.2, 0.0)]
    [InlineData(-0.1, 0.5)]
    [InlineData(0.7, 0.4)]
    [InlineData(double.NaN, 0.1)]
    public void Split_BadFractions_Throw(double train, double validation) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => Synthetic(10, 10).Split(train, validation, 1));

    [Fact]
    public void ImageDataset_LabelOutOfRange_Throws()
    {
        var ex = Assert.Throws<ArgumentException>(() => new ImageDataset(["a"], [new ImageSample("/x.jpg", 1)]));
        Assert.StartsWith("Sample '/x.jpg' has label 1, outside 0..0.", ex.Message, StringComparison.Ordinal);
    }

    private static readonly string[] PinnedValidation = ["img0000.jpg", "img0008.jpg", "img0009.jpg"];
}
