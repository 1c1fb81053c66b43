using SixLabors.ImageSharp.PixelFormats;
using TransferLearning.Datasets.Decoding;

namespace TransferLearning.Datasets.Tests.Decoding;

public sealed class BilinearTests
{
    private static byte[] Row(params byte[] reds) => [.. reds.SelectMany(r => new byte[] { r, 0, 0 })];

    private static byte[] Reds(byte[] rgb) => [.. rgb.Where((_, i) => i % 3 == 0)];

    [Fact]
    public void Resize_Upscale_MatchesTfImageResizeHalfPixel()
    {
        // tf.image.resize([[0, 255]], [1, 4]) == [0, 63.75, 191.25, 255]
        var dst = new byte[12];
        Bilinear.Resize(Row(0, 255), 2, 0, 0, 2, 1, dst, 4, 1);
        Assert.Equal([0, 64, 191, 255], Reds(dst));
    }

    [Fact]
    public void Resize_Downscale_SamplesBetweenPixelsWithoutAntialiasing()
    {
        // tf.image.resize([[0, 100, 200, 255]], [1, 2]) == [50, 227.5]
        var dst = new byte[6];
        Bilinear.Resize(Row(0, 100, 200, 255), 4, 0, 0, 4, 1, dst, 2, 1);
        Assert.Equal([50, 228], Reds(dst));
    }

    [Fact]
    public void Resize_Window_ReadsOnlyTheCrop()
    {
        var dst = new byte[6];
        Bilinear.Resize(Row(9, 10, 20, 9), 4, 1, 0, 2, 1, dst, 2, 1);
        Assert.Equal([10, 20], Reds(dst));
    }

    [Fact]
    public void ToChw_LargePhoto_IsReducedWithoutLosingSolidColour()
    {
        using var img = new SixLabors.ImageSharp.Image<Rgb24>(1200, 900, new Rgb24(12, 34, 56));
        var v = Chw.Of(img, new InputSpec(8, 8, 0, 255).WithResizeMode(ResizeMode.CenterCrop));
        Assert.All(v[..64], x => Assert.Equal(12f, x));
        Assert.All(v[128..], x => Assert.Equal(56f, x));
    }

    [Fact]
    public void ToChw_LargeStripes_AreAveragedNotAliased()
    {
        // 1-pixel black/white columns: plain bilinear at a 100x reduction would pick nearly pure black or white;
        // the antialiasing pre-reduction averages them to mid-grey.
        using var img = new SixLabors.ImageSharp.Image<Rgb24>(800, 800);
        for (var y = 0; y < 800; y++)
        {
            for (var x = 0; x < 800; x++)
            {
                img[x, y] = x % 2 == 0 ? new Rgb24(0, 0, 0) : new Rgb24(255, 255, 255);
            }
        }

        var v = Chw.Of(img, new InputSpec(8, 8, 0, 255));
        Assert.All(v, x => Assert.InRange(x, 100f, 155f));
    }
}
