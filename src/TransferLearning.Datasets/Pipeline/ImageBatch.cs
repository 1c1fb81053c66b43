using System.Buffers;

namespace TransferLearning.Datasets.Pipeline;

/// <summary>
/// One batch of decoded images as normalised float pixels <c>[N, 3, Height, Width]</c> (channel, row, column order per
/// image), or <c>[N, Height, Width, 3]</c> when <see cref="ChannelsLast"/>. The pixels live in a pooled buffer: dispose
/// the batch to return it; do not keep <see cref="Pixels"/> after that.
/// </summary>
public sealed class ImageBatch : IDisposable
{
    private float[]? _buffer;

    internal ImageBatch(int index, float[] buffer, int count, int width, int height, IReadOnlyList<string> paths, IReadOnlyList<int> labels, bool channelsLast = false)
    {
        ChannelsLast = channelsLast;
        Index = index;
        _buffer = buffer;
        Count = count;
        Width = width;
        Height = height;
        Paths = paths;
        Labels = labels;
    }

    /// <summary>Position of the batch in its epoch (0-based).</summary>
    public int Index { get; }

    /// <summary>Number of images (N).</summary>
    public int Count { get; }

    /// <summary>Image width in pixels.</summary>
    public int Width { get; }

    /// <summary>Image height in pixels.</summary>
    public int Height { get; }

    /// <summary>
    /// Whether <see cref="Pixels"/> holds each image as Height × Width × 3 values (row, column, channel order:
    /// <see cref="ImageLoaderOptions.ChannelsLast"/>) rather than 3 × Height × Width.
    /// </summary>
    public bool ChannelsLast { get; }

    /// <summary>
    /// The images, N × 3 × Height × Width floats normalised as the <see cref="InputSpec"/> declares (N × Height × Width × 3
    /// when <see cref="ChannelsLast"/>).
    /// </summary>
    /// <exception cref="ObjectDisposedException">The batch was disposed.</exception>
    public ReadOnlySpan<float> Pixels
    {
        get
        {
            var buffer = _buffer;
            ObjectDisposedException.ThrowIf(buffer is null, this);
            return buffer.AsSpan(0, Count * 3 * Width * Height);
        }
    }

    /// <summary>Source file of each image, in batch order.</summary>
    public IReadOnlyList<string> Paths { get; }

    /// <summary>Class index of each image, in batch order.</summary>
    public IReadOnlyList<int> Labels { get; }

    /// <summary>Returns the pixel buffer to the pool.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _buffer, null) is { } buffer)
        {
            ArrayPool<float>.Shared.Return(buffer);
        }
    }
}

/// <summary>Progress of one pass over a dataset, reported after each batch.</summary>
/// <param name="Epoch">The epoch being loaded.</param>
/// <param name="Batches">Batches delivered so far.</param>
/// <param name="Images">Images delivered so far.</param>
/// <param name="TotalImages">Images in the dataset.</param>
/// <param name="Skipped">Images skipped so far in this pass (bad files under <see cref="BadImagePolicy.Skip"/>).</param>
public sealed record LoaderProgress(int Epoch, int Batches, int Images, int TotalImages, int Skipped);
