using System.Buffers.Binary;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats.Jpeg;
using SixLabors.ImageSharp.PixelFormats;

namespace TransferLearning.TestSupport;

/// <summary>Small generated images for tests.</summary>
public static class TestImages
{
    public static string Ensure(string path)
    {
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(path)!);
        return path;
    }

    public static string SolidPng(string path, int w, int h, Rgb24 color)
    {
        using var img = new Image<Rgb24>(w, h, color);
        img.SaveAsPng(Ensure(path));
        return path;
    }

    public static string SolidJpeg(string path, int w, int h, Rgb24 color)
    {
        using var img = new Image<Rgb24>(w, h, color);
        img.SaveAsJpeg(Ensure(path), new JpegEncoder { Quality = 95 });
        return path;
    }

    /// <summary>A photo-like JPEG with noise, so that truncation hits entropy-coded data.</summary>
    public static byte[] NoiseJpegBytes(int w, int h, int seed)
    {
        var rng = new Random(seed);
        using var img = new Image<Rgb24>(w, h);
        for (var y = 0; y < h; y++)
        {
            for (var x = 0; x < w; x++)
            {
                img[x, y] = new Rgb24((byte)rng.Next(256), (byte)rng.Next(256), (byte)rng.Next(256));
            }
        }

        using var ms = new MemoryStream();
        img.SaveAsJpeg(ms, new JpegEncoder { Quality = 90 });
        return ms.ToArray();
    }

    /// <summary>Left part one colour, right part another.</summary>
    public static Image<Rgb24> TwoColour(int w, int h, int splitX, Rgb24 left, Rgb24 right)
    {
        var img = new Image<Rgb24>(w, h);
        for (var y = 0; y < h; y++)
        {
            for (var x = 0; x < w; x++)
            {
                img[x, y] = x < splitX ? left : right;
            }
        }

        return img;
    }

    /// <summary>A PNG with a valid IHDR declaring the given size and no real pixel data.</summary>
    public static byte[] PngHeaderOnly(int width, int height)
    {
        using var ms = new MemoryStream();
        ms.Write([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]);
        var ihdr = new byte[13];
        BinaryPrimitives.WriteInt32BigEndian(ihdr, width);
        BinaryPrimitives.WriteInt32BigEndian(ihdr.AsSpan(4), height);
        ihdr[8] = 8; // bit depth
        ihdr[9] = 2; // RGB
        WriteChunk(ms, "IHDR", ihdr);
        WriteChunk(ms, "IDAT", [0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
        WriteChunk(ms, "IEND", []);
        return ms.ToArray();
    }

    public static float At(float[] chw, int c, int y, int x, int h, int w) => chw[(c * h * w) + (y * w) + x];

    private static void WriteChunk(Stream s, string type, byte[] data)
    {
        Span<byte> len = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(len, data.Length);
        s.Write(len);
        var typed = System.Text.Encoding.ASCII.GetBytes(type).Concat(data).ToArray();
        s.Write(typed);
        BinaryPrimitives.WriteUInt32BigEndian(len, Crc32(typed));
        s.Write(len);
    }

    private static uint Crc32(byte[] data)
    {
        var crc = 0xFFFFFFFFu;
        foreach (var b in data)
        {
            crc ^= b;
            for (var k = 0; k < 8; k++)
            {
                crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xEDB88320u : crc >> 1;
            }
        }

        return ~crc;
    }
}
