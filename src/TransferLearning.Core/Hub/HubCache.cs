using System.Net;
using System.Security.Cryptography;
using System.Text;

namespace TransferLearning.Hub;

/// <summary>
/// The download cache: one folder per URL, the file under its own name, and a sidecar <c>.sha256</c> written only after
/// the file was completely downloaded, verified and moved into place (a file without a valid sidecar is refetched).
/// Concurrent fetches of one URL (threads or processes) serialise on an exclusive lock file.
/// </summary>
internal sealed class HubCache
{
    private static readonly TimeSpan LockWait = TimeSpan.FromMinutes(30);

    public HubCache(string directory, HttpClient? client = null, int maxAttempts = 3, TimeSpan? retryDelay = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        Directory = Path.GetFullPath(directory);
        Client = client ?? SharedClient.Value;
        MaxAttempts = maxAttempts;
        RetryDelay = retryDelay ?? TimeSpan.FromSeconds(1);
    }

    private static readonly Lazy<HttpClient> SharedClient = new(() => new HttpClient { Timeout = Timeout.InfiniteTimeSpan });

    public string Directory { get; }

    public HttpClient Client { get; }

    public int MaxAttempts { get; }

    public TimeSpan RetryDelay { get; }

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
    public async Task<string> GetAsync(Uri url, string? sha256, IProgress<DownloadProgress>? progress, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(url);
        if (url.Scheme != Uri.UriSchemeHttp && url.Scheme != Uri.UriSchemeHttps)
        {
            throw new ArgumentException($"Only http and https URLs can be downloaded; got '{url}'.", nameof(url));
        }

        var expected = sha256?.Trim().ToLowerInvariant();
        if (expected is not null && (expected.Length != 64 || !expected.All(Uri.IsHexDigit)))
        {
            throw new ArgumentException($"The SHA-256 '{sha256}' is not 64 hexadecimal digits.", nameof(sha256));
        }

        var entry = EntryPath(url);
        if (IsValid(entry, expected))
        {
            return entry;
        }

        System.IO.Directory.CreateDirectory(Path.GetDirectoryName(entry)!);
        using (await AcquireLockAsync(entry + ".lock", cancellationToken).ConfigureAwait(false))
        {
            // Another thread or process may have finished it while we waited.
            if (IsValid(entry, expected))
            {
                return entry;
            }

            File.Delete(entry + ".sha256");
            for (var attempt = 1; ; attempt++)
            {
                try
                {
                    var hash = await DownloadOnceAsync(url, entry, expected, progress, cancellationToken).ConfigureAwait(false);
                    WriteSidecar(entry, hash);
                    return entry;
                }
                catch (Exception ex) when (attempt < MaxAttempts && IsTransient(ex, cancellationToken))
                {
                    await Task.Delay(RetryDelay * attempt, cancellationToken).ConfigureAwait(false);
                }
            }
        }
    }

    private static bool IsTransient(Exception ex, CancellationToken ct) => ex switch
    {
        OperationCanceledException when ct.IsCancellationRequested => false,
        HttpRequestException { StatusCode: null } => true,
        HttpRequestException { StatusCode: { } code } => (int)code >= 500 || code is HttpStatusCode.RequestTimeout or HttpStatusCode.TooManyRequests,
        IOException => true,
        OperationCanceledException => true, // a timeout, not the caller's cancellation
        _ => false,
    };

    private async Task<string> DownloadOnceAsync(Uri url, string entry, string? expected, IProgress<DownloadProgress>? progress, CancellationToken ct)
    {
        var temp = $"{entry}.{Environment.ProcessId}.{Guid.NewGuid():N}.part";
        try
        {
            using var response = await Client.GetAsync(url, HttpCompletionOption.ResponseHeadersRead, ct).ConfigureAwait(false);
            if (!response.IsSuccessStatusCode)
            {
                throw new HttpRequestException($"Downloading '{url}' failed: HTTP {(int)response.StatusCode} {response.ReasonPhrase}.", null, response.StatusCode);
            }

            var total = response.Content.Headers.ContentLength;
            using var hasher = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            long received = 0;
            var stream = await response.Content.ReadAsStreamAsync(ct).ConfigureAwait(false);
            await using (stream.ConfigureAwait(false))
            {
                var file = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, useAsync: true);
                await using (file.ConfigureAwait(false))
                {
                    var buffer = new byte[1 << 16];
                    int read;
                    progress?.Report(new DownloadProgress(url, 0, total));
                    while ((read = await stream.ReadAsync(buffer, ct).ConfigureAwait(false)) > 0)
                    {
                        await file.WriteAsync(buffer.AsMemory(0, read), ct).ConfigureAwait(false);
                        hasher.AppendData(buffer, 0, read);
                        received += read;
                        progress?.Report(new DownloadProgress(url, received, total));
                    }

                    await file.FlushAsync(ct).ConfigureAwait(false);
                }
            }

            if (total is { } t && t != received)
            {
                throw new IOException($"Downloading '{url}' ended after {received} of {t} bytes.");
            }

            var hash = Convert.ToHexStringLower(hasher.GetHashAndReset());
            if (expected is not null && hash != expected)
            {
                throw new InvalidDataException($"The file downloaded from '{url}' has SHA-256 {hash}, but {expected} was expected. It was not cached.");
            }

            File.Move(temp, entry, overwrite: true);
            return hash;
        }
        finally
        {
            TryDelete(temp);
        }
    }

    private static void WriteSidecar(string entry, string hash)
    {
        var info = new FileInfo(entry);
        var temp = $"{entry}.sha256.{Guid.NewGuid():N}.tmp";
        File.WriteAllText(temp, $"{hash} {info.Length}\n");
        File.Move(temp, entry + ".sha256", overwrite: true);
    }

    /// <summary>True when the entry exists, its sidecar matches its size, and the expected hash (if any) matches.</summary>
    internal static bool IsValid(string entry, string? expected)
    {
        try
        {
            var sidecar = entry + ".sha256";
            if (!File.Exists(entry) || !File.Exists(sidecar))
            {
                return false;
            }

            var parts = File.ReadAllText(sidecar).Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            return parts.Length == 2 && long.TryParse(parts[1], out var length) && length == new FileInfo(entry).Length
                && (expected is null || parts[0] == expected);
        }
        catch (IOException)
        {
            return false;
        }
    }

    private static async Task<FileStream> AcquireLockAsync(string path, CancellationToken ct)
    {
        var start = DateTime.UtcNow;
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            try
            {
                return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.None);
            }
            catch (IOException) when (DateTime.UtcNow - start < LockWait)
            {
                await Task.Delay(100, ct).ConfigureAwait(false);
            }
        }
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}
