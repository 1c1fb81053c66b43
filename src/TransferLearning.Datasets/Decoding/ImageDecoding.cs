using System.Buffers;
using System.Buffers.Binary;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats;
using SixLabors.ImageSharp.Formats.Bmp;
using SixLabors.ImageSharp.Formats.Gif;
using SixLabors.ImageSharp.Formats.Jpeg;
using SixLabors.ImageSharp.Formats.Pbm;
using SixLabors.ImageSharp.Formats.Png;
using SixLabors.ImageSharp.Formats.Tga;
using SixLabors.ImageSharp.Formats.Tiff;
using SixLabors.ImageSharp.Formats.Webp;
using SixLabors.ImageSharp.Metadata;
using SixLabors.ImageSharp.PixelFormats;

namespace TransferLearning.Datasets.Decoding;

/// <summary>Content sniffing and safe decoding of encoded images to RGB.</summary>
internal static class ImageDecoding
{
    private static readonly Lazy<Configuration> DefaultConfig = new(() => CreateConfiguration(-1));
    private static readonly Lazy<Configuration> SerialConfig = new(() => CreateConfiguration(1));

    /// <summary>Library default: all cores inside one decode; animations decode only the first frame.</summary>
    public static Configuration Default => DefaultConfig.Value;

    /// <summary>One thread per decode, for pipelines that parallelise across images.</summary>
    public static Configuration Serial => SerialConfig.Value;

    /// <summary>Number of leading bytes needed to recognise any supported format.</summary>
    public const int HeaderSize = 1024;

    public static Configuration CreateConfiguration(int maxDegreeOfParallelism)
    {
        // A new Configuration (not Configuration.Default.Clone(), which shares the format manager) so that changing
        // the GIF decoder does not touch the application's global configuration.
        var config = new Configuration(
            new PngConfigurationModule(),
            new JpegConfigurationModule(),
            new GifConfigurationModule(),
            new BmpConfigurationModule(),
            new PbmConfigurationModule(),
            new TgaConfigurationModule(),
            new TiffConfigurationModule(),
            new WebpConfigurationModule());
        if (maxDegreeOfParallelism > 0)
        {
            config.MaxDegreeOfParallelism = maxDegreeOfParallelism;
        }

        config.ImageFormatsManager.SetDecoder(GifFormat.Instance, new GifDecoder { DecodingMode = FrameDecodingMode.First });
        return config;
    }

    /// <summary>Recognises an image format from the first bytes of a file; null when it is not an image.</summary>
    public static IImageFormat? DetectFormat(ReadOnlySpan<byte> header) =>
        header.IsEmpty ? null : Image.DetectFormat(Default, header);

    /// <summary>Reads the first bytes of a file and recognises its format; null when it is not an image.</summary>
    public static IImageFormat? DetectFileFormat(string path)
    {
        Span<byte> header = stackalloc byte[HeaderSize];
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.None);
        var total = 0;
        while (total < header.Length)
        {
            var n = fs.Read(header[total..]);
            if (n == 0)
            {
                break;
            }

            total += n;
        }

