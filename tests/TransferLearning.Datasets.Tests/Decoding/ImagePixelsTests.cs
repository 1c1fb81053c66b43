using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats.Gif;
using SixLabors.ImageSharp.Formats.Jpeg;
using SixLabors.ImageSharp.Formats.Png;
using SixLabors.ImageSharp.Metadata.Profiles.Exif;
using SixLabors.ImageSharp.PixelFormats;
using TransferLearning.Datasets.Decoding;

namespace TransferLearning.Datasets.Tests.Decoding;

public sealed class ImagePixelsTests : IDisposable
{
    private static readonly Rgb24 Probe = new(255, 0, 128);
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void ToChw_ImageNetSpec_AppliesRangeThenMeanStd()
    {
        var file = TestImages.SolidPng(_dir.Combine("p.png"), 4, 4, Probe);
        var v = Chw.Of(file, InputSpec.ImageNet(4));
        Assert.Equal(48, v.Length);
        Assert.Equal((1f - 0.485f) / 0.229f, TestImages.At(v, 0, 1, 1, 4, 4), 4);
        Assert.Equal((0f - 0.456f) / 0.224f, TestImages.At(v, 1, 1, 1, 4, 4), 4);
        Assert.Equal(((128f / 255f) - 0.406f) / 0.225f, TestImages.At(v, 2, 3, 3, 4, 4), 4);
    }

    [Theory]
    [InlineData(224, 224, ChannelOrder.Rgb)]
    [InlineData(7, 5, ChannelOrder.Rgb)]
    [InlineData(9, 3, ChannelOrder.Bgr)]
    public void NormalizeChannelsLast_RandomPixels_EqualsPlanarValuesInterleaved(int width, int height, ChannelOrder order)
    {
        var spec = new InputSpec(width, height, -1f, 1f, order, [0.1f, -0.2f, 0.3f], [0.5f, 0.25f, 2f]);
        var rgb = new byte[3 * width * height];
        new Random(width + height).NextBytes(rgb);
        var planar = new float[rgb.Length];
        var interleaved = new float[rgb.Length];

        ImagePixels.Normalize(rgb, spec, planar);
        ImagePixels.NormalizeChannelsLast(rgb, spec, interleaved);

        var plane = width * height;
        for (var i = 0; i < plane; i++)
        {
            for (var c = 0; c < 3; c++)
            {
                Assert.Equal(planar[(c * plane) + i], interleaved[(i * 3) + c]);
            }
        }
    }

    [Fact]
    public void ToChw_MinusOneToOneSpec_MapsZeroAndFullScale()
    {
        var file = TestImages.SolidPng(_dir.Combine("p.png"), 4, 4, Probe);
        var v = Chw.Of(file, InputSpec.MinusOneToOne(4));
        Assert.Equal(1f, TestImages.At(v, 0, 0, 0, 4, 4), 5);
        Assert.Equal(-1f, TestImages.At(v, 1, 0, 0, 4, 4), 5);
        Assert.Equal((128f / 127.5f) - 1f, TestImages.At(v, 2, 0, 0, 4, 4), 5);
    }

    [Fact]
    public void ToChw_BgrCaffeSpec_SwapsChannelsAndSubtractsMeanInTensorOrder()
    {
        var file = TestImages.SolidPng(_dir.Combine("p.png"), 4, 4, Probe);
        var spec = new InputSpec(4, 4, 0f, 255f, ChannelOrder.Bgr, [103.939f, 116.779f, 123.68f]);
        var v = Chw.Of(file, spec);
        Assert.Equal(128f - 103.939f, TestImages.At(v, 0, 2, 2, 4, 4), 3); // blue first
        Assert.Equal(0f - 116.779f, TestImages.At(v, 1, 2, 2, 4, 4), 3);
        Assert.Equal(255f - 123.68f, TestImages.At(v, 2, 2, 2, 4, 4), 3); // red last
    }

