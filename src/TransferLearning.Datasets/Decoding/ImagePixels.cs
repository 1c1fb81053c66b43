using System.Buffers;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using SixLabors.ImageSharp.Processing;
using SharpResizeMode = SixLabors.ImageSharp.Processing.ResizeMode;

namespace TransferLearning.Datasets.Decoding;

/// <summary>
/// The one path from an encoded image to the pixels a network sees, used alike by training, evaluation, prediction
/// and the ONNX inference package: decode (content-sniffed, pixel limit checked, truncation detected, first frame, any
/// pixel format to RGB) → apply EXIF orientation → resize to the <see cref="InputSpec"/> size (bilinear with half-pixel
/// centres, as <c>tf.image.resize</c>) → packed RGB bytes → float CHW with the spec's value range, channel order and
/// mean/std (see <see cref="InputSpec"/> for the formula).
/// </summary>
public static class ImagePixels
{
    /// <summary>Decodes, orients and resizes an image file to packed RGB bytes (Height × Width × 3, row by row).</summary>
    /// <param name="path">Image file; its format is recognised from the content, not the extension.</param>
    /// <param name="spec">Target size and resize mode.</param>
    /// <param name="rgb">Receives exactly 3 × Height × Width bytes.</param>
    /// <param name="options">Decode options (pixel limit, resize override); null for defaults.</param>
    /// <exception cref="InvalidImageException">The file cannot be read, is not an image, is corrupt or is too large.</exception>
    public static void DecodeFile(string path, InputSpec spec, Span<byte> rgb, ImageDecodeOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(spec);
        CheckLength(rgb.Length, spec);
        var file = ImageDecoding.RentFile(path, out var length);
        try
        {
            DecodeResized(file, length, path, spec, options ?? ImageDecodeOptions.Default, rgb);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(file);
        }
    }

    /// <summary>Decodes, orients and resizes an encoded image read from a stream to packed RGB bytes (Height × Width × 3).</summary>
    /// <param name="stream">Stream positioned at the start of the encoded image; read to its end, not disposed.</param>
    /// <param name="spec">Target size and resize mode.</param>
    /// <param name="rgb">Receives exactly 3 × Height × Width bytes.</param>
    /// <param name="options">Decode options; null for defaults.</param>
    /// <exception cref="InvalidImageException">The content is not a usable image.</exception>
    public static void DecodeStream(Stream stream, InputSpec spec, Span<byte> rgb, ImageDecodeOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(spec);
        CheckLength(rgb.Length, spec);
        var source = stream is FileStream fs ? fs.Name : "<stream>";
        var data = ImageDecoding.ReadStream(stream, source);
        DecodeResized(data, data.Length, source, spec, options ?? ImageDecodeOptions.Default, rgb);
    }

    /// <summary>Orients and resizes an image in memory to packed RGB bytes (Height × Width × 3); the image is not changed.</summary>
    /// <param name="image">The image.</param>
    /// <param name="spec">Target size and resize mode.</param>
    /// <param name="rgb">Receives exactly 3 × Height × Width bytes.</param>
    /// <param name="options">Options (only <see cref="ImageDecodeOptions.ResizeMode"/> applies); null for defaults.</param>
    public static void FromImage(Image<Rgb24> image, InputSpec spec, Span<byte> rgb, ImageDecodeOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(image);
        ArgumentNullException.ThrowIfNull(spec);
        CheckLength(rgb.Length, spec);
        ResizeToRgb(image, spec, (options ?? ImageDecodeOptions.Default).ResizeMode ?? spec.ResizeMode, mayMutate: false, rgb);
    }

    /// <summary>Decodes an image file into normalised float CHW values (3 × Height × Width).</summary>
    /// <param name="path">Image file.</param>
    /// <param name="spec">What the network expects.</param>
    /// <param name="chw">Receives 3 × Height × Width values in channel, row, column order.</param>
    /// <param name="options">Decode options; null for defaults.</param>
    /// <exception cref="InvalidImageException">The file is not a usable image.</exception>
    public static void DecodeFile(string path, InputSpec spec, Span<float> chw, ImageDecodeOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(spec);
        WithRgb(spec, chw, (rgb, state) => DecodeFile(state.path, state.spec, rgb, state.options), (path, spec, options));
    }

