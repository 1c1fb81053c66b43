using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;

namespace TransferLearning.Downloads;

/// <summary>What <see cref="FileDownloader"/> fetches and how.</summary>
/// <param name="Url">http(s) URL.</param>
/// <param name="Destination">Final path of the file; <c>.part</c>, <c>.lock</c> and <c>.sha256</c> files sit beside it.</param>
internal sealed record DownloadRequest(Uri Url, string Destination)
{
    /// <summary>Expected SHA-256 (hex, any case); null accepts any content.</summary>
    public string? Sha256 { get; init; }

    /// <summary>Retries, their delay, the stall timeout and the client; the caller's own copy (defaults: <see cref="DownloadOptions"/>'s).</summary>
    public DownloadOptions Options { get; init; } = new();

    /// <summary>Longest wait for another thread or process that is fetching the same file.</summary>
    public TimeSpan LockTimeout { get; init; } = TimeSpan.FromMinutes(30);

    /// <summary>
    /// Checks a complete file before it is cached (and a cached file before it is reused): returns why the file cannot
    /// be what was asked for (e.g. "is an HTML page, not a model file"), or null when it may be. A file that fails is
    /// deleted, never cached; a cached one that fails is fetched again. Null accepts any content.
    /// </summary>
    public Func<string, string?>? Validate { get; init; }

    /// <summary>
    /// When true the <c>.part</c> file survives failure and cancellation and the next call resumes it; when false it is
    /// deleted when the call ends without success (a dropped connection is still resumed within the call).
    /// </summary>
    public bool KeepPartialFile { get; init; }
}

/// <summary>
/// The one downloader behind the model hub and the dataset catalog. Concurrent fetches of one file (threads or processes)
/// serialise on an exclusive <c>.lock</c> file, so the file is downloaded once. Bytes go to a <c>.part</c> file; a dropped
/// or stalled transfer is retried with exponential backoff and resumed with an HTTP Range request. The complete file is
/// checked against the expected SHA-256, moved into place atomically, and only then a <c>.sha256</c> sidecar
/// (<c>hash length</c>) is written: a file without a matching sidecar is refetched (or adopted when it has the expected hash).
/// </summary>
internal static class FileDownloader
{
    /// <summary>Key of the actual hash in <see cref="Exception.Data"/> of a checksum mismatch.</summary>
    public const string ActualSha256Key = "ActualSha256";

    private const int ReportEvery = 1 << 18;

    private static readonly Lazy<HttpClient> SharedClient = new(() =>
        new HttpClient(new SocketsHttpHandler { ConnectTimeout = TimeSpan.FromSeconds(60) }) { Timeout = Timeout.InfiniteTimeSpan });

    public static string PartPath(string destination) => destination + ".part";

    public static string SidecarPath(string destination) => destination + ".sha256";

    public static string LockPath(string destination) => destination + ".lock";

    /// <summary>Validates and lower-cases a SHA-256; null stays null.</summary>
    /// <exception cref="ArgumentException">Not 64 hexadecimal digits.</exception>
    public static string? NormalizeSha256(string? sha256, string paramName)
    {
        var value = sha256?.Trim().ToLowerInvariant();
        if (value is not null && (value.Length != 64 || !value.All(Uri.IsHexDigit)))
        {
            throw new ArgumentException($"The SHA-256 '{sha256}' is not 64 hexadecimal digits.", paramName);
        }

        return value;
    }

    /// <summary>
    /// True for failures worth retrying: connection and I/O errors, timeouts and stalls, HTTP 5xx, 408 and 429 — never the
    /// caller's cancellation, another HTTP status, or a checksum mismatch.
    /// </summary>
    public static bool IsTransient(Exception ex, CancellationToken cancellationToken) => ex switch
    {
        OperationCanceledException when cancellationToken.IsCancellationRequested => false,
        HttpRequestException { StatusCode: null } => true,
        HttpRequestException { StatusCode: { } code } => (int)code >= 500 || code is HttpStatusCode.RequestTimeout or HttpStatusCode.TooManyRequests,
        IOException or TimeoutException => true,
        OperationCanceledException => true, // a client timeout, not the caller's cancellation
        _ => false,
    };