    [Fact]
    public void ToChw_CenterCrop_KeepsCentreWhileStretchKeepsEdges()
    {
        var red = new Rgb24(255, 0, 0);
        var green = new Rgb24(0, 255, 0);
        var blue = new Rgb24(0, 0, 255);
        using var img = new Image<Rgb24>(30, 10);
        for (var y = 0; y < 10; y++)
        {
            for (var x = 0; x < 30; x++)
            {
                img[x, y] = x < 10 ? red : x < 20 ? green : blue;
            }
        }

        var spec = new InputSpec(10, 10);
        var crop = Chw.Of(img, spec.WithResizeMode(ResizeMode.CenterCrop));
        for (var x = 0; x < 10; x++)
        {
            Assert.Equal(0f, TestImages.At(crop, 0, 5, x, 10, 10), 3);
            Assert.Equal(1f, TestImages.At(crop, 1, 5, x, 10, 10), 3);
        }

        var stretch = Chw.Of(img, spec);
        Assert.True(TestImages.At(stretch, 0, 5, 0, 10, 10) > 0.9f, "left edge stays red when stretched");
        Assert.True(TestImages.At(stretch, 2, 5, 9, 10, 10) > 0.9f, "right edge stays blue when stretched");
        Assert.Equal(1f, TestImages.At(stretch, 1, 5, 5, 10, 10), 2);
    }

    [Fact]
    public void ToChw_OptionsResizeMode_OverridesSpec()
    {
        using var img = TestImages.TwoColour(30, 10, 10, new Rgb24(255, 0, 0), new Rgb24(0, 255, 0));
        var v = Chw.Of(img, new InputSpec(10, 10), new ImageDecodeOptions { ResizeMode = ResizeMode.CenterCrop });
        Assert.Equal(0f, TestImages.At(v, 0, 5, 0, 10, 10), 3);
    }

    [Fact]
    public void ToChw_InMemoryImage_IsNotModified()
    {
        using var img = TestImages.TwoColour(30, 10, 10, new Rgb24(255, 0, 0), new Rgb24(0, 255, 0));
        _ = Chw.Of(img, new InputSpec(5, 5));
        Assert.Equal(30, img.Width);
        Assert.Equal(new Rgb24(255, 0, 0), img[0, 0]);
    }

    [Fact]
    public void DecodeStream_AndFromImage_MatchDecodeFile()
    {
        var file = TestImages.SolidJpeg(_dir.Combine("p.jpg"), 20, 16, new Rgb24(10, 200, 90));
        var spec = InputSpec.ImageNet(8);
        var fromFile = Chw.Of(file, spec);
        using (var stream = File.OpenRead(file))
        {
            Assert.Equal(fromFile, Chw.Of(stream, spec));
        }

        using var img = Image.Load<Rgb24>(file);
        Assert.Equal(fromFile, Chw.Of(img, spec));
    }

    [Fact]
    public void ToChw_PngNamedJpg_IsDecodedByContent()
    {
        var file = TestImages.SolidPng(_dir.Combine("really-png.jpg"), 4, 4, Probe);
        var v = Chw.Of(file, new InputSpec(4, 4));
        Assert.Equal(128f / 255f, TestImages.At(v, 2, 0, 0, 4, 4), 5);
    }

    [Fact]
    public void ToChw_GifNamedJpg_IsDecodedByContent()
    {
        var path = _dir.Combine("really-gif.jpg");
        using (var img = new Image<Rgba32>(4, 4, new Rgba32(0, 0, 255, 255)))
        {
            img.SaveAsGif(path);
        }

        var v = Chw.Of(path, new InputSpec(4, 4));
        Assert.Equal(1f, TestImages.At(v, 2, 1, 1, 4, 4), 2);
    }

    [Fact]
    public void ToChw_Greyscale_BecomesEqualRgb()
    {
        var path = _dir.Combine("grey.png");
        using (var img = new Image<L8>(4, 4, new L8(100)))
        {
            img.SaveAsPng(path, new PngEncoder { ColorType = PngColorType.Grayscale });
        }

        var v = Chw.Of(path, new InputSpec(4, 4, 0, 255));
        Assert.Equal([100f, 100f, 100f], [TestImages.At(v, 0, 0, 0, 4, 4), TestImages.At(v, 1, 0, 0, 4, 4), TestImages.At(v, 2, 0, 0, 4, 4)]);
    }

