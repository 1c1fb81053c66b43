using TransferLearning.Datasets;
using TransferLearning.Downloads;

namespace TransferLearning.Catalog;

/// <summary>Options for <see cref="TfFlowers.LoadAsync"/>.</summary>
public sealed class TfFlowersOptions
{
    /// <summary>Published location of the archive.</summary>
    public const string DefaultUrl = "https://storage.googleapis.com/download.tensorflow.org/example_images/flower_photos.tgz";

    /// <summary>SHA-256 of the published archive.</summary>
    public const string DefaultSha256 = "4c54ace7911aaffe13a365c34f650e71dd5bf1be0a58b464e5a7183e3e595d9c";

    private DownloadOptions _download = new();

    /// <summary>Where datasets are kept; null uses <see cref="DatasetCache.DefaultDirectory"/>.</summary>
    public string? CacheDirectory { get; set; }

    /// <summary>Archive URL (override for mirrors or tests).</summary>
    public Uri Url { get; set; } = new(DefaultUrl);

    /// <summary>Expected SHA-256 of the archive (hex).</summary>
    public string Sha256 { get; set; } = DefaultSha256;

    /// <summary>
    /// How the archive is downloaded (retries, stall timeout, HTTP client); setting it stores a copy. Default: the
    /// <see cref="DownloadOptions"/> defaults.
    /// </summary>
    public DownloadOptions Download
    {
        get => _download;
        set => _download = value?.Clone() ?? throw new ArgumentNullException(nameof(value));
    }

    /// <summary>Options for loading the extracted folder.</summary>
    public ImageFolderOptions? FolderOptions { get; set; }
}

/// <summary>
/// The TensorFlow flowers photos (3,670 photos of daisy, dandelion, roses, sunflowers, tulips; CC-BY licensed, see the
/// LICENSE.txt in the extracted folder). Downloaded once into the dataset cache, verified by SHA-256, extracted safely
/// and atomically.
/// </summary>
public static class TfFlowers
{
    /// <summary>Folder name inside the cache.</summary>
    public const string Name = "tf_flowers";

    /// <summary>Downloads (if needed), verifies, extracts (if needed) and loads the flowers photos.</summary>
    /// <param name="options">Options; null for defaults.</param>
    /// <param name="progress">Receives download, verification and extraction progress; null for none.</param>
    /// <param name="cancellationToken">Stops the download; a partial download is kept and resumed next time.</param>
    /// <returns>The image folder (classes daisy, dandelion, roses, sunflowers, tulips).</returns>
    /// <exception cref="DatasetDownloadException">The download failed after retries, the hash did not match, or the archive is unsafe.</exception>
    public static async Task<ImageFolder> LoadAsync(
        TfFlowersOptions? options = null,
        IProgress<DownloadProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        options ??= new TfFlowersOptions();
        var folder = await DatasetCache.FetchAsync(
            new DatasetCache.Request(Name, options.Url, options.Sha256, "flower_photos.tgz", "flower_photos", options.CacheDirectory, options.Download),
            progress,
            cancellationToken).ConfigureAwait(false);
        return ImageFolder.Load(folder, options.FolderOptions);
    }
}