    /// <summary>As <see cref="DecodeFile(string, InputSpec, Span{float}, ImageDecodeOptions?)"/>, into Height × Width × 3 values (channels-last).</summary>
    internal static void DecodeFileChannelsLast(string path, InputSpec spec, Span<float> hwc, ImageDecodeOptions? options = null) =>
        WithRgb(spec, hwc, (rgb, state) => DecodeFile(state.path, state.spec, rgb, state.options), (path, spec, options), channelsLast: true);

    /// <summary>Decodes an encoded image from a stream into normalised float CHW values.</summary>
    /// <param name="stream">Stream positioned at the start of the encoded image; read to its end, not disposed.</param>
    /// <param name="spec">What the network expects.</param>
    /// <param name="chw">Receives 3 × Height × Width values in channel, row, column order.</param>
    /// <param name="options">Decode options; null for defaults.</param>
    /// <exception cref="InvalidImageException">The content is not a usable image.</exception>
    public static void DecodeStream(Stream stream, InputSpec spec, Span<float> chw, ImageDecodeOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(spec);
        WithRgb(spec, chw, (rgb, state) => DecodeStream(state.stream, state.spec, rgb, state.options), (stream, spec, options));
    }

    /// <summary>Converts an in-memory image into normalised float CHW values (the image is not changed).</summary>
    /// <param name="image">The image.</param>
    /// <param name="spec">What the network expects.</param>
    /// <param name="chw">Receives 3 × Height × Width values in channel, row, column order.</param>
    /// <param name="options">Options (only <see cref="ImageDecodeOptions.ResizeMode"/> applies); null for defaults.</param>
    public static void FromImage(Image<Rgb24> image, InputSpec spec, Span<float> chw, ImageDecodeOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(spec);
        WithRgb(spec, chw, (rgb, state) => FromImage(state.image, state.spec, rgb, state.options), (image, spec, options));
    }

    /// <summary>Decodes, orients and resizes the first <paramref name="length"/> encoded bytes into <paramref name="rgb"/> (Height × Width × 3).</summary>
    internal static void DecodeResized(byte[] data, int length, string source, InputSpec spec, ImageDecodeOptions options, Span<byte> rgb)
    {
        using var image = ImageDecoding.Decode(data, length, source, options);
        try
        {
            ResizeToRgb(image, spec, options.ResizeMode ?? spec.ResizeMode, mayMutate: true, rgb);
        }
        catch (Exception ex) when (ex is ImageProcessingException or InvalidOperationException or ArgumentException)
        {
            throw new InvalidImageException(source, $"the image could not be resized ({ex.Message})", ex);
        }
    }

    /// <summary>
    /// Applies EXIF orientation and resizes to the spec size, as packed RGB bytes (Height × Width × 3).
    /// Stretch resamples the whole image; CenterCrop first takes the largest centred window with the target aspect
    /// ratio (integer size, as Keras <c>smart_resize</c>) and resamples that. Resampling is bilinear with half-pixel
    /// centres as <c>tf.image.resize</c>; a window more than 3× the target size is first reduced with an antialiasing
    /// (triangle) filter to about 2× the target so that large camera photos do not alias.
    /// Writes into <paramref name="rgb"/> (exactly Height × Width × 3 bytes).
    /// </summary>
    internal static void ResizeToRgb(Image<Rgb24> image, InputSpec spec, ResizeMode mode, bool mayMutate, Span<byte> rgb)
    {
        if (rgb.Length != 3 * spec.Width * spec.Height)
        {
            throw new ArgumentException($"Expected room for exactly {3 * spec.Width * spec.Height} RGB bytes; got {rgb.Length}.", nameof(rgb));
        }

        Image<Rgb24>? owned = null;
        try
        {
            var current = image;
            if (current.Metadata.ExifProfile is not null)
            {
                if (mayMutate)
                {
                    current.Mutate(c => c.AutoOrient());
                }
                else
                {
                    owned = current.Clone(c => c.AutoOrient());
                    current = owned;
                }
            }

            int dstW = spec.Width, dstH = spec.Height;
            var (cropW, cropH) = Window(current.Width, current.Height, dstW, dstH, mode);
            var shrink = Math.Min((double)cropW / (2 * dstW), (double)cropH / (2 * dstH));
            if (cropW > 3 * dstW && cropH > 3 * dstH && shrink > 1)
            {
                var size = new Size(Math.Max(1, (int)Math.Round(current.Width / shrink)), Math.Max(1, (int)Math.Round(current.Height / shrink)));
                var resize = new ResizeOptions { Size = size, Mode = SharpResizeMode.Stretch, Sampler = KnownResamplers.Triangle, Compand = false };
                if (mayMutate || owned is not null)
                {
                    current.Mutate(c => c.Resize(resize));
                }
                else
                {
                    owned = current.Clone(c => c.Resize(resize));
                    current = owned;
                }

                (cropW, cropH) = Window(current.Width, current.Height, dstW, dstH, mode);
            }

            int w = current.Width, h = current.Height;
            if (w == dstW && h == dstH)
            {
                current.CopyPixelDataTo(rgb);
                return;
            }

            var src = ArrayPool<byte>.Shared.Rent(w * h * 3);
            try
            {
                current.CopyPixelDataTo(src.AsSpan(0, w * h * 3));
                Bilinear.Resize(src.AsSpan(0, w * h * 3), w, (w - cropW) / 2, (h - cropH) / 2, cropW, cropH, rgb, dstW, dstH);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(src);
            }
        }
        finally
        {
            owned?.Dispose();
        }
    }

