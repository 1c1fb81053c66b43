using TransferLearning.Datasets.Tests.Decoding;
using SixLabors.ImageSharp.PixelFormats;
using TransferLearning.Datasets.Pipeline;

namespace TransferLearning.Datasets.Tests.Pipeline;

public sealed class ImageLoaderTests : IDisposable
{
    private static readonly InputSpec Spec = new(4, 4, 0f, 255f);
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>Class c has counts[c] images; image i is a solid PNG whose red value is its global number i.</summary>
    private ImageFolder MakeFolder(params int[] counts)
    {
        var n = 0;
        for (var c = 0; c < counts.Length; c++)
        {
            for (var i = 0; i < counts[c]; i++, n++)
            {
                TestImages.SolidPng(_dir.Combine("class" + c, $"img{n:D3}.png"), 4, 4, new Rgb24((byte)n, (byte)(c * 40), 7));
            }
        }

        return ImageFolder.Load(_dir.Path);
    }

    private static int NumberOf(string path) => int.Parse(Path.GetFileNameWithoutExtension(path)[3..], System.Globalization.CultureInfo.InvariantCulture);

    [Fact]
    public void Constructor_BatchTooLargeForOneArray_ThrowsSayingWhy()
    {
        var folder = MakeFolder(2, 2);

        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => new ImageLoader(folder, InputSpec.ImageNet(224), new ImageLoaderOptions { BatchSize = 1_073_741_824 }));

