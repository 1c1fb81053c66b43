using TransferLearning.Datasets.Pipeline;

namespace TransferLearning.Datasets.Tests;

public sealed class RealDataTests
{
    [Fact]
    [Trait("Category", "RealData")]
    public void ShippedFlowerPhotos_LoadSplitAndBatch()
    {
        var root = RepoPaths.SamplePhotos;
        Assert.True(Directory.Exists(root), $"The sample's flower photos are committed at {root}; restore them with git checkout.");
        var folder = ImageFolder.Load(root);
        Assert.Equal(["daisy", "dandelion", "roses", "sunflowers", "tulips"], folder.Classes);
        Assert.True(folder.Count >= 150, $"only {folder.Count} photos");

        // A small stratified slice: 8 photos per class.
        var slice = new ImageDataset(folder.Classes, [.. folder.Samples.GroupBy(s => s.Label).SelectMany(g => g.Take(8))]);
        var split = slice.Split(0.75, seed: 42);
        Assert.Equal([6, 6, 6, 6, 6], split.Train.CountPerClass());
        Assert.Equal([2, 2, 2, 2, 2], split.Validation.CountPerClass());

        using var loader = new ImageLoader(split.Train, InputSpec.ImageNet(224), new ImageLoaderOptions { BatchSize = 16, Shuffle = true, Seed = 1 });
        var sizes = new List<int>();
        foreach (var batch in loader.Batches())
        {
            using (batch)
            {
                sizes.Add(batch.Count);
                Assert.Equal((224, 224), (batch.Width, batch.Height));
                var values = batch.Pixels.ToArray();
                Assert.Equal(batch.Count * 3 * 224 * 224, values.Length);
                Assert.All(values, v => Assert.InRange(v, -2.2f, 2.7f)); // ImageNet-normalised range
                Assert.True(values.Distinct().Count() > 300, "real photos have varied pixels (at most 3 x 256 distinct values)");
            }
        }

        Assert.Equal([16, 14], sizes);
        Assert.Empty(loader.Skipped);
    }
}
