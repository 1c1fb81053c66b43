using System.Globalization;

namespace WebPredict;

/// <summary>
/// The sample's configuration (appsettings.json, environment variables such as <c>Model__Path</c>, or the command line
/// such as <c>--Model:Path=flowers.onnx</c>), read and checked once at startup.
/// </summary>
public sealed record WebPredictSettings
{
    /// <summary>Default upload limit: 10 MiB, above any ordinary phone photo.</summary>
    public const long DefaultMaxUploadBytes = 10 * 1024 * 1024;

    /// <summary>Default topK of <c>POST /predict</c>.</summary>
    public const int DefaultTopK = 5;

    /// <summary>The exported classifier (<c>Model:Path</c>, required).</summary>
    public required string ModelPath { get; init; }

    /// <summary>
    /// ONNX Runtime threads per prediction (<c>Model:IntraOpThreads</c>, default 1): a server gets its parallelism from
    /// concurrent requests, so each one runs on its own thread.
    /// </summary>
    public int IntraOpThreads { get; init; } = 1;

    /// <summary>Largest accepted image file (<c>Upload:MaxBytes</c>, default 10 MiB); larger uploads get 413.</summary>
    public long MaxUploadBytes { get; init; } = DefaultMaxUploadBytes;

    /// <summary>
    /// Largest accepted width × height (<c>Upload:MaxPixels</c>, default 50 megapixels), checked from the image header
    /// before any pixel memory is allocated, so a small file that declares a huge image is refused cheaply.
    /// </summary>
    public long MaxPixels { get; init; } = TransferLearning.Datasets.Decoding.ImageDecodeOptions.DefaultMaxPixels;

    /// <summary>Reads and checks the settings.</summary>
    /// <param name="configuration">The app configuration.</param>
    /// <returns>The settings.</returns>
    /// <exception cref="InvalidOperationException">A setting is missing or out of range; the message says which and how to set it.</exception>
    public static WebPredictSettings Read(IConfiguration configuration)
    {
        var path = configuration["Model:Path"];
        if (string.IsNullOrWhiteSpace(path))
        {
            throw new InvalidOperationException(
                "No model configured: set Model:Path to an exported .onnx classifier (appsettings.json, the environment " +
                "variable Model__Path, or --Model:Path=FILE on the command line).");
        }

        return new WebPredictSettings
        {
            ModelPath = Path.GetFullPath(path),
            IntraOpThreads = (int)Number(configuration, "Model:IntraOpThreads", 1, 0, 1024),
            MaxUploadBytes = Number(configuration, "Upload:MaxBytes", DefaultMaxUploadBytes, 1, 1L << 30),
            MaxPixels = Number(configuration, "Upload:MaxPixels", TransferLearning.Datasets.Decoding.ImageDecodeOptions.DefaultMaxPixels, 1, 1L << 32),
        };
    }

    private static long Number(IConfiguration configuration, string key, long fallback, long min, long max)
    {
        var text = configuration[key];
        if (string.IsNullOrWhiteSpace(text))
        {
            return fallback;
        }

        if (!long.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var value) || value < min || value > max)
        {
            throw new InvalidOperationException($"{key} must be an integer from {min} to {max}; got '{text}'.");
        }

        return value;
    }
}
