using TransferLearning.Datasets.Decoding;
using TransferLearning.Datasets.Pipeline;

namespace TransferLearning.Datasets.Tests;

/// <summary>Options objects check values when they are set, and a consumer keeps its own copy.</summary>
public sealed class OptionsTests
{
    [Theory]
    [InlineData(0)]
    [InlineData(-3)]
    public void ImageLoaderOptions_BatchSizeNotPositive_ThrowsWhenSet(int value)
    {
        var options = new ImageLoaderOptions();
        Assert.Throws<ArgumentOutOfRangeException>(() => options.BatchSize = value);
        Assert.Equal(ImageLoaderOptions.DefaultBatchSize, options.BatchSize);
    }

    [Fact]
    public void ImageLoaderOptions_UnknownBadImagePolicy_ThrowsWhenSet()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new ImageLoaderOptions { BadImages = (BadImagePolicy)7 });
        Assert.StartsWith("Unknown bad-image policy.", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ImageLoader_OptionsChangedAfterConstruction_LoaderKeepsItsCopy()
    {
        var options = new ImageLoaderOptions { BatchSize = 4, Decode = new ImageDecodeOptions { MaxPixels = 100 } };
        using var loader = new ImageLoader(new ImageDataset(["a", "b"], []), new InputSpec(4, 4), options);

        options.BatchSize = 9;
        options.Decode.MaxPixels = 5;
        loader.Options.BatchSize = 11; // a copy, too

        Assert.Equal(4, loader.Options.BatchSize);
        Assert.Equal(100, loader.Options.Decode!.MaxPixels);
    }

    [Fact]
    public void ImageDecodeOptions_MaxPixelsNotPositive_ThrowsWhenSet()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new ImageDecodeOptions { MaxPixels = 0 });
        Assert.Throws<ArgumentOutOfRangeException>(() => new ImageDecodeOptions { ResizeMode = (ResizeMode)9 });
    }
}
