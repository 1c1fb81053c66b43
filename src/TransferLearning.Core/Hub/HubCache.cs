using System.Security.Cryptography;
using System.Text;
using TransferLearning.Downloads;

namespace TransferLearning.Hub;

/// <summary>
/// The model cache layout: one folder per URL with the file under its own name. Fetching goes through the shared
/// <see cref="FileDownloader"/> (lock file so concurrent processes fetch once, resume, retries, SHA-256, <c>.sha256</c> sidecar).
/// </summary>
internal sealed class HubCache
{
    private readonly DownloadOptions _download;

    /// <summary>A cache in <paramref name="directory"/>.</summary>
    /// <param name="directory">The cache folder.</param>
    /// <param name="download">Retries, stall timeout and client; copied. Null uses the defaults.</param>
    public HubCache(string directory, DownloadOptions? download = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        Directory = Path.GetFullPath(directory);
        _download = download?.Clone() ?? new DownloadOptions();
    }

    public string Directory { get; }

    /// <summary>Where a URL is cached.</summary>
    public string EntryPath(Uri url)
    {
        var key = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(url.AbsoluteUri)))[..16];
        var name = Uri.UnescapeDataString(url.Segments.LastOrDefault() ?? "").Trim('/');
        var safe = new string(name.Select(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '-' or '_' ? c : '_').ToArray());
        if (safe.Length == 0 || safe.All(c => c == '.'))
        {
            safe = "download";
        }

        return Path.Combine(Directory, key, safe);
    }

    /// <summary>Returns the cached file for <paramref name="url"/>, downloading it first when missing, partial or corrupt.</summary>
    /// <param name="url">What to fetch.</param>
    /// <param name="sha256">Expected SHA-256, or null.</param>
    /// <param name="progress">Receives download progress.</param>
    /// <param name="cancellationToken">Cancels the download.</param>
    /// <param name="validate">Says why a file cannot be what was asked for (see <see cref="DownloadRequest.Validate"/>); null accepts any.</param>
    public async Task<string> GetAsync(Uri url, string? sha256, IProgress<DownloadProgress>? progress, CancellationToken cancellationToken, Func<string, string?>? validate = null)
    {
        ArgumentNullException.ThrowIfNull(url);
        var request = new DownloadRequest(url, EntryPath(url))
        {
            Sha256 = FileDownloader.NormalizeSha256(sha256, nameof(sha256)),
            Options = _download,
            Validate = validate,
        };
        var path = await FileDownloader.DownloadAsync(request, progress, cancellationToken).ConfigureAwait(false);
        var length = new FileInfo(path).Length;
        progress?.Report(new DownloadProgress(url, length, length) { Stage = DownloadStage.Done });
        return path;
    }
}