        return DetectFormat(header[..total]);
    }

    /// <summary>
    /// Reads a whole file into a buffer rented from <see cref="ArrayPool{T}.Shared"/> (no per-image garbage: encoded
    /// photos are often larger than the large-object threshold). The caller owns the buffer and must give it back with
    /// <c>ArrayPool&lt;byte&gt;.Shared.Return</c> once done with it; <paramref name="length"/> bytes of it are the file.
    /// I/O failures (missing file, directory, no permission) become <see cref="InvalidImageException"/>.
    /// </summary>
    public static byte[] RentFile(string path, out int length)
    {
        try
        {
            if (Directory.Exists(path))
            {
                throw new InvalidImageException(path, "the path is a directory, not a file", null);
            }

            using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
            var size = fs.Length;
            if (size > Array.MaxLength)
            {
                throw new InvalidImageException(path, $"the file is too large to be an image ({size:N0} bytes)", null);
            }

            var buffer = ArrayPool<byte>.Shared.Rent((int)Math.Max(1, size));
            var total = 0;
            try
            {
                while (total < size)
                {
                    var n = fs.Read(buffer, total, (int)size - total);
                    if (n == 0)
                    {
                        break; // the file shrank while being read: use what is there
                    }

                    total += n;
                }
            }
            catch
            {
                ArrayPool<byte>.Shared.Return(buffer);
                throw;
            }

            length = total;
            return buffer;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or NotSupportedException or System.Security.SecurityException)
        {
            throw new InvalidImageException(path, $"the file could not be read ({ex.GetType().Name}: {ex.Message})", ex);
        }
    }

    /// <summary>Reads a stream to its end.</summary>
    public static byte[] ReadStream(Stream stream, string source)
    {
        try
        {
            if (stream is MemoryStream ms && ms.TryGetBuffer(out var seg) && ms.Position == 0)
            {
                return seg.AsSpan(0, (int)ms.Length).ToArray();
            }

            using var copy = new MemoryStream();
            stream.CopyTo(copy);
            return copy.ToArray();
        }
        catch (Exception ex) when (ex is IOException or NotSupportedException or ObjectDisposedException)
        {
            throw new InvalidImageException(source, $"the stream could not be read ({ex.GetType().Name}: {ex.Message})", ex);
        }
    }

    /// <summary>
    /// Decodes encoded bytes to a single-frame RGB image after checking the format and the pixel limit.
    /// Greyscale, palette, CMYK, alpha (dropped) and 16-bit inputs all come out as 8-bit RGB.
    /// </summary>
    public static Image<Rgb24> Decode(byte[] data, string source, ImageDecodeOptions options) => Decode(data, data.Length, source, options);

    /// <summary>Decodes the first <paramref name="length"/> bytes of <paramref name="data"/> (e.g. a pooled buffer); see <see cref="Decode(byte[], string, ImageDecodeOptions)"/>.</summary>
    public static Image<Rgb24> Decode(byte[] data, int length, string source, ImageDecodeOptions options)
    {
        var encoded = data.AsSpan(0, length);
        if (length == 0)
        {
            throw new InvalidImageException(source, "the file is empty (0 bytes)", null);
        }

        var config = options.Configuration ?? Default;
        var format = Image.DetectFormat(config, encoded);
        if (format is null)
        {
            throw new InvalidImageException(source, "the content is not a recognised image format (supported: " +
                string.Join(", ", config.ImageFormats.Select(f => f.Name)) + ")", null);
        }

        if (format is JpegFormat && !options.AllowTruncatedJpeg && !IsCompleteJpeg(encoded))
        {
            throw new InvalidImageException(source, "the JPEG data is truncated (it ends before the end-of-image marker)", null);
        }

        IImageInfo? info;
        try
        {
            using var stream = new MemoryStream(data, 0, length, writable: false); // a view: no copy
            info = Image.Identify(config, stream, out _);
        }
        catch (Exception ex) when (IsDecodeFailure(ex))
        {
            throw new InvalidImageException(source, $"the {format.Name} header is corrupt ({ex.Message})", ex);
        }

        if (info is null)
        {
            throw new InvalidImageException(source, $"the {format.Name} header could not be read", null);
        }

        if (info.Width <= 0 || info.Height <= 0)
        {
            throw new InvalidImageException(source, $"the {format.Name} header declares an empty size {info.Width}x{info.Height}", null);
        }

        var pixels = (long)info.Width * info.Height;
        if (pixels > options.MaxPixels)
        {
            throw new InvalidImageException(source,
                $"the {format.Name} header declares {info.Width}x{info.Height} = {pixels:N0} pixels, above the limit of {options.MaxPixels:N0} (ImageDecodeOptions.MaxPixels)", null);
        }

        // ImageSharp decodes rows the compressed data does not hold as black, without an error.
        if (format is PngFormat && !options.AllowTruncatedPng && MissingPngData(data, length) is { } missing)
        {
            throw new InvalidImageException(source, missing, null);
        }

        Image<Rgb24> image;
        try
        {
            image = Image.Load<Rgb24>(config, encoded);
        }
        catch (Exception ex) when (IsDecodeFailure(ex))
        {
            throw new InvalidImageException(source, $"the {format.Name} data is corrupt or unsupported ({ex.Message})", ex);
        }

        try
        {
            while (image.Frames.Count > 1)
            {
                image.Frames.RemoveFrame(image.Frames.Count - 1);
            }

            return image;
        }
        catch
        {
            image.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Walks the JPEG marker structure from SOI to EOI (segments by their lengths, entropy-coded data up to the next
    /// real marker) and tells whether the end-of-image marker is reached. Data appended after EOI is ignored.
    /// </summary>
    internal static bool IsCompleteJpeg(ReadOnlySpan<byte> d)
    {
        if (d.Length < 4 || d[0] != 0xFF || d[1] != 0xD8)
        {
            return false;
        }

        var i = 2;
        while (i < d.Length)
        {
            if (d[i] != 0xFF)
            {
                // Inside entropy-coded data: skip to the next 0xFF.
                var next = d[i..].IndexOf((byte)0xFF);
                if (next < 0)
                {
                    return false;
                }

                i += next;
                continue;
            }

            // Skip fill bytes.
            while (i + 1 < d.Length && d[i + 1] == 0xFF)
            {
                i++;
            }

            if (i + 1 >= d.Length)
            {
                return false;
            }

            var marker = d[i + 1];
            i += 2;
            if (marker == 0xD9)
            {
                return true;
            }

            if (marker == 0x00 || marker is >= 0xD0 and <= 0xD7 || marker == 0x01)
            {
                continue; // stuffed byte, restart marker or TEM: no length
            }

            if (i + 2 > d.Length)
            {
                return false;
            }

            var length = (d[i] << 8) | d[i + 1];
            if (length < 2)
            {
                return false;
            }

            i += length; // after SOS this lands at the start of entropy-coded data
        }

        return false;
    }

    /// <summary>
    /// Checks that a PNG's compressed pixel data (its IDAT chunks, inflated) holds every row its header declares, for
    /// every colour type, bit depth and Adam7 interlacing. Returns why it does not (cut inside or before the data, or
    /// data that ends early), or null when it is complete or when the structure is for the decoder to judge (no IHDR).
    /// Only counts inflated bytes, in a pooled buffer: no pixel memory.
    /// </summary>
    internal static string? MissingPngData(byte[] data, int length)
    {
        const uint Ihdr = 0x49484452, Idat = 0x49444154, Iend = 0x49454E44;
        var segments = new List<(int Offset, int Count)>();
        int width = 0, height = 0, bitDepth = 0, colourType = 0, interlace = 0;
        var cut = false;
        var pos = 8; // after the signature
        while (pos + 8 <= length)
        {
            var chunkLength = BinaryPrimitives.ReadUInt32BigEndian(data.AsSpan(pos));
            var type = BinaryPrimitives.ReadUInt32BigEndian(data.AsSpan(pos + 4));
            var start = pos + 8;
            var available = length - start;
            if (chunkLength > (uint)available)
            {
                if (type == Idat)
                {
                    segments.Add((start, available));
                }

                cut = true;
                break;
            }

            if (type == Ihdr && chunkLength >= 13)
            {
                width = (int)Math.Min(int.MaxValue, BinaryPrimitives.ReadUInt32BigEndian(data.AsSpan(start)));
                height = (int)Math.Min(int.MaxValue, BinaryPrimitives.ReadUInt32BigEndian(data.AsSpan(start + 4)));
                bitDepth = data[start + 8];
                colourType = data[start + 9];
                interlace = data[start + 12];
            }
            else if (type == Idat)
            {
                segments.Add((start, (int)chunkLength));
            }
            else if (type == Iend)
            {
                break;
            }

            pos = start + (int)chunkLength + 4; // + CRC
        }

        var channels = colourType switch { 0 => 1, 2 => 3, 3 => 1, 4 => 2, 6 => 4, _ => 0 };
        if (width <= 0 || height <= 0 || channels == 0 || bitDepth is not (1 or 2 or 4 or 8 or 16))
        {
            return null; // no usable IHDR: the decoder reports it
        }

        var expected = PngRawSize(width, height, channels * bitDepth, interlace == 1);
        if (segments.Count == 0)
        {
            return cut ? "the PNG data is truncated (the file ends before its pixel data)" : "the PNG has no pixel data (no IDAT chunk)";
        }

        long inflated = 0;
        var buffer = ArrayPool<byte>.Shared.Rent(1 << 16);
        try
        {
            using var zlib = new System.IO.Compression.ZLibStream(new SegmentStream(data, segments), System.IO.Compression.CompressionMode.Decompress);
            int n;
            while (inflated < expected && (n = zlib.Read(buffer, 0, (int)Math.Min(buffer.Length, expected - inflated))) > 0)
            {
                inflated += n;
            }
        }
        catch (InvalidDataException)
        {
            // Corrupt compressed data: what was inflated so far is what the image holds.
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }

        return inflated >= expected
            ? null
            : $"the PNG data is truncated (its compressed pixel data holds {inflated:N0} of the {expected:N0} bytes that {width}x{height} pixels need)";
    }

    /// <summary>Bytes of filtered scanlines (a filter byte per row) that a PNG of this size needs, Adam7 passes included.</summary>
    private static long PngRawSize(int width, int height, int bitsPerPixel, bool adam7)
    {
        static long Rows(long w, long h, int bits) => w == 0 || h == 0 ? 0 : h * (1 + (((w * bits) + 7) / 8));
        if (!adam7)
        {
            return Rows(width, height, bitsPerPixel);
        }

        ReadOnlySpan<(int X, int Y, int Dx, int Dy)> passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)];
        long total = 0;
        foreach (var (x, y, dx, dy) in passes)
        {
            var w = width > x ? ((long)width - x + dx - 1) / dx : 0;
            var h = height > y ? ((long)height - y + dy - 1) / dy : 0;
            total += Rows(w, h, bitsPerPixel);
        }

        return total;
    }

    /// <summary>A read-only stream over pieces of one array (the IDAT chunk payloads, in order).</summary>
    private sealed class SegmentStream(byte[] data, List<(int Offset, int Count)> segments) : Stream
    {
        private int _segment;
        private int _within;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => throw new NotSupportedException();
            set => throw new NotSupportedException();
        }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            while (_segment < segments.Count && _within == segments[_segment].Count)
            {
                _segment++;
                _within = 0;
            }

            if (_segment == segments.Count || buffer.IsEmpty)
            {
                return 0;
            }

            var (offset, count) = segments[_segment];
            var n = Math.Min(buffer.Length, count - _within);
            data.AsSpan(offset + _within, n).CopyTo(buffer);
            _within += n;
            return n;
        }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }

    private static bool IsDecodeFailure(Exception ex) =>
        ex is ImageFormatException or NotSupportedException or InvalidDataException or ArgumentException
            or IndexOutOfRangeException or InvalidOperationException or EndOfStreamException or OverflowException
            or NullReferenceException;
}
