using System.Buffers;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using SixLabors.ImageSharp.Processing;
using TorchSharp;
using TransferLearning.Datasets.Decoding;
using SharpResizeMode = SixLabors.ImageSharp.Processing.ResizeMode;

namespace TransferLearning.Datasets;

/// <summary>
/// The one path from an image to a network input, used alike for training, evaluation and prediction:
/// decode (content-sniffed, pixel limit checked, first frame, any pixel format to RGB) → apply EXIF orientation →
/// resize to the <see cref="InputSpec"/> size (bilinear with half-pixel centres, as <c>tf.image.resize</c>) → float CHW with the spec's value range, channel order and
/// mean/std (see <see cref="InputSpec"/> for the formula).
/// </summary>
public static class ImageTensor
{
    /// <summary>Decodes an image file into a float32 tensor of shape [3, Height, Width].</summary>
    /// <param name="path">Image file; its format is recognised from the content, not the extension.</param>
    /// <param name="spec">What the network expects.</param>
    /// <param name="options">Decode options (pixel limit, resize override); null for defaults.</param>
    /// <returns>A new tensor the caller owns (dispose it or use a dispose scope).</returns>
    /// <exception cref="InvalidImageException">The file cannot be read, is not an image, is corrupt or is too large.</exception>
    public static torch.Tensor FromFile(string path, InputSpec spec, ImageDecodeOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(spec);
        return ToTensor(spec, chw => DecodeFile(path, spec, options ?? ImageDecodeOptions.Default, chw));
    }

    /// <summary>Decodes an encoded image (JPEG, PNG, GIF, BMP, WebP, TIFF, TGA, PBM) from a stream into a [3, Height, Width] tensor.</summary>
    /// <param name="stream">Stream positioned at the start of the encoded image; read to its end, not disposed.</param>
    /// <param name="spec">What the network expects.</param>
    /// <param name="options">Decode options; null for defaults.</param>
    /// <returns>A new tensor the caller owns.</returns>
    /// <exception cref="InvalidImageException">The content is not a usable image.</exception>
    public static torch.Tensor FromStream(Stream stream, InputSpec spec, ImageDecodeOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(spec);
        return ToTensor(spec, chw => DecodeStream(stream, spec, options ?? ImageDecodeOptions.Default, chw));
    }

    /// <summary>Converts an in-memory image into a [3, Height, Width] tensor (EXIF orientation applied; the image is not changed).</summary>
    /// <param name="image">The image.</param>
    /// <param name="spec">What the network expects.</param>
    /// <param name="options">Options (only <see cref="ImageDecodeOptions.ResizeMode"/> applies); null for defaults.</param>
    /// <returns>A new tensor the caller owns.</returns>
    public static torch.Tensor FromImage(Image<Rgb24> image, InputSpec spec, ImageDecodeOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(image);
        ArgumentNullException.ThrowIfNull(spec);
        return ToTensor(spec, chw => ConvertImage(image, spec, options ?? ImageDecodeOptions.Default, chw));
    }

    /// <summary>Decodes an image file into normalised float CHW values (length 3 × Height × Width).</summary>
    /// <param name="path">Image file.</param>
    /// <param name="spec">What the network expects.</param>
    /// <param name="options">Decode options; null for defaults.</param>
    /// <returns>The values in channel, row, column order.</returns>
    /// <exception cref="InvalidImageException">The file is not a usable image.</exception>
    public static float[] ToChw(string path, InputSpec spec, ImageDecodeOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(spec);
        var dst = new float[3 * spec.Width * spec.Height];
        DecodeFile(path, spec, options ?? ImageDecodeOptions.Default, dst);
        return dst;
    }

    /// <summary>Decodes an encoded image from a stream into normalised float CHW values.</summary>
    /// <param name="stream">Stream positioned at the start of the encoded image; read to its end, not disposed.</param>
    /// <param name="spec">What the network expects.</param>
    /// <param name="options">Decode options; null for defaults.</param>
    /// <returns>The values in channel, row, column order.</returns>
    /// <exception cref="InvalidImageException">The content is not a usable image.</exception>
    public static float[] ToChw(Stream stream, InputSpec spec, ImageDecodeOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(spec);
        var dst = new float[3 * spec.Width * spec.Height];
        DecodeStream(stream, spec, options ?? ImageDecodeOptions.Default, dst);
        return dst;
    }