    [Fact]
    public void ToChw_Palette_DecodesColours()
    {
        var path = _dir.Combine("palette.png");
        using (var img = new Image<Rgba32>(4, 4, new Rgba32(255, 0, 0, 255)))
        {
            img.SaveAsPng(path, new PngEncoder { ColorType = PngColorType.Palette });
        }

        var v = Chw.Of(path, new InputSpec(4, 4, 0, 255));
        Assert.Equal(255f, TestImages.At(v, 0, 0, 0, 4, 4));
        Assert.Equal(0f, TestImages.At(v, 1, 0, 0, 4, 4));
    }

    [Fact]
    public void ToChw_Alpha_IsDroppedKeepingColour()
    {
        var path = _dir.Combine("alpha.png");
        using (var img = new Image<Rgba32>(4, 4, new Rgba32(255, 0, 0, 128)))
        {
            img.SaveAsPng(path, new PngEncoder { ColorType = PngColorType.RgbWithAlpha });
        }

        var v = Chw.Of(path, new InputSpec(4, 4, 0, 255));
        Assert.Equal(255f, TestImages.At(v, 0, 0, 0, 4, 4));
        Assert.Equal(0f, TestImages.At(v, 2, 0, 0, 4, 4));
    }

    [Fact]
    public void ToChw_SixteenBitPng_IsScaledToEightBit()
    {
        var path = _dir.Combine("deep.png");
        using (var img = new Image<Rgba64>(4, 4, new Rgba64(65535, 0, 32896, 65535)))
        {
            img.SaveAsPng(path, new PngEncoder { BitDepth = PngBitDepth.Bit16, ColorType = PngColorType.RgbWithAlpha });
        }

        var v = Chw.Of(path, new InputSpec(4, 4, 0, 255));
        Assert.Equal(255f, TestImages.At(v, 0, 0, 0, 4, 4));
        Assert.Equal(0f, TestImages.At(v, 1, 0, 0, 4, 4));
        Assert.Equal(128f, TestImages.At(v, 2, 0, 0, 4, 4));
    }

    [Fact]
    public void ToChw_CmykJpeg_ConvertsToRgb()
    {
        var v = Chw.Of(RepoPaths.TestData("cmyk.jpg"), new InputSpec(16, 16, 0, 255));
        Assert.True(TestImages.At(v, 0, 4, 2, 16, 16) > 200 && TestImages.At(v, 1, 4, 2, 16, 16) < 50 && TestImages.At(v, 2, 4, 2, 16, 16) < 50, "left half is red");
        Assert.True(TestImages.At(v, 0, 4, 13, 16, 16) < 50 && TestImages.At(v, 2, 4, 13, 16, 16) > 200, "right half is blue");
    }

    [Fact]
    public void ToChw_AnimatedGif_UsesFirstFrame()
    {
        var path = _dir.Combine("anim.gif");
        using (var img = new Image<Rgba32>(4, 4, new Rgba32(255, 0, 0, 255)))
        using (var second = new Image<Rgba32>(4, 4, new Rgba32(0, 0, 255, 255)))
        {
            img.Frames.AddFrame(second.Frames.RootFrame);
            img.SaveAsGif(path, new GifEncoder());
        }

        using (var check = Image.Load<Rgba32>(path))
        {
            Assert.Equal(2, check.Frames.Count); // the fixture really is animated
        }

        var v = Chw.Of(path, new InputSpec(4, 4, 0, 255));
        Assert.Equal(255f, TestImages.At(v, 0, 0, 0, 4, 4), 0);
        Assert.Equal(0f, TestImages.At(v, 2, 0, 0, 4, 4), 0);
    }

