using SixLabors.ImageSharp;

namespace TransferLearning.Datasets.Decoding;

/// <summary>Options for turning an encoded image into a tensor.</summary>
public sealed record ImageDecodeOptions
{
    /// <summary>Default largest accepted image: 50 megapixels.</summary>
    public const long DefaultMaxPixels = 50_000_000;

    /// <summary>Shared default options.</summary>
    public static ImageDecodeOptions Default { get; } = new();

    /// <summary>
    /// Largest accepted width × height. The header is read first and a larger image is refused with an
    /// <see cref="InvalidImageException"/> before any pixel memory is allocated.
    /// </summary>
    public long MaxPixels { get; init; } = DefaultMaxPixels;

    /// <summary>
    /// Whether a JPEG that ends before its end-of-image marker is accepted (the missing part decodes as grey/black).
    /// Default false: such a file is refused as truncated, as libjpeg-based loaders (TensorFlow, PIL) do.
    /// </summary>
    public bool AllowTruncatedJpeg { get; init; }

    /// <summary>
    /// Whether a PNG whose compressed pixel data holds fewer rows than its header declares is accepted (the missing rows
    /// decode as black). Default false: such a file is refused as truncated, as PIL does.
    /// </summary>
    public bool AllowTruncatedPng { get; init; }

    /// <summary>Resize mode to use instead of the spec's <see cref="InputSpec.ResizeMode"/>; null keeps the spec's.</summary>
    public ResizeMode? ResizeMode { get; init; }

    /// <summary>
    /// ImageSharp configuration to decode with; null uses a library default that decodes only the first frame of
    /// animations. The data pipeline passes one with <c>MaxDegreeOfParallelism = 1</c> because it parallelises across images.
    /// </summary>
    public Configuration? Configuration { get; init; }
}
