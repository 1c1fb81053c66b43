using TransferLearning.Datasets.Tests.Decoding;
using System.Buffers;
using TransferLearning.Datasets.Decoding;
using TransferLearning.Datasets.Pipeline;

namespace TransferLearning.Datasets.Tests.Pipeline;

/// <summary>
/// The decode path reads files and resizes pixels into buffers rented from <see cref="ArrayPool{T}.Shared"/>: these
/// tests check that a returned buffer never shows up in data that is still in use (batches, the decoded cache).
/// </summary>
public sealed class PooledBufferTests : IDisposable
{
    private static readonly InputSpec Spec = InputSpec.ImageNet(24);
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>Noise JPEGs of different sizes (some larger than the target, some smaller), two classes.</summary>
    private ImageFolder MakeNoiseFolder(int count)
    {
        for (var i = 0; i < count; i++)
        {
            var size = 16 + (i * 7 % 60);
            File.WriteAllBytes(TestImages.Ensure(_dir.Combine("class" + (i % 2), $"img{i:D3}.jpg")), TestImages.NoiseJpegBytes(size, size + (i % 5), seed: i));
        }

        return ImageFolder.Load(_dir.Path);
    }

    private static float[] Values(ImageBatch batch, int k)
    {
        var chw = 3 * Spec.Width * Spec.Height;
        return batch.Pixels[(k * chw)..((k + 1) * chw)].ToArray();
    }

    [Fact]
    public void Batches_EarlierBatchesStillHeld_KeepTheirValuesWhileLaterDecodesReuseBuffers()
    {
        var folder = MakeNoiseFolder(24);
        var expected = folder.Samples.ToDictionary(s => s.Path, s => Chw.Of(s.Path, Spec));
        using var loader = new ImageLoader(folder, Spec, new ImageLoaderOptions { BatchSize = 4, Shuffle = true, Seed = 3, DegreeOfParallelism = 2, PrefetchBatches = 1 });

        var held = loader.Batches(0).ToList();
        var secondEpoch = loader.Batches(1).ToList(); // decodes everything again through the same pooled buffers
        try
        {
            Assert.Equal(6, held.Count);
            foreach (var batch in held.Concat(secondEpoch))
            {
                for (var k = 0; k < batch.Count; k++)
                {
                    Assert.Equal(expected[batch.Paths[k]], Values(batch, k));
                }
            }
        }
        finally
        {
            held.Concat(secondEpoch).ToList().ForEach(b => b.Dispose());
        }
    }

    [Fact]
    public void CacheDecoded_OtherDecodesInBetween_CachedPixelsUnchanged()
    {
        var folder = MakeNoiseFolder(12);
        var expected = folder.Samples.ToDictionary(s => s.Path, s => Chw.Of(s.Path, Spec));
        using var cached = new ImageLoader(folder, Spec, new ImageLoaderOptions { BatchSize = 4, CacheDecoded = true });
        cached.Batches(0).ToList().ForEach(b => b.Dispose());
        Assert.Equal(12, cached.CachedCount);

        // Other images through the uncached path: they rent and return the same pool's buffers.
        var others = new TempDir();
        try
        {
            for (var i = 0; i < 8; i++)
            {
                var path = others.Combine($"other{i}.jpg");
                File.WriteAllBytes(TestImages.Ensure(path), TestImages.NoiseJpegBytes(40, 40, seed: 100 + i));
                _ = Chw.Of(path, Spec);
            }
        }
        finally
        {
            others.Dispose();
        }

        foreach (var s in folder.Samples)
        {
            File.Delete(s.Path); // the second epoch can only come from the cache
        }

        foreach (var batch in cached.Batches(1))
        {
            using (batch)
            {
                for (var k = 0; k < batch.Count; k++)
                {
                    Assert.Equal(expected[batch.Paths[k]], Values(batch, k));
                }
            }
        }
    }

    [Fact]
    public void ToChw_ImagesDecodedInTurn_EachGivesTheSameValuesEveryTime()
    {
        var large = _dir.Combine("large.jpg");
        var small = _dir.Combine("small.png");
        File.WriteAllBytes(TestImages.Ensure(large), TestImages.NoiseJpegBytes(300, 200, seed: 1));
        TestImages.SolidPng(small, 10, 10, new SixLabors.ImageSharp.PixelFormats.Rgb24(200, 10, 30));

        var largeFirst = Chw.Of(large, Spec);
        var smallFirst = Chw.Of(small, Spec);
        var again = new float[3 * Spec.Width * Spec.Height];
        ImagePixels.DecodeFile(large, Spec, again);

        Assert.Equal(largeFirst, Chw.Of(large, Spec));
        Assert.Equal(smallFirst, Chw.Of(small, Spec));
        Assert.Equal(largeFirst, again);
        Assert.NotEqual(largeFirst, smallFirst);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(1000)]
    [InlineData(65_536)] // exactly a pool bucket size
    [InlineData(90_001)] // above the large-object threshold
    public void RentFile_VariousSizes_ReturnsTheFileBytesAndLength(int size)
    {
        var bytes = new byte[size];
        new Random(size).NextBytes(bytes);
        var path = _dir.Combine($"blob{size}.bin");
        File.WriteAllBytes(TestImages.Ensure(path), bytes);

        var rented = ImageDecoding.RentFile(path, out var length);
        try
        {
            Assert.Equal(size, length);
            Assert.True(rented.AsSpan(0, length).SequenceEqual(bytes));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    [Fact]
    public void RentFile_EmptyFile_LengthZero()
    {
        var path = _dir.Combine("empty.jpg");
        File.WriteAllBytes(TestImages.Ensure(path), []);

        var rented = ImageDecoding.RentFile(path, out var length);
        ArrayPool<byte>.Shared.Return(rented);

        Assert.Equal(0, length);
        var e = Assert.Throws<InvalidImageException>(() => Chw.Of(path, Spec));
        Assert.Equal("the file is empty (0 bytes)", e.Reason);
    }

    [Fact]
    public void RentFile_MissingFile_ThrowsInvalidImageNamingIt()
    {
        var path = _dir.Combine("missing.jpg");

        var e = Assert.Throws<InvalidImageException>(() => ImageDecoding.RentFile(path, out _));

        Assert.Equal(path, e.FilePath);
        Assert.StartsWith("the file could not be read (FileNotFoundException", e.Reason, StringComparison.Ordinal);
    }
}