    [Fact]
    public void ToChw_ExifOrientation6_IsRotatedClockwise()
    {
        // Stored 20x10, left half red, right half blue; orientation 6 means "rotate 90° clockwise to display",
        // so the displayed image is 10x20 with red on top.
        var path = _dir.Combine("rotated.jpg");
        using (var img = TestImages.TwoColour(20, 10, 10, new Rgb24(255, 0, 0), new Rgb24(0, 0, 255)))
        {
            img.Metadata.ExifProfile = new ExifProfile();
            img.Metadata.ExifProfile.SetValue(ExifTag.Orientation, (ushort)6);
            img.SaveAsJpeg(path, new JpegEncoder { Quality = 100 });
        }

        var v = Chw.Of(path, new InputSpec(10, 20, 0, 255));
        Assert.True(TestImages.At(v, 0, 1, 8, 20, 10) > 200, "top right is red after rotation");
        Assert.True(TestImages.At(v, 2, 18, 1, 20, 10) > 200, "bottom left is blue after rotation");
    }

    [Fact]
    public void ToChw_HeaderClaims30000x30000_IsRefusedBeforeDecoding()
    {
        var path = _dir.Combine("huge.png");
        File.WriteAllBytes(path, TestImages.PngHeaderOnly(30000, 30000));
        var before = GC.GetAllocatedBytesForCurrentThread();
        var ex = Assert.Throws<InvalidImageException>(() => Chw.Of(path, new InputSpec(4, 4)));
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(path, ex.FilePath);
        Assert.Contains("30000x30000 = 900,000,000 pixels, above the limit of 50,000,000", ex.Message, StringComparison.Ordinal);
        Assert.True(allocated < 16 << 20, $"allocated {allocated} bytes");
    }

    [Fact]
    public void ToChw_MaxPixelsOption_IsConfigurable()
    {
        var path = TestImages.SolidPng(_dir.Combine("p.png"), 10, 10, Probe);
        var ex = Assert.Throws<InvalidImageException>(() => Chw.Of(path, new InputSpec(4, 4), new ImageDecodeOptions { MaxPixels = 99 }));
        Assert.Contains("above the limit of 99", ex.Reason, StringComparison.Ordinal);
        Assert.Equal(48, Chw.Of(path, new InputSpec(4, 4), new ImageDecodeOptions { MaxPixels = 100 }).Length);
    }

    [Fact]
    public void ToChw_ZeroByteFile_ThrowsNamingFile()
    {
        var path = _dir.Combine("empty.jpg");
        File.WriteAllBytes(path, []);
        var ex = Assert.Throws<InvalidImageException>(() => Chw.Of(path, new InputSpec(4, 4)));
        Assert.Equal(path, ex.FilePath);
        Assert.Equal($"'{path}' is not a usable image: the file is empty (0 bytes)", ex.Message);
    }

