using SixLabors.ImageSharp;

namespace TransferLearning.Datasets.Decoding;

/// <summary>Options for turning an encoded image into pixels. Setters check their value.</summary>
public sealed class ImageDecodeOptions
{
    /// <summary>Default largest accepted image: 50 megapixels.</summary>
    public const long DefaultMaxPixels = 50_000_000;

    private long _maxPixels = DefaultMaxPixels;
    private ResizeMode? _resizeMode;

    /// <summary>
    /// Largest accepted width × height (at least 1; default <see cref="DefaultMaxPixels"/>). The header is read first and
    /// a larger image is refused with an <see cref="InvalidImageException"/> before any pixel memory is allocated.
    /// </summary>
    public long MaxPixels
    {
        get => _maxPixels;
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegativeOrZero(value);
            _maxPixels = value;
        }
    }

    /// <summary>
    /// Whether a JPEG that ends before its end-of-image marker is accepted (the missing part decodes as grey/black).
    /// Default false: such a file is refused as truncated, as libjpeg-based loaders (TensorFlow, PIL) do.
    /// </summary>
    public bool AllowTruncatedJpeg { get; set; }

    /// <summary>
    /// Whether a PNG whose compressed pixel data holds fewer rows than its header declares is accepted (the missing rows
    /// decode as black). Default false: such a file is refused as truncated, as PIL does.
    /// </summary>
    public bool AllowTruncatedPng { get; set; }

    /// <summary>Resize mode to use instead of the spec's <see cref="InputSpec.ResizeMode"/>; null (default) keeps the spec's.</summary>
    public ResizeMode? ResizeMode
    {
        get => _resizeMode;
        set
        {
            if (value is { } mode && !Enum.IsDefined(mode))
            {
                throw new ArgumentOutOfRangeException(nameof(value), value, "Unknown resize mode.");
            }

            _resizeMode = value;
        }
    }

    /// <summary>
    /// ImageSharp configuration to decode with; null (default) uses a library default that decodes only the first frame
    /// of animations. The data pipeline uses one with <c>MaxDegreeOfParallelism = 1</c> because it parallelises across images.
    /// </summary>
    public Configuration? Configuration { get; set; }

    /// <summary>The defaults, shared inside the library (never handed out).</summary>
    internal static ImageDecodeOptions Default { get; } = new();

    /// <summary>A copy of these options (a consumer keeps one, so later changes here do not reach it).</summary>
    public ImageDecodeOptions Clone() => (ImageDecodeOptions)MemberwiseClone();
}