    /// <summary>True when the file exists, its sidecar matches its size, and the expected hash (if any) matches the sidecar.</summary>
    public static bool IsValid(string destination, string? expectedSha256)
    {
        try
        {
            var sidecar = SidecarPath(destination);
            if (!File.Exists(destination) || !File.Exists(sidecar))
            {
                return false;
            }

            var parts = File.ReadAllText(sidecar).Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            return parts.Length == 2 && long.TryParse(parts[1], out var length) && length == new FileInfo(destination).Length
                && (expectedSha256 is null || parts[0] == expectedSha256);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>Returns <see cref="DownloadRequest.Destination"/>, downloading it first when missing, partial, corrupt or of another hash.</summary>
    /// <exception cref="HttpRequestException">The server answered with an error status (after retries for 5xx, 408, 429).</exception>
    /// <exception cref="InvalidDataException">The file's SHA-256 differs from the expected one (the data was deleted).</exception>
    /// <exception cref="IOException">The transfer kept failing; the last error is thrown.</exception>
    public static async Task<string> DownloadAsync(DownloadRequest request, IProgress<DownloadProgress>? progress, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        var url = request.Url;
        if (url.Scheme != Uri.UriSchemeHttp && url.Scheme != Uri.UriSchemeHttps)
        {
            throw new ArgumentException($"Only http and https URLs can be downloaded; got '{url}'.", nameof(request));
        }

        var expected = NormalizeSha256(request.Sha256, nameof(request));
        var destination = Path.GetFullPath(request.Destination);
        if (IsValid(destination, expected) && request.Validate?.Invoke(destination) is null)
        {
            return destination;
        }

        Directory.CreateDirectory(Path.GetDirectoryName(destination)!);
        using (await AcquireLockAsync(LockPath(destination), request.LockTimeout, cancellationToken).ConfigureAwait(false))
        {
            // Another thread or process may have finished it while we waited.
            if (IsValid(destination, expected) && request.Validate?.Invoke(destination) is null)
            {
                return destination;
            }

            File.Delete(SidecarPath(destination));
            if (File.Exists(destination))
            {
                // A file without a sidecar is trusted only when it has the expected hash (e.g. placed there by hand).
                var length = new FileInfo(destination).Length;
                if (expected is not null && await HashAsync(destination, cancellationToken).ConfigureAwait(false) == expected)
                {
                    WriteSidecar(destination, expected, length);
                    return destination;
                }

                File.Delete(destination);
            }

            await FetchAsync(request, destination, expected, progress, cancellationToken).ConfigureAwait(false);
            return destination;
        }
    }

    private static async Task FetchAsync(DownloadRequest request, string destination, string? expected, IProgress<DownloadProgress>? progress, CancellationToken ct)
    {
        var part = PartPath(destination);
        if (!request.KeepPartialFile)
        {
            File.Delete(part);
        }

        var succeeded = false;
        try
        {
            var client = request.Options.HttpClient ?? SharedClient.Value;
            var state = new TransferState();
            for (var attempt = 1; ; attempt++)
            {
                try
                {
                    await TransferOnceAsync(client, request, part, state, progress, ct).ConfigureAwait(false);
                    break;
                }
                catch (Exception ex) when (attempt < request.Options.MaxAttempts && IsTransient(ex, ct))
                {
                    var delay = request.Options.RetryDelay * Math.Pow(2, attempt - 1);
                    if (delay > TimeSpan.Zero)
                    {
                        await Task.Delay(delay, ct).ConfigureAwait(false);
                    }
                }
            }

            var length = new FileInfo(part).Length;
            progress?.Report(new DownloadProgress(request.Url, length, length) { Stage = DownloadStage.Verifying });
            var actual = await HashAsync(part, ct).ConfigureAwait(false);
            if (expected is not null && actual != expected)
            {
                File.Delete(part);
                var ex = new InvalidDataException(
                    $"The file downloaded from '{request.Url}' has SHA-256 {actual}, but {expected} was expected. It was deleted, not cached.");
                ex.Data[ActualSha256Key] = actual;
                throw ex;
            }

            if (request.Validate?.Invoke(part) is { } problem)
            {
                File.Delete(part);
                throw new InvalidDataException($"The file downloaded from '{request.Url}' {problem}. It was not cached; it will be fetched again next time.");
            }

            File.Move(part, destination, overwrite: true);
            WriteSidecar(destination, actual, length);
            succeeded = true;
        }
        finally
        {
            if (!succeeded && !request.KeepPartialFile)
            {
                TryDelete(part);
            }
        }
    }

    /// <summary>What one call learns across its attempts.</summary>
    private sealed class TransferState
    {
        /// <summary>Strong validator of the first response, sent as If-Range so a changed file is restarted, not spliced.</summary>
        public EntityTagHeaderValue? ETag { get; set; }
    }

    private static async Task TransferOnceAsync(
        HttpClient client, DownloadRequest request, string part, TransferState state, IProgress<DownloadProgress>? progress, CancellationToken ct)
    {
        var url = request.Url;
        var existing = File.Exists(part) ? new FileInfo(part).Length : 0;
        using var message = new HttpRequestMessage(HttpMethod.Get, url);
        if (existing > 0)
        {
            message.Headers.Range = new RangeHeaderValue(existing, null);
            if (state.ETag is { } etag)
            {
                message.Headers.IfRange = new RangeConditionHeaderValue(etag);
            }
        }

        using var stall = CancellationTokenSource.CreateLinkedTokenSource(ct);
        stall.CancelAfter(request.Options.StallTimeout);
        HttpResponseMessage response;
        try
        {
            response = await client.SendAsync(message, HttpCompletionOption.ResponseHeadersRead, stall.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException ex) when (!ct.IsCancellationRequested && stall.IsCancellationRequested)
        {
            throw new TimeoutException($"no response from {url} within {request.Options.StallTimeout.TotalSeconds:0.#} s", ex);
        }

        using (response)
        {
            if (response.StatusCode == HttpStatusCode.RequestedRangeNotSatisfiable && existing > 0)
            {
                // The server will not continue from here: start again from scratch; the hash decides.
                File.Delete(part);
                throw new HttpRequestException($"the server refused to resume {url} at byte {existing}");
            }

            if (!response.IsSuccessStatusCode)
            {
                throw new HttpRequestException(
                    $"Downloading {url} failed: HTTP {(int)response.StatusCode} {response.ReasonPhrase}.", null, response.StatusCode);
            }

            if (response.Headers.ETag is { IsWeak: false } responseTag && existing == 0)
            {
                state.ETag = responseTag;
            }

            var range = response.Content.Headers.ContentRange;
            var append = existing > 0 && response.StatusCode == HttpStatusCode.PartialContent && range?.From == existing;
            if (response.StatusCode == HttpStatusCode.PartialContent && !append)
            {
                File.Delete(part);
                throw new HttpRequestException($"the server answered {url} with an unexpected range ({range}); starting again");
            }

            var start = append ? existing : 0;
            long? total = response.Content.Headers.ContentLength is { } length ? start + length : range?.Length;
            var output = new FileStream(part, append ? FileMode.Append : FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16, useAsync: true);
            await using (output.ConfigureAwait(false))
            {
                var input = await response.Content.ReadAsStreamAsync(ct).ConfigureAwait(false);
                await using (input.ConfigureAwait(false))
                {
                    var buffer = new byte[1 << 16];
                    long received = start, lastReport = start;
                    progress?.Report(new DownloadProgress(url, received, total));
                    int n;
                    while ((n = await ReadWithStallTimeoutAsync(input, buffer, stall, request.Options.StallTimeout, ct).ConfigureAwait(false)) > 0)
                    {
                        await output.WriteAsync(buffer.AsMemory(0, n), ct).ConfigureAwait(false);
                        received += n;
                        if (received - lastReport >= ReportEvery)
                        {
                            lastReport = received;
                            progress?.Report(new DownloadProgress(url, received, total));
                        }
                    }

                    await output.FlushAsync(ct).ConfigureAwait(false);
                    progress?.Report(new DownloadProgress(url, received, total));
                    if (total is { } t && received != t)
                    {
                        throw new IOException($"the connection to {url} closed after {received} of {t} bytes");
                    }
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
            throw new TimeoutException($"no data received for {timeout.TotalSeconds:0.#} s", ex);
        }
    }

    private static async Task<string> HashAsync(string path, CancellationToken ct)
    {
        var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, useAsync: true);
        await using (fs.ConfigureAwait(false))
        {
            return Convert.ToHexStringLower(await SHA256.HashDataAsync(fs, ct).ConfigureAwait(false));
        }
    }

    private static void WriteSidecar(string destination, string hash, long length)
    {
        var sidecar = SidecarPath(destination);
        var temp = $"{sidecar}.{Guid.NewGuid():N}.tmp";
        File.WriteAllText(temp, $"{hash} {length}\n");
        File.Move(temp, sidecar, overwrite: true);
    }

    private static async Task<FileStream> AcquireLockAsync(string path, TimeSpan timeout, CancellationToken ct)
    {
        var start = DateTime.UtcNow;
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            try
            {
                return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.None);
            }
            catch (IOException ex)
            {
                if (DateTime.UtcNow - start >= timeout)
                {
                    throw new IOException(
                        $"Waited {timeout.TotalMinutes:0.#} min for '{path}', held by another download of the same file; " +
                        "if no other download is running, delete the lock file and try again.", ex);
                }

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
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // Best effort: a leftover partial file is removed by the next call.
        }
    }
}