    [Fact]
    public void ToChw_RandomBytes_ThrowsNotRecognised()
    {
        var path = _dir.Combine("noise.jpg");
        var bytes = new byte[2000];
        new Random(3).NextBytes(bytes);
        bytes[0] = 0x42; // make sure no accidental magic number
        File.WriteAllBytes(path, bytes);
        var ex = Assert.Throws<InvalidImageException>(() => Chw.Of(path, new InputSpec(4, 4)));
        Assert.StartsWith("the content is not a recognised image format", ex.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void ToChw_TextNamedJpg_ThrowsNotRecognised()
    {
        var path = _dir.Combine("notes.jpg");
        File.WriteAllText(path, "this is not a picture\n");
        var ex = Assert.Throws<InvalidImageException>(() => Chw.Of(path, new InputSpec(4, 4)));
        Assert.StartsWith("the content is not a recognised image format", ex.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void ToChw_JpegCutInsideHeaders_Throws()
    {
        var path = _dir.Combine("cut.jpg");
        File.WriteAllBytes(path, TestImages.NoiseJpegBytes(64, 64, 1)[..120]);
        var ex = Assert.Throws<InvalidImageException>(() => Chw.Of(path, new InputSpec(4, 4)));
        Assert.Equal(path, ex.FilePath);
    }

    [Fact]
    public void ToChw_TruncatedJpeg_ThrowsTruncatedUnlessAllowed()
    {
        var path = _dir.Combine("half.jpg");
        var full = TestImages.NoiseJpegBytes(64, 64, 2);
        File.WriteAllBytes(path, full[..(full.Length / 2)]);
        var ex = Assert.Throws<InvalidImageException>(() => Chw.Of(path, new InputSpec(4, 4)));
        Assert.Equal("the JPEG data is truncated (it ends before the end-of-image marker)", ex.Reason);
        Assert.Equal(48, Chw.Of(path, new InputSpec(4, 4), new ImageDecodeOptions { AllowTruncatedJpeg = true }).Length);
    }

    [Fact]
    public void ToChw_PngHeader7000x7000With10BytesOfPixels_ThrowsTruncatedUnlessAllowed()
    {
        var path = _dir.Combine("short.png");
        File.WriteAllBytes(path, TestImages.PngHeaderOnly(7000, 7000));

        var ex = Assert.Throws<InvalidImageException>(() => Chw.Of(path, new InputSpec(4, 4)));

        Assert.Equal(path, ex.FilePath);
        Assert.Equal("the PNG data is truncated (its compressed pixel data holds 0 of the 147,007,000 bytes that 7000x7000 pixels need)", ex.Reason);
        Assert.Equal(48, Chw.Of(path, new InputSpec(4, 4), new ImageDecodeOptions { AllowTruncatedPng = true }).Length);
    }

    [Fact]
    public void ToChw_PngCutInsideItsPixelData_ThrowsTruncated()
    {
        var path = _dir.Combine("cut.png");
        File.WriteAllBytes(path, NoisePng(64, 48, new PngEncoder())[..600]);

        var ex = Assert.Throws<InvalidImageException>(() => Chw.Of(path, new InputSpec(4, 4)));

        Assert.StartsWith("the PNG data is truncated (its compressed pixel data holds ", ex.Reason, StringComparison.Ordinal);
        Assert.EndsWith(" bytes that 64x48 pixels need)", ex.Reason, StringComparison.Ordinal);
    }

    /// <summary>Complete PNGs of every colour type, bit depth and interlacing must not be mistaken for truncated ones.</summary>
    [Theory]
    [InlineData(PngColorType.Rgb, PngBitDepth.Bit8, PngInterlaceMode.None)]
    [InlineData(PngColorType.Rgb, PngBitDepth.Bit16, PngInterlaceMode.Adam7)]
    [InlineData(PngColorType.RgbWithAlpha, PngBitDepth.Bit8, PngInterlaceMode.Adam7)]
    [InlineData(PngColorType.Grayscale, PngBitDepth.Bit1, PngInterlaceMode.None)]
    [InlineData(PngColorType.Grayscale, PngBitDepth.Bit2, PngInterlaceMode.Adam7)]
    [InlineData(PngColorType.GrayscaleWithAlpha, PngBitDepth.Bit16, PngInterlaceMode.None)]
    [InlineData(PngColorType.Palette, PngBitDepth.Bit4, PngInterlaceMode.Adam7)]
    [InlineData(PngColorType.Palette, PngBitDepth.Bit8, PngInterlaceMode.None)]
    public void ToChw_CompletePng_IsAccepted(PngColorType colour, PngBitDepth depth, PngInterlaceMode interlace)
    {
        // At least 8×8: ImageSharp 2.1.13 writes Adam7 PNGs smaller than one 8×8 tile that its own decoder then never
        // finishes (2×1) or refuses (1×3), and hangs writing a 2×1 4-bit palette one, with or without this check.
        foreach (var (w, h) in new[] { (8, 8), (13, 17), (33, 9), (9, 33) })
        {
            var path = _dir.Combine($"ok-{colour}-{depth}-{interlace}-{w}x{h}.png");
            File.WriteAllBytes(path, NoisePng(w, h, new PngEncoder { ColorType = colour, BitDepth = depth, InterlaceMethod = interlace }));

            Assert.Equal(48, Chw.Of(path, new InputSpec(4, 4)).Length);
        }
    }

    private static byte[] NoisePng(int w, int h, PngEncoder encoder)
    {
        var random = new Random(w * 31 + h);
        using var img = new Image<Rgba32>(w, h);
        for (var y = 0; y < h; y++)
        {
            for (var x = 0; x < w; x++)
            {
                img[x, y] = new Rgba32((byte)random.Next(256), (byte)random.Next(256), (byte)random.Next(256), (byte)random.Next(256));
            }
        }

        using var ms = new MemoryStream();
        img.SaveAsPng(ms, encoder);
        return ms.ToArray();
    }

    [Fact]
    public void ToChw_JpegWithDataAfterEndMarker_IsAccepted()
    {
        var path = _dir.Combine("trailer.jpg");
        File.WriteAllBytes(path, [.. TestImages.NoiseJpegBytes(32, 32, 3), .. "trailing vendor data \xff\xda"u8.ToArray()]);
        Assert.Equal(48, Chw.Of(path, new InputSpec(4, 4)).Length);
    }

    [Fact]
    public void Decoding_DoesNotChangeGlobalImageSharpConfiguration()
    {
        var path = _dir.Combine("anim2.gif");
        using (var img = new Image<Rgba32>(4, 4, new Rgba32(255, 0, 0, 255)))
        using (var second = new Image<Rgba32>(4, 4, new Rgba32(0, 0, 255, 255)))
        {
            img.Frames.AddFrame(second.Frames.RootFrame);
            img.SaveAsGif(path);
        }

        _ = Chw.Of(path, new InputSpec(4, 4));
        using var check = Image.Load<Rgba32>(path);
        Assert.Equal(2, check.Frames.Count);
    }

    [Fact]
    public void FromStream_BadFileStream_NamesTheFile()
    {
        var path = _dir.Combine("bad.png");
        File.WriteAllText(path, "nope");
        using var stream = File.OpenRead(path);
        var ex = Assert.Throws<InvalidImageException>(() => Chw.Of(stream, new InputSpec(4, 4)));
        Assert.Equal(path, ex.FilePath);
        using var memory = new MemoryStream([1, 2, 3]);
        Assert.Equal("<stream>", Assert.Throws<InvalidImageException>(() => Chw.Of(memory, new InputSpec(4, 4))).FilePath);
    }

    [Fact]
    public void ToChw_Directory_ThrowsCouldNotRead()
    {
        var ex = Assert.Throws<InvalidImageException>(() => Chw.Of(_dir.Path, new InputSpec(4, 4)));
        Assert.Equal("the path is a directory, not a file", ex.Reason);
    }

    [Fact]
    public void ToChw_PermissionDenied_ThrowsCouldNotReadUnlessRoot()
    {
        if (OperatingSystem.IsWindows())
        {
            return;
        }

        var path = TestImages.SolidPng(_dir.Combine("locked.png"), 4, 4, Probe);
        File.SetUnixFileMode(path, UnixFileMode.None);
        if (Environment.UserName == "root")
        {
            // root reads any file: the image simply loads (CI runs as root; the denial path is covered on other machines).
            Assert.Equal(48, Chw.Of(path, new InputSpec(4, 4)).Length);
        }
        else
        {
            var ex = Assert.Throws<InvalidImageException>(() => Chw.Of(path, new InputSpec(4, 4)));
            Assert.StartsWith("the file could not be read (UnauthorizedAccessException", ex.Reason, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void ToChw_MissingFile_ThrowsCouldNotRead()
    {
        var path = _dir.Combine("gone.jpg");
        var ex = Assert.Throws<InvalidImageException>(() => Chw.Of(path, new InputSpec(4, 4)));
        Assert.StartsWith("the file could not be read (FileNotFoundException", ex.Reason, StringComparison.Ordinal);
    }
}
