using System.Formats.Tar;
using System.IO.Compression;
using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;

namespace TransferLearning.Datasets;

/// <summary>
/// Where catalog datasets are kept, and how they get there: resumable download with retries, SHA-256 verification,
/// safe extraction (regular files and folders only, nothing outside the target) into a temporary folder that is renamed
/// into place only when complete.
/// </summary>
public static class DatasetCache
{
    /// <summary>Environment variable that overrides the cache folder.</summary>
    public const string EnvironmentVariable = "TRANSFERLEARNING_DATA_DIR";

    /// <summary>
    /// The cache folder: <c>$TRANSFERLEARNING_DATA_DIR</c> if set, else <c>$XDG_CACHE_HOME/transferlearning/datasets</c>,
    /// else <c>~/.cache/transferlearning/datasets</c> (on Windows, under the local application data folder).
    /// </summary>
    public static string DefaultDirectory
    {
        get
        {
            var env = Environment.GetEnvironmentVariable(EnvironmentVariable);
            if (!string.IsNullOrWhiteSpace(env))
            {
                return Path.GetFullPath(env);
            }

            if (OperatingSystem.IsWindows())
            {
                return Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData), "transferlearning", "datasets");
            }

            var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
            var root = !string.IsNullOrWhiteSpace(xdg) && Path.IsPathRooted(xdg)
                ? xdg
                : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
            return Path.Combine(root, "transferlearning", "datasets");
        }
    }

    /// <summary>Downloads, verifies and extracts an archive if needed; returns the extracted top-level folder.</summary>
    internal static async Task<string> FetchAsync(Request request, IProgress<DownloadProgress>? progress, CancellationToken ct)
    {
        var dir = Path.Combine(request.CacheDirectory ?? DefaultDirectory, request.Name);
        var expected = request.Sha256.Trim().ToUpperInvariant();
        if (expected.Length != 64 || !expected.All(Uri.IsHexDigit))
        {
            throw new ArgumentException($"'{request.Sha256}' is not a SHA-256 (64 hex digits).", nameof(request));
        }

        var target = Path.Combine(dir, "extracted-" + expected[..16].ToLowerInvariant());
        var top = Path.Combine(target, request.TopFolder);
        if (Directory.Exists(top))
        {
            progress?.Report(new DownloadProgress(DownloadStage.Done, 0, null));
            return top;
        }

        Directory.CreateDirectory(dir);
        RemoveStaleTemporaryFolders(dir);
        var archive = Path.Combine(dir, request.ArchiveName);
        if (File.Exists(archive) && !string.Equals(await HashAsync(archive, ct).ConfigureAwait(false), expected, StringComparison.Ordinal))
        {
            File.Delete(archive);
        }

        if (!File.Exists(archive))
        {
            var part = archive + ".part";
            await DownloadAsync(request, part, progress, ct).ConfigureAwait(false);
            progress?.Report(new DownloadProgress(DownloadStage.Verifying, new FileInfo(part).Length, null));
            var actual = await HashAsync(part, ct).ConfigureAwait(false);
            if (!string.Equals(actual, expected, StringComparison.Ordinal))
            {
                File.Delete(part);
                throw new DatasetDownloadException(
                    $"The archive downloaded from {request.Url} has SHA-256 {actual.ToLowerInvariant()}, expected {expected.ToLowerInvariant()}; " +
                    "the file was deleted. Check the URL and the expected hash, then try again.");
            }

            File.Move(part, archive, overwrite: true);
        }

        progress?.Report(new DownloadProgress(DownloadStage.Extracting, new FileInfo(archive).Length, null));
        var temp = Path.Combine(dir, ".extracting-" + Guid.NewGuid().ToString("N"));
        try
        {
            await ExtractAsync(archive, temp, ct).ConfigureAwait(false);
            if (!Directory.Exists(Path.Combine(temp, request.TopFolder)))
            {
                throw new DatasetDownloadException($"The archive '{archive}' has no top-level '{request.TopFolder}/' folder.");
            }

            try
            {
                Directory.Move(temp, target);
            }
            catch (IOException) when (Directory.Exists(top))
            {
                // Another process finished the same extraction first; use its result.
            }
        }
        finally
        {
            if (Directory.Exists(temp))
            {
                Directory.Delete(temp, recursive: true);
            }
        }

        progress?.Report(new DownloadProgress(DownloadStage.Done, new FileInfo(archive).Length, null));
        return top;
    }

    /// <summary>Extracts a .tar.gz, accepting only folders and regular files whose paths stay inside <paramref name="destination"/>.</summary>
    /// <exception cref="DatasetDownloadException">An entry's path is absolute or leaves the destination.</exception>
    internal static async Task ExtractAsync(string archive, string destination, CancellationToken ct)
    {
        var root = Path.GetFullPath(destination);
        Directory.CreateDirectory(root);
        var fs = File.OpenRead(archive);
        await using (fs.ConfigureAwait(false))
        {
            var gz = new GZipStream(fs, CompressionMode.Decompress);
            await using (gz.ConfigureAwait(false))
            {
                var tar = new TarReader(gz);
                await using (tar.ConfigureAwait(false))
                {
                    while (await tar.GetNextEntryAsync(copyData: false, ct).ConfigureAwait(false) is { } entry)
                    {
                        switch (entry.EntryType)
                        {
                            case TarEntryType.Directory:
                                Directory.CreateDirectory(SafePath(root, entry.Name, archive));
                                break;
                            case TarEntryType.RegularFile or TarEntryType.V7RegularFile or TarEntryType.ContiguousFile:
                                var path = SafePath(root, entry.Name, archive);
                                Directory.CreateDirectory(Path.GetDirectoryName(path)!);
                                var output = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 81920, useAsync: true);
                                await using (output.ConfigureAwait(false))
                                {
                                    if (entry.DataStream is { } data)
                                    {
                                        await data.CopyToAsync(output, ct).ConfigureAwait(false);
                                    }
                                }

                                break;
                            default:
                                // Links, devices, FIFOs and metadata entries are never materialised.
                                break;
                        }
                    }
                }
            }
        }
    }

    /// <summary>Resolves an archive entry name under <paramref name="root"/>, refusing anything that would land outside it.</summary>
    internal static string SafePath(string root, string entryName, string archive)
    {
        var name = entryName.Replace('\\', '/');
        if (name.Length == 0 || name.Contains('\0', StringComparison.Ordinal) || name.StartsWith('/') || Path.IsPathRooted(name) ||
            name.Split('/').Any(s => s == ".."))
        {
            throw new DatasetDownloadException($"The archive '{archive}' contains an unsafe entry '{entryName}' (absolute or leaving the target folder); extraction refused.");
        }

        var full = Path.GetFullPath(Path.Combine(root, name));
        var rootWithSep = root.EndsWith(Path.DirectorySeparatorChar) ? root : root + Path.DirectorySeparatorChar;
        if (!full.StartsWith(rootWithSep, StringComparison.Ordinal) && full != root)
        {
            throw new DatasetDownloadException($"The archive '{archive}' contains an unsafe entry '{entryName}' (absolute or leaving the target folder); extraction refused.");
        }

        return full;
    }

    private static async Task<string> HashAsync(string path, CancellationToken ct)
    {
        var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, useAsync: true);
        await using (fs.ConfigureAwait(false))
        {
            return Convert.ToHexString(await SHA256.HashDataAsync(fs, ct).ConfigureAwait(false));
        }
    }

    private static async Task DownloadAsync(Request request, string part, IProgress<DownloadProgress>? progress, CancellationToken ct)
    {
        var ownClient = request.HttpClient is null;
        var client = request.HttpClient ?? new HttpClient { Timeout = TimeSpan.FromMinutes(30) };
        try
        {
            for (var attempt = 0; ; attempt++)
            {
                try
                {
                    await DownloadOnceAsync(client, request, part, progress, ct).ConfigureAwait(false);
                    return;
                }
                catch (Exception ex) when (IsTransient(ex, ct))
                {
                    if (attempt >= request.MaxRetries)
                    {
                        throw new DatasetDownloadException(
                            $"Downloading {request.Url} failed after {attempt + 1} attempt(s): {ex.Message}. The partial file '{part}' is kept; run again to resume.", ex);
                    }

                    var delay = request.RetryDelay * Math.Pow(2, attempt);
                    if (delay > TimeSpan.Zero)
                    {
                        await Task.Delay(delay, ct).ConfigureAwait(false);
                    }
                }
            }
        }
        finally
        {
            if (ownClient)
            {
                client.Dispose();
            }
        }
    }

    private static bool IsTransient(Exception ex, CancellationToken ct) =>
        ex is not DatasetDownloadException && !ct.IsCancellationRequested &&
        (ex is HttpRequestException or IOException or TaskCanceledException or TimeoutException);

    private static async Task DownloadOnceAsync(HttpClient client, Request req, string part, IProgress<DownloadProgress>? progress, CancellationToken ct)
    {
        var url = req.Url;
        var existing = File.Exists(part) ? new FileInfo(part).Length : 0;
        using var request = new HttpRequestMessage(HttpMethod.Get, url);
        if (existing > 0)
        {
            request.Headers.Range = new RangeHeaderValue(existing, null);
        }

        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct).ConfigureAwait(false);
        if (response.StatusCode == HttpStatusCode.RequestedRangeNotSatisfiable && existing > 0)
        {
            // Already complete (or the server disagrees): start again from scratch; the hash decides.
            File.Delete(part);
            throw new HttpRequestException($"the server refused to resume at byte {existing}");
        }

        var code = (int)response.StatusCode;
        if (!response.IsSuccessStatusCode)
        {
            var message = $"Downloading {url} failed: HTTP {code} {response.ReasonPhrase}.";
            if (code is >= 400 and < 500 and not 408 and not 429)
            {
                throw new DatasetDownloadException(message + " Check the URL (TfFlowersOptions.Url).");
            }

            throw new HttpRequestException(message, null, response.StatusCode);
        }

        var append = existing > 0 && response.StatusCode == HttpStatusCode.PartialContent &&
            response.Content.Headers.ContentRange?.From == existing;
        var length = response.Content.Headers.ContentLength;
        var start = append ? existing : 0;
        long? total = length is { } l ? start + l : null;
        var output = new FileStream(part, append ? FileMode.Append : FileMode.Create, FileAccess.Write, FileShare.None, 81920, useAsync: true);
        await using (output.ConfigureAwait(false))
        {
            var input = await response.Content.ReadAsStreamAsync(ct).ConfigureAwait(false);
            await using (input.ConfigureAwait(false))
            {
                var buffer = new byte[81920];
                long received = start, lastReport = 0;
                int n;
                using var stall = CancellationTokenSource.CreateLinkedTokenSource(ct);
                while ((n = await ReadWithStallTimeoutAsync(input, buffer, stall, req.StallTimeout, ct).ConfigureAwait(false)) > 0)
                {
                    await output.WriteAsync(buffer.AsMemory(0, n), ct).ConfigureAwait(false);
                    received += n;
                    if (received - lastReport >= 1 << 20)
                    {
                        lastReport = received;
                        progress?.Report(new DownloadProgress(DownloadStage.Downloading, received, total));
                    }
                }

                progress?.Report(new DownloadProgress(DownloadStage.Downloading, received, total));
                if (total is { } t && received != t)
                {
                    throw new IOException($"the connection closed after {received} of {t} bytes");
                }
            }
        }
    }

    private static async Task<int> ReadWithStallTimeoutAsync(Stream input, byte[] buffer, CancellationTokenSource stall, TimeSpan timeout, CancellationToken ct)
    {
        stall.CancelAfter(timeout);
        try
        {
            return await input.ReadAsync(buffer, stall.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException ex) when (!ct.IsCancellationRequested)
        {
            throw new TimeoutException($"no data received for {timeout.TotalSeconds:0} s", ex);
        }
        finally
        {
            if (!stall.IsCancellationRequested)
            {
                stall.CancelAfter(Timeout.InfiniteTimeSpan);
            }
        }
    }

    /// <summary>Removes extraction folders left by a crashed run (older than an hour, so a concurrent extraction is left alone).</summary>
    private static void RemoveStaleTemporaryFolders(string dir)
    {
        foreach (var stale in Directory.EnumerateDirectories(dir, ".extracting-*"))
        {
            try
            {
                if (Directory.GetLastWriteTimeUtc(stale) < DateTime.UtcNow.AddHours(-1))
                {
                    Directory.Delete(stale, recursive: true);
                }
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // Best effort: a folder that cannot be removed now is tried again next time.
            }
        }
    }

    /// <summary>What to fetch.</summary>
    internal sealed record Request(
        string Name, Uri Url, string Sha256, string ArchiveName, string TopFolder, string? CacheDirectory, int MaxRetries, TimeSpan RetryDelay, HttpClient? HttpClient)
    {
        /// <summary>Longest wait for the next bytes before the transfer is retried.</summary>
        public TimeSpan StallTimeout { get; init; } = TimeSpan.FromSeconds(60);
    }
}
