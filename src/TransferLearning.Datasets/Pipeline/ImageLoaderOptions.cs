using TransferLearning.Datasets.Decoding;

namespace TransferLearning.Datasets.Pipeline;

/// <summary>Options for <see cref="ImageLoader"/>.</summary>
public sealed class ImageLoaderOptions
{
    /// <summary>Images per batch (default 32). The last batch of an epoch may be smaller unless <see cref="DropLast"/>.</summary>
    public int BatchSize { get; set; } = 32;

    /// <summary>Whether to shuffle the order each epoch (reproducibly from <see cref="Seed"/> and the epoch number). Default false.</summary>
    public bool Shuffle { get; set; }

    /// <summary>Seed of the per-epoch shuffle.</summary>
    public int Seed { get; set; }

    /// <summary>Whether to leave out the last batch of an epoch when it is smaller than <see cref="BatchSize"/>. Default false.</summary>
    public bool DropLast { get; set; }

    /// <summary>Number of images decoded at the same time (default <see cref="Environment.ProcessorCount"/>).</summary>
    public int DegreeOfParallelism { get; set; } = Environment.ProcessorCount;

    /// <summary>
    /// How many batches may be decoded ahead of the consumer (default 2). Decoding overlaps with whatever the consumer
    /// does with the current batch; memory is bounded by about (PrefetchBatches + 1) batches.
    /// </summary>
    public int PrefetchBatches { get; set; } = 2;

    /// <summary>
    /// Keep each decoded and resized image in memory (as 8-bit RGB, Height × Width × 3 bytes) so later epochs skip decoding.
    /// Default false.
    /// </summary>
    public bool CacheDecoded { get; set; }

    /// <summary>What to do with a file that fails to decode: throw (default) or skip and list it in <see cref="ImageLoader.Skipped"/>.</summary>
    public BadImagePolicy BadImages { get; set; } = BadImagePolicy.Fail;

    /// <summary>Decode options (pixel limit, resize override); null for defaults.</summary>
    public ImageDecodeOptions? Decode { get; set; }
}