    /// <summary>Converts an in-memory image into normalised float CHW values (the image is not changed).</summary>
    /// <param name="image">The image.</param>
    /// <param name="spec">What the network expects.</param>
    /// <param name="options">Options (only <see cref="ImageDecodeOptions.ResizeMode"/> applies); null for defaults.</param>
    /// <returns>The values in channel, row, column order.</returns>
    public static float[] ToChw(Image<Rgb24> image, InputSpec spec, ImageDecodeOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(image);
        ArgumentNullException.ThrowIfNull(spec);
        var dst = new float[3 * spec.Width * spec.Height];
        ConvertImage(image, spec, options ?? ImageDecodeOptions.Default, dst);
        return dst;
    }

    /// <summary>
    /// Decodes an image file into normalised float CHW values in <paramref name="destination"/> (3 × Height × Width),
    /// with the file bytes and the resized RGB pixels in pooled buffers that are back in the pool on return.
    /// </summary>
    internal static void DecodeFile(string path, InputSpec spec, ImageDecodeOptions options, Span<float> destination)
    {
        var size = 3 * spec.Width * spec.Height;
        var rgb = ArrayPool<byte>.Shared.Rent(size);
        try
        {
            DecodeFileResized(path, spec, options, rgb.AsSpan(0, size));
            Normalize(rgb.AsSpan(0, size), spec, destination);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rgb);
        }
    }

    /// <summary>Decodes, orients and resizes an image file to packed RGB bytes (Height × Width × 3) in <paramref name="rgb"/>; the file is read into a pooled buffer.</summary>
    internal static void DecodeFileResized(string path, InputSpec spec, ImageDecodeOptions options, Span<byte> rgb)
    {
        var file = ImageDecoding.RentFile(path, out var length);
        try
        {
            DecodeResized(file, length, path, spec, options, rgb);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(file);
        }
    }

    private static void DecodeStream(Stream stream, InputSpec spec, ImageDecodeOptions options, Span<float> destination)
    {
        var source = stream is FileStream fs ? fs.Name : "<stream>";
        var data = ImageDecoding.ReadStream(stream, source);
        var size = 3 * spec.Width * spec.Height;
        var rgb = ArrayPool<byte>.Shared.Rent(size);
        try
        {
            DecodeResized(data, data.Length, source, spec, options, rgb.AsSpan(0, size));
            Normalize(rgb.AsSpan(0, size), spec, destination);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rgb);
        }
    }

    private static void ConvertImage(Image<Rgb24> image, InputSpec spec, ImageDecodeOptions options, Span<float> destination)
    {
        var size = 3 * spec.Width * spec.Height;
        var rgb = ArrayPool<byte>.Shared.Rent(size);
        try
        {
            ResizeToRgb(image, spec, options.ResizeMode ?? spec.ResizeMode, mayMutate: false, rgb.AsSpan(0, size));
            Normalize(rgb.AsSpan(0, size), spec, destination);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rgb);
        }
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
    internal static void Normalize(ReadOnlySpan<byte> rgb, InputSpec spec, Span<float> destination)
    {
        var plane = spec.Width * spec.Height;
        if (rgb.Length != plane * 3 || destination.Length < plane * 3)
        {
            throw new ArgumentException($"Expected {plane * 3} RGB bytes and room for {plane * 3} floats; got {rgb.Length} and {destination.Length}.");
        }

        Span<float> lut = stackalloc float[3 * 256];
        var scale = ((double)spec.RangeMax - spec.RangeMin) / 255.0;
        for (var c = 0; c < 3; c++)
        {
            double mean = spec.Mean[c], std = spec.Std[c];
            for (var p = 0; p < 256; p++)
            {
                lut[(c * 256) + p] = (float)(((spec.RangeMin + (p * scale)) - mean) / std);
            }
        }

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

    /// <summary>Copies float values into a new float32 tensor of the given shape (no memory shared with the array).</summary>
    internal static torch.Tensor CopyToTensor(float[] values, int count, long[] shape)
    {
        var t = torch.empty(shape, torch.float32);
        try
        {
            // The bytes setter is a plain memory copy (the element accessor is ~100x slower for batch-sized tensors).
            t.bytes = System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan(0, count));
            return t;
        }
        catch
        {
            t.Dispose();
            throw;
        }
    }

    /// <summary>Fills a pooled float buffer with <paramref name="fill"/> and copies it into a new [3, Height, Width] tensor.</summary>
    private static torch.Tensor ToTensor(InputSpec spec, SpanAction fill)
    {
        var size = 3 * spec.Width * spec.Height;
        var chw = ArrayPool<float>.Shared.Rent(size);
        try
        {
            fill(chw.AsSpan(0, size));
            return CopyToTensor(chw, size, [3L, spec.Height, spec.Width]);
        }
        finally
        {
            ArrayPool<float>.Shared.Return(chw);
        }
    }

    private delegate void SpanAction(Span<float> destination);
}
