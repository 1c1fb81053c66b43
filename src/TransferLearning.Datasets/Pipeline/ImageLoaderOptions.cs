using TransferLearning.Datasets.Decoding;

namespace TransferLearning.Datasets.Pipeline;

/// <summary>Options for <see cref="ImageLoader"/>. Setters check their value; the loader keeps its own copy.</summary>
public sealed class ImageLoaderOptions
{
    /// <summary>Default images per batch.</summary>
    public const int DefaultBatchSize = 32;

    /// <summary>Default number of batches decoded ahead of the consumer.</summary>
    public const int DefaultPrefetchBatches = 2;

    private int _batchSize = DefaultBatchSize;
    private int _degreeOfParallelism = Environment.ProcessorCount;
    private int _prefetchBatches = DefaultPrefetchBatches;
    private BadImagePolicy _badImages = BadImagePolicy.Fail;

    /// <summary>Images per batch (at least 1; default 32). The last batch of an epoch may be smaller unless <see cref="DropLast"/>.</summary>
    public int BatchSize
    {
        get => _batchSize;
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegativeOrZero(value);
            _batchSize = value;
        }
    }

    /// <summary>Whether to shuffle the order each epoch (reproducibly from <see cref="Seed"/> and the epoch number). Default false.</summary>
    public bool Shuffle { get; set; }

    /// <summary>Seed of the per-epoch shuffle. Default 0.</summary>
    public int Seed { get; set; }

    /// <summary>Whether to leave out the last batch of an epoch when it is smaller than <see cref="BatchSize"/>. Default false.</summary>
    public bool DropLast { get; set; }

    /// <summary>Number of images decoded at the same time (at least 1; default <see cref="Environment.ProcessorCount"/>).</summary>
    public int DegreeOfParallelism
    {
        get => _degreeOfParallelism;
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegativeOrZero(value);
            _degreeOfParallelism = value;
        }
    }

    /// <summary>
    /// How many batches may be decoded ahead of the consumer (at least 1; default 2). Decoding overlaps with whatever the
    /// consumer does with the current batch; memory is bounded by about (PrefetchBatches + 1) batches.
    /// </summary>
    public int PrefetchBatches
    {
        get => _prefetchBatches;
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegativeOrZero(value);
            _prefetchBatches = value;
        }
    }

    /// <summary>
    /// Keep each decoded and resized image in memory (as 8-bit RGB, Height × Width × 3 bytes) so later epochs skip decoding.
    /// Default false.
    /// </summary>
    public bool CacheDecoded { get; set; }

    /// <summary>
    /// Deliver each image channels-last: Height × Width × 3 values, the three channels of a pixel together (see
    /// <see cref="ImageBatch.ChannelsLast"/>), instead of 3 × Height × Width. The values are the same. LibTorch's CPU
    /// convolutions run channels-last memory faster, so a consumer that feeds them can skip a reordering copy of every
    /// batch. Default false.
    /// </summary>
    public bool ChannelsLast { get; set; }

    /// <summary>What to do with a file that fails to decode: throw (default) or skip and list it in <see cref="ImageLoader.Skipped"/>.</summary>
    public BadImagePolicy BadImages
    {
        get => _badImages;
        set
        {
            if (!Enum.IsDefined(value))
            {
                throw new ArgumentOutOfRangeException(nameof(value), value, "Unknown bad-image policy.");
            }

            _badImages = value;
        }
    }

    /// <summary>Decode options (pixel limit, resize override); null for defaults.</summary>
    public ImageDecodeOptions? Decode { get; set; }

    /// <summary>A copy (the decode options copied too), so later changes to these options do not reach a loader.</summary>
    internal ImageLoaderOptions Clone()
    {
        var copy = (ImageLoaderOptions)MemberwiseClone();
        copy.Decode = Decode?.Clone();
        return copy;
    }
}
