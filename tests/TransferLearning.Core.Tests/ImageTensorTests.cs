using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using TorchSharp;
using TransferLearning.Datasets;
using TransferLearning.Datasets.Decoding;
using TransferLearning.Datasets.Pipeline;

namespace TransferLearning.Core.Tests;

public sealed class ImageTensorTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private static float[] Pixels(string path, InputSpec spec)
    {
        var values = new float[3 * spec.Width * spec.Height];
        ImagePixels.DecodeFile(path, spec, values);
        return values;
    }

    [Fact]
    public void FromFile_ReturnsFloat32ChwTensorWithTheImagePixels()
    {
        var file = TestImages.SolidPng(_dir.Combine("p.png"), 9, 7, new Rgb24(255, 0, 128));
        var spec = InputSpec.ImageNet(6).WithSize(6, 5);
        using var t = ImageTensor.FromFile(file, spec);
        Assert.Equal([3L, 5, 6], t.shape);
        Assert.Equal(torch.ScalarType.Float32, t.dtype);
        Assert.Equal(Pixels(file, spec), t.data<float>().ToArray());
    }

    [Fact]
    public void FromStream_AndFromImage_MatchFromFile()
    {
        var file = TestImages.SolidJpeg(_dir.Combine("p.jpg"), 20, 16, new Rgb24(10, 200, 90));
        var spec = InputSpec.ImageNet(8);
        var fromFile = Pixels(file, spec);
        using (var stream = File.OpenRead(file))
        using (var t = ImageTensor.FromStream(stream, spec))
        {
            Assert.Equal(fromFile, t.data<float>().ToArray());
        }

        using var img = Image.Load<Rgb24>(file);
        using var t2 = ImageTensor.FromImage(img, spec);
        Assert.Equal(fromFile, t2.data<float>().ToArray());
    }

    [Fact]
    public void FromBatch_AndLabelsOf_CopyTheBatchPixelsAndLabels()
    {
        var colours = new[] { new Rgb24(200, 0, 0), new Rgb24(0, 0, 200) };
        for (var i = 0; i < 3; i++)
        {
            TestImages.SolidPng(_dir.Combine(i % 2 == 0 ? "a" : "b", $"{i}.png"), 5, 5, colours[i % 2]);
        }

        var spec = InputSpec.ImageNet(4);
        using var loader = new ImageLoader(ImageFolder.Load(_dir.Path), spec, new ImageLoaderOptions { BatchSize = 8 });
        using var batch = loader.Batches().Single();
        using var images = ImageTensor.FromBatch(batch);
        using var labels = ImageTensor.LabelsOf(batch);

        Assert.Equal([3L, 3, 4, 4], images.shape);
        Assert.Equal(batch.Pixels.ToArray(), images.data<float>().ToArray());
        Assert.Equal(torch.ScalarType.Int64, labels.dtype);
        Assert.Equal(batch.Labels.Select(l => (long)l), labels.data<long>().ToArray());
        for (var k = 0; k < batch.Count; k++)
        {
            Assert.Equal(Pixels(batch.Paths[k], spec), images[k].data<float>().ToArray());
        }
    }

    [Fact]
    public void FromBatch_ChannelsLastBatch_SameValuesWithChannelsLastStrides()
    {
        for (var i = 0; i < 3; i++)
        {
            using var image = new Image<Rgb24>(7, 5);
            for (var y = 0; y < 5; y++)
            {
                for (var x = 0; x < 7; x++)
                {
                    image[x, y] = new Rgb24((byte)(30 * x + i), (byte)(40 * y), (byte)(11 * x * y));
                }
            }

            var file = _dir.Combine(i % 2 == 0 ? "a" : "b", $"{i}.png");
            Directory.CreateDirectory(Path.GetDirectoryName(file)!);
            image.SaveAsPng(file);
        }

        var spec = InputSpec.ImageNet(6).WithSize(6, 5);
        var folder = ImageFolder.Load(_dir.Path);
        using var planar = new ImageLoader(folder, spec, new ImageLoaderOptions { BatchSize = 8 });
        using var interleaved = new ImageLoader(folder, spec, new ImageLoaderOptions { BatchSize = 8, ChannelsLast = true });
        using var planarBatch = planar.Batches().Single();
        using var interleavedBatch = interleaved.Batches().Single();
        using var expected = ImageTensor.FromBatch(planarBatch);
        using var actual = ImageTensor.FromBatch(interleavedBatch);

        Assert.True(interleavedBatch.ChannelsLast);
        Assert.Equal([3L, 3, 5, 6], actual.shape);
        Assert.Equal([3L * 5 * 6, 1, 6 * 3, 3], actual.stride());
        using var values = actual.contiguous();
        Assert.Equal(expected.data<float>().ToArray(), values.data<float>().ToArray());
    }
}
