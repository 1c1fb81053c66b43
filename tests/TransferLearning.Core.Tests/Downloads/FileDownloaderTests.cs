using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using TransferLearning.Downloads;

namespace TransferLearning.Core.Tests.Downloads;

/// <summary>The one downloader, on its own, against a loopback server.</summary>
public sealed class FileDownloaderTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private static byte[] Content(int size, int seed)
    {
        var bytes = new byte[size];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    private static string Sha(byte[] data) => Convert.ToHexStringLower(SHA256.HashData(data));

    private DownloadRequest Request(Uri url, DownloadOptions? options = null) =>
        new(url, _dir.Combine("files", "file.bin")) { Options = options ?? new DownloadOptions { RetryDelay = TimeSpan.Zero } };

    private static Task<string> DownloadAsync(DownloadRequest request, CancellationToken ct = default) =>
        FileDownloader.DownloadAsync(request, null, ct);

    /// <summary>The files the downloader left beside the destination (the lock file aside).</summary>
    private string[] FilesLeft() =>
        [.. Directory.EnumerateFiles(_dir.Combine("files")).Select(Path.GetFileName).Where(n => n != "file.bin.lock").Order(StringComparer.Ordinal)!];

    [Fact]
    public async Task DownloadAsync_ConnectionDroppedMidway_ResumesWithRangeAndIfRange()
    {
        var body = Content(80_000, 1);
        var ifRange = new List<string?>();
        using var server = new LoopbackServer((ctx, n) =>
        {
            ifRange.Add(ctx.Request.Headers["If-Range"]);
            ctx.Response.Headers["ETag"] = "\"v1\"";
            return LoopbackServer.ServeAsync(ctx, body, n == 1 ? 30_000 : null);
        });

        var path = await DownloadAsync(Request(server.UrlOf("file.bin")) with { Sha256 = Sha(body) });

        Assert.Equal(body, File.ReadAllBytes(path));
        Assert.Equal(2, server.Requests);
        Assert.Null(server.RangeHeaders[0]);
        var resumedAt = int.Parse(server.RangeHeaders[1]![6..^1], CultureInfo.InvariantCulture);
        Assert.InRange(resumedAt, 1, 30_000);
        Assert.Equal([null, "\"v1\""], ifRange);
        Assert.Equal($"{Sha(body)} {body.Length}\n", File.ReadAllText(FileDownloader.SidecarPath(path)));
        Assert.Equal(["file.bin", "file.bin.sha256"], FilesLeft());
    }

    [Fact]
    public async Task DownloadAsync_FileChangedBetweenAttempts_StartsAgainInsteadOfSplicing()
    {
        var before = Content(80_000, 2);
        var after = Content(80_000, 3);
        var ifRange = new List<string?>();
        using var server = new LoopbackServer(async (ctx, n) =>
        {
            ifRange.Add(ctx.Request.Headers["If-Range"]);
            if (n == 1)
            {
                ctx.Response.Headers["ETag"] = "\"v1\"";
                await LoopbackServer.ServeAsync(ctx, before, 30_000);
                return;
            }

            // The file changed, so If-Range no longer matches: the whole new file comes with 200, as a server sends it.
            ctx.Response.Headers["ETag"] = "\"v2\"";
            ctx.Response.ContentLength64 = after.Length;
            await ctx.Response.OutputStream.WriteAsync(after);
            ctx.Response.Close();
        });

        var path = await DownloadAsync(Request(server.UrlOf("file.bin")));

        Assert.Equal(after, File.ReadAllBytes(path));
        Assert.Equal(2, server.Requests);
        Assert.Equal([null, "\"v1\""], ifRange);
        Assert.Matches(@"^bytes=\d+-$", server.RangeHeaders[1]);
    }

    [Fact]
    public async Task DownloadAsync_WrongSha256_ThrowsNamingBothAndLeavesNoFile()
    {
        var body = Content(20_000, 4);
        using var server = new LoopbackServer((ctx, _) => LoopbackServer.ServeAsync(ctx, body));
        var url = server.UrlOf("file.bin");
        var expected = new string('a', 64);

        var ex = await Assert.ThrowsAsync<InvalidDataException>(() => DownloadAsync(Request(url) with { Sha256 = expected.ToUpperInvariant() }));

        Assert.Equal($"The file downloaded from '{url}' has SHA-256 {Sha(body)}, but {expected} was expected. It was deleted, not cached.", ex.Message);
        Assert.Equal(Sha(body), ex.Data[FileDownloader.ActualSha256Key]);
        Assert.Empty(FilesLeft());
        Assert.Equal(1, server.Requests); // a checksum mismatch is not retried
    }

    [Fact]
    public async Task DownloadAsync_BodyStalls_AbandonedAfterStallTimeoutAndResumed()
    {
        var body = Content(60_000, 5);
        using var server = new LoopbackServer();
        var url = server.Add("file.bin", body);
        server.StallNext = 1; // half the body, then 5 s of silence
        var clock = Stopwatch.StartNew();

        var path = await DownloadAsync(Request(url, new DownloadOptions { RetryDelay = TimeSpan.Zero, StallTimeout = TimeSpan.FromMilliseconds(300) }));

        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(4), $"took {clock.Elapsed}: the stall was waited out instead of abandoned");
        Assert.Equal(body, File.ReadAllBytes(path));
        Assert.Equal(2, server.Requests);
        Assert.Matches(@"^bytes=\d+-$", server.RangeHeaders[1]);
    }

    [Fact]
    public async Task DownloadAsync_BodyStallsWithoutRetries_ThrowsTimeoutNamingTheWait()
    {
        using var server = new LoopbackServer();
        var url = server.Add("file.bin", Content(60_000, 6));
        server.StallNext = 1;

        var ex = await Assert.ThrowsAsync<TimeoutException>(
            () => DownloadAsync(Request(url, new DownloadOptions { MaxRetries = 0, StallTimeout = TimeSpan.FromMilliseconds(300) })));

        Assert.Equal("no data received for 0.3 s", ex.Message);
        Assert.Empty(FilesLeft());
    }

    [Fact]
    public async Task DownloadAsync_NoResponseHeaders_ThrowsTimeoutNamingTheUrl()
    {
        using var server = new LoopbackServer(async (ctx, _) =>
        {
            await Task.Delay(TimeSpan.FromSeconds(3));
            ctx.Response.Abort();
        });
        var url = server.UrlOf("file.bin");

        var ex = await Assert.ThrowsAsync<TimeoutException>(
            () => DownloadAsync(Request(url, new DownloadOptions { MaxRetries = 0, StallTimeout = TimeSpan.FromMilliseconds(300) })));

        Assert.Equal($"no response from {url} within 0.3 s", ex.Message);
    }

    [Fact]
    public async Task DownloadAsync_ValidateRefusesHtmlPage_NotCachedAndFetchedAgain()
    {
        using var server = new LoopbackServer();
        var url = server.Add("file.bin", "<!DOCTYPE html><html><body>Sign in</body></html>"u8.ToArray());
        static string? NoHtml(string path) => File.ReadAllText(path).StartsWith("<!DOCTYPE", StringComparison.Ordinal) ? "is an HTML page" : null;
        var request = Request(url) with { Validate = NoHtml };

        var ex = await Assert.ThrowsAsync<InvalidDataException>(() => DownloadAsync(request));

        Assert.Equal($"The file downloaded from '{url}' is an HTML page. It was not cached; it will be fetched again next time.", ex.Message);
        Assert.Empty(FilesLeft());
        Assert.Equal(1, server.Requests); // refused content is not retried within the call

        var body = Content(5_000, 7);
        server.Add("file.bin", body);
        var path = await DownloadAsync(request);
        Assert.Equal(body, File.ReadAllBytes(path));
        Assert.Equal(2, server.Requests);
    }

    [Fact]
    public async Task DownloadAsync_TwoAtOnce_FetchOnceUnderTheLock()
    {
        var body = Content(200_000, 8);
        using var server = new LoopbackServer { ChunkDelay = TimeSpan.FromMilliseconds(2) };
        var url = server.Add("file.bin", body);

        var paths = await Task.WhenAll(Task.Run(() => DownloadAsync(Request(url))), Task.Run(() => DownloadAsync(Request(url))));

        Assert.Equal(paths[0], paths[1]);
        Assert.Equal(body, File.ReadAllBytes(paths[0]));
        Assert.Equal(1, server.Requests);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task DownloadAsync_Cancelled_PartialFileKeptOnlyWhenAsked(bool keepPartialFile)
    {
        var body = Content(600_000, 9);
        using var server = new LoopbackServer { ChunkDelay = TimeSpan.FromMilliseconds(5) };
        var url = server.Add("file.bin", body);
        using var cts = new CancellationTokenSource();
        var cancelOnData = new Progress(p =>
        {
            if (p.BytesReceived > 0)
            {
                cts.Cancel(); // a quarter of the file has arrived (progress comes every 256 KiB)
            }
        });
        var request = Request(url) with { KeepPartialFile = keepPartialFile };

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => FileDownloader.DownloadAsync(request, cancelOnData, cts.Token));

        Assert.Equal(1, server.Requests); // the caller's cancellation is not retried
        var part = FileDownloader.PartPath(request.Destination);
        if (!keepPartialFile)
        {
            Assert.Empty(FilesLeft());
            return;
        }

        Assert.Equal(["file.bin.part"], FilesLeft());
        var kept = new FileInfo(part).Length;
        Assert.InRange(kept, 1, body.Length - 1);
        var path = await DownloadAsync(request);
        Assert.Equal(body, File.ReadAllBytes(path));
        Assert.Equal($"bytes={kept}-", server.RangeHeaders[1]);
    }

    /// <summary>Reports synchronously, on the downloading thread.</summary>
    private sealed class Progress(Action<DownloadProgress> report) : IProgress<DownloadProgress>
    {
        public void Report(DownloadProgress value) => report(value);
    }
}
