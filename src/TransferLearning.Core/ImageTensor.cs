using System.Buffers;
using System.Runtime.InteropServices;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using TorchSharp;
using TransferLearning.Datasets;
using TransferLearning.Datasets.Decoding;
using TransferLearning.Datasets.Pipeline;

namespace TransferLearning;

/// <summary>
/// Pixels to TorchSharp tensors: the images are decoded, resized and normalised by <see cref="ImagePixels"/> (the one
/// path shared by training, evaluation, prediction and the ONNX inference package) and copied into float32 tensors.
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
        return ToTensor(spec, (chw, state) => ImagePixels.DecodeFile(state.path, state.spec, chw, state.options), (path, spec, options));
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
        return ToTensor(spec, (chw, state) => ImagePixels.DecodeStream(state.stream, state.spec, chw, state.options), (stream, spec, options));
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
        return ToTensor(spec, (chw, state) => ImagePixels.FromImage(state.image, state.spec, chw, state.options), (image, spec, options));
    }

    /// <summary>
    /// Copies a batch's pixels into a new float32 tensor [N, 3, Height, Width]; a <see cref="ImageBatch.ChannelsLast"/>
    /// batch gives that shape with channels-last strides (the memory holds N × Height × Width × 3).
    /// </summary>
    /// <param name="batch">A batch from an <see cref="ImageLoader"/>.</param>
    /// <returns>A new tensor the caller owns; the batch keeps its own pixels.</returns>
    public static torch.Tensor FromBatch(ImageBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        if (!batch.ChannelsLast)
        {
            return FromPixels(batch.Pixels, [batch.Count, 3, batch.Height, batch.Width]);
        }

        using var nhwc = FromPixels(batch.Pixels, [batch.Count, batch.Height, batch.Width, 3]);
        return nhwc.permute(0, 3, 1, 2);
    }

    /// <summary>A batch's class indices as an int64 tensor [N].</summary>
    /// <param name="batch">A batch from an <see cref="ImageLoader"/>.</param>
    /// <returns>A new tensor the caller owns.</returns>
    public static torch.Tensor LabelsOf(ImageBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        return torch.tensor(batch.Labels.Select(l => (long)l).ToArray(), torch.int64);
    }

    /// <summary>Copies float values into a new float32 tensor of the given shape (no memory shared with the span).</summary>
    internal static torch.Tensor FromPixels(ReadOnlySpan<float> values, long[] shape)
    {
        var t = torch.empty(shape, torch.float32);
        try
        {
            // The bytes setter is a plain memory copy (the element accessor is ~100x slower for batch-sized tensors).
            MemoryMarshal.AsBytes(values).CopyTo(t.bytes);
            return t;
        }
        catch
        {
            t.Dispose();
            throw;
        }
    }

    /// <summary>Fills a pooled float buffer with <paramref name="fill"/> and copies it into a new [3, Height, Width] tensor.</summary>
    private static torch.Tensor ToTensor<TState>(InputSpec spec, FillAction<TState> fill, TState state)
    {
        var size = 3 * spec.Width * spec.Height;
        var chw = ArrayPool<float>.Shared.Rent(size);
        try
        {
            fill(chw.AsSpan(0, size), state);
            return FromPixels(chw.AsSpan(0, size), [3L, spec.Height, spec.Width]);
        }
        finally
        {
            ArrayPool<float>.Shared.Return(chw);
        }
    }

    private delegate void FillAction<TState>(Span<float> chw, TState state);
}