    /// <summary>Size of the source window that is resampled: all of it (Stretch) or the centred target-aspect crop.</summary>
    private static (int Width, int Height) Window(int w, int h, int dstW, int dstH, ResizeMode mode)
    {
        if (mode != ResizeMode.CenterCrop)
        {
            return (w, h);
        }

        var aspect = (double)dstW / dstH;
        var cropH = Math.Max(1, Math.Min(h, (int)(w / aspect)));
        var cropW = Math.Max(1, Math.Min(w, (int)(h * aspect)));
        return (cropW, cropH);
    }

    /// <summary>
    /// Converts packed RGB bytes (Height × Width × 3) to float CHW in the spec's channel order, value range and mean/std:
    /// <c>((RangeMin + p / 255 * (RangeMax - RangeMin)) - Mean[c]) / Std[c]</c>.
    /// </summary>
    /// <param name="rgb">Packed RGB bytes, exactly 3 × Height × Width.</param>
    /// <param name="spec">Size, value range, channel order and mean/std.</param>
    /// <param name="destination">Receives 3 × Height × Width values in channel, row, column order.</param>
    public static void Normalize(ReadOnlySpan<byte> rgb, InputSpec spec, Span<float> destination)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var plane = NormalizedPlane(spec, rgb.Length, destination.Length);
        Span<float> lut = stackalloc float[3 * 256];
        FillLookup(spec, lut);
        var d0 = destination[..plane];
        var d1 = destination.Slice(plane, plane);
        var d2 = destination.Slice(2 * plane, plane);
        var l0 = lut[..256];
        var l1 = lut.Slice(256, 256);
        var l2 = lut.Slice(512, 256);
        var bgr = spec.ChannelOrder == ChannelOrder.Bgr;
        for (int i = 0, j = 0; i < plane; i++, j += 3)
        {
            byte r = rgb[j], g = rgb[j + 1], b = rgb[j + 2];
            d0[i] = l0[bgr ? b : r];
            d1[i] = l1[g];
            d2[i] = l2[bgr ? r : b];
        }
    }

    /// <summary>
    /// As <see cref="Normalize"/>, into Height × Width × 3 values (pixel by pixel, the channels of each pixel together:
    /// channels-last), with the same values.
    /// </summary>
    internal static void NormalizeChannelsLast(ReadOnlySpan<byte> rgb, InputSpec spec, Span<float> destination)
    {
        var plane = NormalizedPlane(spec, rgb.Length, destination.Length);
        Span<float> lut = stackalloc float[3 * 256];
        FillLookup(spec, lut);
        var d = destination[..(plane * 3)];
        if (spec.ChannelOrder == ChannelOrder.Bgr)
        {
            var l0 = lut[..256];
            var l1 = lut.Slice(256, 256);
            var l2 = lut.Slice(512, 256);
            for (var j = 0; j < d.Length; j += 3)
            {
                byte r = rgb[j], g = rgb[j + 1], b = rgb[j + 2];
                d[j] = l0[b];
                d[j + 1] = l1[g];
                d[j + 2] = l2[r];
            }

            return;
        }

        // Value j is channel j % 3: its table starts at 256 · (j % 3).
        var done = GatherChannelsLast(rgb, lut, d);
        for (var j = done; j < d.Length; j++)
        {
            d[j] = lut[(256 * (j % 3)) + rgb[j]];
        }
    }

    /// <summary>
    /// <c>d[j] = lut[256 · (j % 3) + rgb[j]]</c> with AVX2, 24 values (8 pixels) at a time; returns how many values it
    /// wrote (0 without AVX2).
    /// </summary>
    private static unsafe int GatherChannelsLast(ReadOnlySpan<byte> rgb, ReadOnlySpan<float> lut, Span<float> d)
    {
        if (!Avx2.IsSupported)
        {
            return 0;
        }

        var channel0 = Vector256.Create(0, 256, 512, 0, 256, 512, 0, 256);
        var channel1 = Vector256.Create(512, 0, 256, 512, 0, 256, 512, 0);
        var channel2 = Vector256.Create(256, 512, 0, 256, 512, 0, 256, 512);
        var j = 0;
        fixed (byte* bytes = rgb)
        fixed (float* table = lut)
        fixed (float* output = d)
        {
            for (; j <= d.Length - 24; j += 24)
            {
                var i0 = Avx2.Add(Avx2.ConvertToVector256Int32(bytes + j), channel0);
                var i1 = Avx2.Add(Avx2.ConvertToVector256Int32(bytes + j + 8), channel1);
                var i2 = Avx2.Add(Avx2.ConvertToVector256Int32(bytes + j + 16), channel2);
                Avx.Store(output + j, Avx2.GatherVector256(table, i0, sizeof(float)));
                Avx.Store(output + j + 8, Avx2.GatherVector256(table, i1, sizeof(float)));
                Avx.Store(output + j + 16, Avx2.GatherVector256(table, i2, sizeof(float)));
            }
        }

        return j;
    }

    /// <summary>Pixels per image; throws unless <paramref name="rgb"/> bytes and room for <paramref name="room"/> floats fit the spec.</summary>
    private static int NormalizedPlane(InputSpec spec, int rgb, int room)
    {
        var plane = spec.Width * spec.Height;
        if (rgb != plane * 3 || room < plane * 3)
        {
            throw new ArgumentException($"Expected {plane * 3} RGB bytes and room for {plane * 3} floats; got {rgb} and {room}.");
        }

        return plane;
    }

    /// <summary>The normalised value of each byte value per channel (channel c at [256·c, 256·c + 255]).</summary>
    private static void FillLookup(InputSpec spec, Span<float> lut)
    {
        var scale = ((double)spec.RangeMax - spec.RangeMin) / 255.0;
        for (var c = 0; c < 3; c++)
        {
            double mean = spec.Mean[c], std = spec.Std[c];
            for (var p = 0; p < 256; p++)
            {
                lut[(c * 256) + p] = (float)(((spec.RangeMin + (p * scale)) - mean) / std);
            }
        }
    }

    /// <summary>Runs <paramref name="decode"/> into a pooled RGB buffer, then normalises it into <paramref name="chw"/> (channels-last values when asked).</summary>
    private static void WithRgb<TState>(InputSpec spec, Span<float> chw, RgbAction<TState> decode, TState state, bool channelsLast = false)
    {
        var size = 3 * spec.Width * spec.Height;
        if (chw.Length != size)
        {
            throw new ArgumentException($"Expected room for exactly {size} values (3 × {spec.Height} × {spec.Width}); got {chw.Length}.", nameof(chw));
        }

        var rgb = ArrayPool<byte>.Shared.Rent(size);
        try
        {
            decode(rgb.AsSpan(0, size), state);
            if (channelsLast)
            {
                NormalizeChannelsLast(rgb.AsSpan(0, size), spec, chw);
            }
            else
            {
                Normalize(rgb.AsSpan(0, size), spec, chw);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rgb);
        }
    }

    private static void CheckLength(int rgb, InputSpec spec)
    {
        if (rgb != 3 * spec.Width * spec.Height)
        {
            throw new ArgumentException($"Expected room for exactly {3 * spec.Width * spec.Height} RGB bytes (3 × {spec.Height} × {spec.Width}); got {rgb}.", nameof(rgb));
        }
    }

    private delegate void RgbAction<TState>(Span<byte> rgb, TState state);
}
