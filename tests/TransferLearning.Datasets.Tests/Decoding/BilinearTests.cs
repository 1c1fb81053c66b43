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

    [Theory]
    [InlineData(1, 0, 4, 1)] // one column past the right edge
    [InlineData(0, 1, 4, 2)] // one row past the bottom
    [InlineData(-1, 0, 2, 1)]
    public void Resize_WindowOutsideTheSource_Throws(int x0, int y0, int cropW, int cropH)
    {
        var src = new byte[4 * 2 * 3]; // 4 × 2 pixels
        var dst = new byte[8 * 8 * 3];

        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => Bilinear.Resize(src, 4, x0, y0, cropW, cropH, dst, 8, 8));

        Assert.StartsWith($"The window {cropW}×{cropH} at ({x0}, {y0}) is not inside a source of 4 pixels per row and 24 bytes.", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(320, 240, 0, 0, 320, 240, 224, 224)]
    [InlineData(300, 200, 50, 0, 200, 200, 224, 224)]
    [InlineData(97, 61, 3, 5, 90, 50, 31, 47)]
    [InlineData(40, 30, 0, 0, 40, 30, 113, 77)]
    [InlineData(5, 1, 1, 0, 3, 1, 7, 3)]
    public void Resize_RandomImage_SameBytesAsInterpolatingTheFourNeighboursDirectly(int srcW, int srcH, int x0, int y0, int cropW, int cropH, int dstW, int dstH)
    {
        var src = new byte[srcW * srcH * 3];
        new Random(srcW * 31 + dstH).NextBytes(src);
        var dst = new byte[dstW * dstH * 3];

        Bilinear.Resize(src, srcW, x0, y0, cropW, cropH, dst, dstW, dstH);

        Assert.Equal(Direct(src, srcW, x0, y0, cropW, cropH, dstW, dstH), dst);
    }

    /// <summary>The textbook form: each output value from its four neighbours, across then down, in float.</summary>
    private static byte[] Direct(byte[] src, int srcW, int x0, int y0, int cropW, int cropH, int dstW, int dstH)
    {
        var dst = new byte[dstW * dstH * 3];
        double sx = (double)cropW / dstW, sy = (double)cropH / dstH;
        for (var y = 0; y < dstH; y++)
        {
            var iny = ((y + 0.5) * sy) - 0.5;
            var ly = (float)(iny - Math.Floor(iny));
            int top = y0 + Math.Max((int)Math.Floor(iny), 0), bottom = y0 + Math.Min((int)Math.Ceiling(iny), cropH - 1);
            for (var x = 0; x < dstW; x++)
            {
                var inx = ((x + 0.5) * sx) - 0.5;
                var lx = (float)(inx - Math.Floor(inx));
                int left = x0 + Math.Max((int)Math.Floor(inx), 0), right = x0 + Math.Min((int)Math.Ceiling(inx), cropW - 1);
                for (var c = 0; c < 3; c++)
                {
                    float a = src[(((top * srcW) + left) * 3) + c], b = src[(((top * srcW) + right) * 3) + c];
                    float d = src[(((bottom * srcW) + left) * 3) + c], e = src[(((bottom * srcW) + right) * 3) + c];
                    var t = a + ((b - a) * lx);
                    var u = d + ((e - d) * lx);
                    dst[(((y * dstW) + x) * 3) + c] = (byte)(t + ((u - t) * ly) + 0.5f);
                }
            }
        }

        return dst;
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