        Assert.Equal("options.BatchSize", ex.ParamName);
        Assert.StartsWith(
            "A batch of 1,073,741,824 images of 3 × 224 × 224 values needs 161,628,209,283,072 floats, more than one array can hold (2,147,483,591); " +
            "use a smaller batch size (at most 14,266).",
            ex.Message,
            StringComparison.Ordinal);
    }

    [Fact]
    public void Batches_BatchSizeAboveDatasetSizeTimesPrefetch_NoOverflowOneBatch()
    {
        var folder = MakeFolder(3, 2);
        // 100 × 40,000,000 images of prefetch window overflows an int.
        using var loader = new ImageLoader(folder, Spec, new ImageLoaderOptions { BatchSize = 40_000_000, PrefetchBatches = 100 });

        var sizes = loader.Batches().Select(b =>
        {
            using (b)
            {
                return b.Count;
            }
        }).ToList();

        Assert.Equal([5], sizes);
    }

    [Fact]
    public void Batches_SizesIncludeLastPartialBatch()
    {
        var folder = MakeFolder(6, 5);
        using var loader = new ImageLoader(folder, Spec, new ImageLoaderOptions { BatchSize = 4 });
        var sizes = new List<int>();
        foreach (var batch in loader.Batches())
        {
            using (batch)
            {
                sizes.Add(batch.Count);
                Assert.Equal(batch.Count * 3 * 4 * 4, batch.Pixels.Length);
                Assert.Equal((4, 4), (batch.Width, batch.Height));
                Assert.Equal(batch.Count, batch.Labels.Count);
            }
        }

        Assert.Equal([4, 4, 3], sizes);
        Assert.Equal(3, loader.BatchCount);
    }

    [Fact]
    public void Batches_DropLast_OmitsPartialBatch()
    {
        var folder = MakeFolder(6, 5);
        using var loader = new ImageLoader(folder, Spec, new ImageLoaderOptions { BatchSize = 4, DropLast = true });
        Assert.Equal([4, 4], loader.Batches().Select(b => { using (b) { return b.Count; } }));
        Assert.Equal(2, loader.BatchCount);
    }

    [Fact]
    public void Batches_ImagesLabelsAndPathsLineUp()
    {
        var folder = MakeFolder(7, 6, 5);
        using var loader = new ImageLoader(folder, Spec, new ImageLoaderOptions { BatchSize = 5, Shuffle = true, Seed = 9, DegreeOfParallelism = 3, PrefetchBatches = 1 });
        var seen = new List<string>();
        foreach (var batch in loader.Batches(epoch: 2))
        {
            using (batch)
            {
                var images = batch.Pixels.ToArray();
                var labels = batch.Labels;
                for (var k = 0; k < batch.Count; k++)
                {
                    var path = batch.Paths[k];
                    Assert.Equal(NumberOf(path), images[k * 48]); // red plane, pixel (0,0)
                    Assert.Equal(labels[k] * 40, images[(k * 48) + 16]); // green plane encodes the class
                    Assert.Equal(folder.ClassToIndex[Path.GetFileName(Path.GetDirectoryName(path))!], labels[k]);
                    seen.Add(path);
                }
            }
        }

        Assert.Equal(folder.Samples.Select(s => s.Path).Order(StringComparer.Ordinal), seen.Order(StringComparer.Ordinal));
    }

    [Fact]
    public void Batches_WithoutShuffle_KeepDatasetOrder()
    {
        var folder = MakeFolder(3, 3);
        using var loader = new ImageLoader(folder, Spec, new ImageLoaderOptions { BatchSize = 4 });
        Assert.Equal(folder.Samples.Select(s => s.Path), loader.Batches().SelectMany(b => { using (b) { return b.Paths; } }));
    }

    [Fact]
    public void Shuffle_DiffersByEpoch_ButIsReproducible()
    {
        var folder = MakeFolder(10, 10);
        using var a = new ImageLoader(folder, Spec, new ImageLoaderOptions { Shuffle = true, Seed = 1 });
        using var b = new ImageLoader(folder, Spec, new ImageLoaderOptions { Shuffle = true, Seed = 1 });
        using var c = new ImageLoader(folder, Spec, new ImageLoaderOptions { Shuffle = true, Seed = 2 });
        Assert.Equal(a.EpochOrder(0), b.EpochOrder(0));
        Assert.Equal(a.EpochOrder(3), b.EpochOrder(3));
        Assert.NotEqual(a.EpochOrder(0), a.EpochOrder(1));
        Assert.NotEqual(a.EpochOrder(0), c.EpochOrder(0));
        Assert.Equal(Enumerable.Range(0, 20), a.EpochOrder(1).Order());

        var delivered = a.Batches(1).SelectMany(x => { using (x) { return x.Paths; } }).ToList();
        Assert.Equal(a.EpochOrder(1).Select(i => folder.Samples[i].Path), delivered);
    }

    [Fact]
    public void EpochOrder_IsPinnedAcrossRuntimes()
    {
        using var loader = new ImageLoader(new ImageDataset(["a"], [.. Enumerable.Range(0, 8).Select(i => new ImageSample($"/{i}.jpg", 0))]), Spec,
            new ImageLoaderOptions { Shuffle = true, Seed = 42 });
        Assert.Equal(string.Join(",", PinnedEpoch1), string.Join(",", loader.EpochOrder(1)));
    }

    [Fact]
    public void Batches_Cancelled_ThrowsOperationCanceled()
    {
        var folder = MakeFolder(10, 10);
        using var loader = new ImageLoader(folder, Spec, new ImageLoaderOptions { BatchSize = 2 });
        using var cts = new CancellationTokenSource();
        var count = 0;
        Assert.ThrowsAny<OperationCanceledException>(() =>
        {
            foreach (var batch in loader.Batches(0, cts.Token))
            {
                batch.Dispose();
                if (++count == 2)
                {
                    cts.Cancel();
                }
            }
        });
        Assert.Equal(2, count);

        // The loader is usable again afterwards.
        Assert.Equal(10, loader.Batches().Count(b => { b.Dispose(); return true; }));
    }

    [Fact]
    public async Task BatchesAsync_ReportsProgressAndCancels()
    {
        var folder = MakeFolder(5, 4);
        using var loader = new ImageLoader(folder, Spec, new ImageLoaderOptions { BatchSize = 4 });
        var progress = new ListProgress<LoaderProgress>();
        var total = 0;
        await foreach (var batch in loader.BatchesAsync(3, progress))
        {
            using (batch)
            {
                total += batch.Count;
            }
        }

        Assert.Equal(9, total);
        Assert.Equal(
            [new LoaderProgress(3, 1, 4, 9, 0), new LoaderProgress(3, 2, 8, 9, 0), new LoaderProgress(3, 3, 9, 9, 0)],
            progress.Items);

        using var cts = new CancellationTokenSource();
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var batch in loader.BatchesAsync(0, null, cts.Token))
            {
                batch.Dispose();
            }
        });
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Batches_ChannelsLast_EachPixelsChannelsTogetherWithThePlanarValues(bool cacheDecoded)
    {
        for (var n = 0; n < 3; n++)
        {
            using var image = new SixLabors.ImageSharp.Image<Rgb24>(4, 4);
            for (var y = 0; y < 4; y++)
            {
                for (var x = 0; x < 4; x++)
                {
                    image[x, y] = new Rgb24((byte)((50 * x) + n), (byte)(60 * y), (byte)((x * y) + 100));
                }
            }

            var file = _dir.Combine($"c{n % 2}", $"img{n:D3}.png");
            Directory.CreateDirectory(Path.GetDirectoryName(file)!);
            SixLabors.ImageSharp.ImageExtensions.SaveAsPng(image, file);
        }

        var folder = ImageFolder.Load(_dir.Path);
        var spec = new InputSpec(4, 4, 0f, 1f, ChannelOrder.Bgr, [0.1f, 0.2f, 0.3f], [0.5f, 0.25f, 2f]);
        using var planar = new ImageLoader(folder, spec, new ImageLoaderOptions { BatchSize = 3 });
        using var interleaved = new ImageLoader(folder, spec, new ImageLoaderOptions { BatchSize = 3, ChannelsLast = true, CacheDecoded = cacheDecoded });
        using var expected = planar.Batches().Single();
        foreach (var epoch in new[] { 0, 1 }) // with the cache, the second epoch normalises cached pixels
        {
            using var actual = interleaved.Batches(epoch).Single();
            Assert.False(expected.ChannelsLast);
            Assert.True(actual.ChannelsLast);
            var (p, q) = (expected.Pixels.ToArray(), actual.Pixels.ToArray());
            for (var k = 0; k < 3; k++)
            {
                for (var c = 0; c < 3; c++)
                {
                    for (var i = 0; i < 16; i++)
                    {
                        Assert.Equal(p[(k * 48) + (c * 16) + i], q[(k * 48) + (i * 3) + c]);
                    }
                }
            }
        }
    }

    [Fact]
    public void CacheDecoded_SecondEpochReadsNoFiles()
    {
        var folder = MakeFolder(4, 4);
        using var loader = new ImageLoader(folder, Spec, new ImageLoaderOptions { BatchSize = 3, CacheDecoded = true, Shuffle = true });
        var first = loader.Batches(0).SelectMany(b => { using (b) { return b.Pixels.ToArray(); } }).Sum();
        Assert.Equal(8, loader.CachedCount);
        foreach (var s in folder.Samples)
        {
            File.Delete(s.Path);
        }

        var second = loader.Batches(1).Select(b => { using (b) { return (b.Count, Sum: b.Pixels.ToArray().Sum()); } }).ToList();
        Assert.Equal(8, second.Sum(x => x.Count));
        Assert.Equal(first, second.Sum(x => x.Sum), 1);
    }

    [Fact]
    public void Batches_BadImage_FailPolicy_ThrowsNamingFile()
    {
        var folder = MakeFolder(4, 4);
        var victim = folder.Samples[5].Path;
        File.WriteAllBytes(victim, TestImages.NoiseJpegBytes(16, 16, 1)[..300]);
        using var loader = new ImageLoader(folder, Spec, new ImageLoaderOptions { BatchSize = 2 });
        var ex = Assert.Throws<InvalidImageException>(() => loader.Batches().ToList().ForEach(b => b.Dispose()));
        Assert.Equal(victim, ex.FilePath);
    }

    [Fact]
    public void Batches_BadImages_SkipPolicy_LeavesThemOutAndReports()
    {
        var folder = MakeFolder(4, 4);
        var truncated = folder.Samples[1].Path;
        var deleted = folder.Samples[6].Path;
        File.WriteAllBytes(truncated, TestImages.NoiseJpegBytes(16, 16, 1)[..300]);
        File.Delete(deleted);
        var progress = new ListProgress<LoaderProgress>();
        using var loader = new ImageLoader(folder, Spec, new ImageLoaderOptions { BatchSize = 4, BadImages = BadImagePolicy.Skip });
        var paths = loader.Batches(0, progress).SelectMany(b => { using (b) { return b.Paths; } }).ToList();
        Assert.Equal(6, paths.Count);
        Assert.DoesNotContain(truncated, paths);
        Assert.DoesNotContain(deleted, paths);
        Assert.Equal([truncated, deleted], loader.Skipped.Select(s => s.Path));
        Assert.Equal("the JPEG data is truncated (it ends before the end-of-image marker)", loader.Skipped[0].Reason);
        Assert.StartsWith("the file could not be read (FileNotFoundException", loader.Skipped[1].Reason, StringComparison.Ordinal);
        Assert.Equal(2, progress.Items[^1].Skipped);
    }

    [Fact]
    public void Batches_PathIsDirectory_SkippedWithReason()
    {
        TestImages.SolidPng(_dir.Combine("a.png"), 4, 4, new Rgb24(1, 2, 3));
        Directory.CreateDirectory(_dir.Combine("folder.jpg"));
        var data = new ImageDataset(["x"], [new ImageSample(_dir.Combine("a.png"), 0), new ImageSample(_dir.Combine("folder.jpg"), 0)]);
        using var loader = new ImageLoader(data, Spec, new ImageLoaderOptions { BadImages = BadImagePolicy.Skip });
        var batches = loader.Batches().ToList();
        Assert.Single(batches);
        Assert.Equal(1, batches[0].Count);
        batches[0].Dispose();
        Assert.Equal("the path is a directory, not a file", Assert.Single(loader.Skipped).Reason);
    }

    [Fact]
    public void Batches_AllImagesBadInBatch_BatchIsOmitted()
    {
        var folder = MakeFolder(2, 2);
        File.WriteAllText(folder.Samples[0].Path, "x");
        File.WriteAllText(folder.Samples[1].Path, "y");
        using var loader = new ImageLoader(folder, Spec, new ImageLoaderOptions { BatchSize = 2, BadImages = BadImagePolicy.Skip });
        var batches = loader.Batches().ToList();
        Assert.Equal([1], batches.Select(b => b.Index));
        batches.ForEach(b => b.Dispose());
    }

    [Fact]
    public void Batches_SameValuesAsImagePixels()
    {
        var folder = MakeFolder(2, 2);
        var spec = InputSpec.ImageNet(3);
        using var loader = new ImageLoader(folder, spec, new ImageLoaderOptions { BatchSize = 4 });
        using var batch = loader.Batches().Single();
        var all = batch.Pixels.ToArray();
        for (var k = 0; k < 4; k++)
        {
            Assert.Equal(Chw.Of(batch.Paths[k], spec), all[(k * 27)..((k + 1) * 27)]);
        }
    }

    [Fact]
    public void Batches_AbandonedEarly_LoaderCanRunAgain()
    {
        var folder = MakeFolder(6, 6);
        using var loader = new ImageLoader(folder, Spec, new ImageLoaderOptions { BatchSize = 2, PrefetchBatches = 3 });
        using (var first = loader.Batches().First())
        {
            Assert.Equal(2, first.Count);
        }

        Assert.Equal(12, loader.Batches().Sum(b => { using (b) { return b.Count; } }));
    }

    [Fact]
    public void Batches_EmptyDataset_YieldsNothing()
    {
        using var loader = new ImageLoader(new ImageDataset(["a", "b"], []), Spec);
        Assert.Empty(loader.Batches());
        Assert.Equal(0, loader.BatchCount);
    }

    [Fact]
    public void Batches_EnumeratedTwiceAtOnce_Throws()
    {
        var folder = MakeFolder(2, 2);
        using var loader = new ImageLoader(folder, Spec, new ImageLoaderOptions { BatchSize = 1 });
        using var e = loader.Batches().GetEnumerator();
        Assert.True(e.MoveNext());
        e.Current.Dispose();
        var ex = Assert.Throws<InvalidOperationException>(() => loader.Batches().First());
        Assert.StartsWith("This ImageLoader is already enumerating an epoch", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Pixels_AfterDispose_Throws()
    {
        var folder = MakeFolder(2, 2);
        using var loader = new ImageLoader(folder, Spec);
        var batch = loader.Batches().Single();
        Assert.Equal(4 * 3 * 4 * 4, batch.Pixels.Length);
        batch.Dispose();
        batch.Dispose(); // idempotent

        Assert.Throws<ObjectDisposedException>(() => batch.Pixels.Length);
    }

    private static readonly int[] PinnedEpoch1 = [6, 7, 2, 0, 5, 3, 4, 1];
}
