using System.Formats.Tar;
using System.IO.Compression;
using System.Security.Cryptography;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using TransferLearning.Catalog;
using TransferLearning.Downloads;

namespace TransferLearning.Core.Tests.Catalog;

public sealed class TfFlowersTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private static byte[] MakeArchive(bool traversal = false)
    {
        using var ms = new MemoryStream();
        using (var gz = new GZipStream(ms, CompressionLevel.Fastest, leaveOpen: true))
        using (var tar = new TarWriter(gz, TarEntryFormat.Pax, leaveOpen: true))
        {
            tar.WriteEntry(new PaxTarEntry(TarEntryType.Directory, "flower_photos/"));
            AddFile(tar, "flower_photos/LICENSE.txt", "CC-BY photos"u8.ToArray());
            foreach (var (cls, colour) in new[] { ("daisy", new Rgb24(250, 250, 250)), ("roses", new Rgb24(200, 10, 30)) })
            {
                tar.WriteEntry(new PaxTarEntry(TarEntryType.Directory, $"flower_photos/{cls}/"));
                for (var i = 0; i < 2; i++)
                {
                    using var img = new Image<Rgb24>(6, 6, colour);
                    using var png = new MemoryStream();
                    img.SaveAsPng(png);
                    AddFile(tar, $"flower_photos/{cls}/{i}.png", png.ToArray());
                }
            }

            // Incompressible padding so the transfer is large enough to be cut in the middle.
            var padding = new byte[200_000];
            new Random(1).NextBytes(padding);
            AddFile(tar, "flower_photos/padding.bin", padding);
            tar.WriteEntry(new PaxTarEntry(TarEntryType.SymbolicLink, "flower_photos/daisy/link.jpg") { LinkName = "/etc/passwd" });
            if (traversal)
            {
                AddFile(tar, "../evil", "pwned"u8.ToArray());
            }
        }

        return ms.ToArray();
    }

    private static void AddFile(TarWriter tar, string name, byte[] content) =>
        tar.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, name) { DataStream = new MemoryStream(content) });

    private static string Sha(byte[] data) => Convert.ToHexStringLower(SHA256.HashData(data));

    private TfFlowersOptions Options(Uri url, string sha) => new()
    {
        CacheDirectory = _dir.Combine("cache"),
        Url = url,
        Sha256 = sha,
        Download = new DownloadOptions { RetryDelay = TimeSpan.Zero, MaxRetries = 2 },
    };

    [Fact]
    public async Task LoadAsync_DownloadsVerifiesExtractsAndCaches()
    {
        var archive = MakeArchive();
        using var server = new LoopbackServer((ctx, _) => LoopbackServer.ServeAsync(ctx, archive));
        var progress = new ListProgress<DownloadProgress>();
        var folder = await TfFlowers.LoadAsync(Options(server.UrlOf("flower_photos.tgz"), Sha(archive)), progress);
        Assert.Equal(["daisy", "roses"], folder.Classes);
        Assert.Equal(4, folder.Count);
        Assert.Equal("flower_photos", Path.GetFileName(folder.Root));
        Assert.True(File.Exists(Path.Combine(folder.Root, "LICENSE.txt")));
        Assert.False(File.Exists(Path.Combine(folder.Root, "daisy", "link.jpg")), "links are never extracted");
        Assert.Contains(progress.Items, p => p.Stage == DownloadStage.Downloading && p.BytesReceived == archive.Length);
        Assert.Equal(DownloadStage.Done, progress.Items[^1].Stage);

        var again = await TfFlowers.LoadAsync(Options(server.UrlOf("flower_photos.tgz"), Sha(archive)));
        Assert.Equal(folder.Root, again.Root);
        Assert.Equal(1, server.Requests);
    }

    [Fact]
    public async Task LoadAsync_DroppedConnection_ResumesWithRange()
    {
        var archive = MakeArchive();
        var half = archive.Length / 2;
        using var server = new LoopbackServer((ctx, n) => LoopbackServer.ServeAsync(ctx, archive, n == 1 ? half : null));
        var folder = await TfFlowers.LoadAsync(Options(server.UrlOf("flower_photos.tgz"), Sha(archive)));
        Assert.Equal(4, folder.Count);
        Assert.Equal(2, server.Requests);
        Assert.Null(server.RangeHeaders[0]);
        Assert.Matches(@"^bytes=\d+-$", server.RangeHeaders[1]);
        Assert.True(int.Parse(server.RangeHeaders[1]![6..^1], System.Globalization.CultureInfo.InvariantCulture) > 0);
    }

    [Fact]
    public async Task LoadAsync_ConcurrentLoads_DownloadOnce()
    {
        var archive = MakeArchive();
        using var server = new LoopbackServer(async (ctx, _) =>
        {
            await Task.Delay(300); // keep the first transfer in flight while the other loads start
            await LoopbackServer.ServeAsync(ctx, archive);
        });
        var loads = Enumerable.Range(0, 3).Select(_ => Task.Run(() => TfFlowers.LoadAsync(Options(server.UrlOf("flower_photos.tgz"), Sha(archive))))).ToArray();
        var folders = await Task.WhenAll(loads);
        Assert.Equal(1, server.Requests);
        Assert.Single(folders.Select(f => f.Root).Distinct());
        Assert.All(folders, f => Assert.Equal(4, f.Count));
        var sidecar = _dir.Combine("cache", "tf_flowers", "flower_photos.tgz.sha256");
        Assert.Equal($"{Sha(archive)} {archive.Length}\n", File.ReadAllText(sidecar));
    }

    [Fact]
    public async Task LoadAsync_ExtractedFolderRemoved_ReextractsFromVerifiedArchiveWithoutRequest()
    {
        var archive = MakeArchive();
        using var server = new LoopbackServer((ctx, _) => LoopbackServer.ServeAsync(ctx, archive));
        var first = await TfFlowers.LoadAsync(Options(server.UrlOf("flower_photos.tgz"), Sha(archive)));
        Directory.Delete(Path.GetDirectoryName(first.Root)!, recursive: true);
        var second = await TfFlowers.LoadAsync(Options(server.UrlOf("flower_photos.tgz"), Sha(archive)));
        Assert.Equal(first.Root, second.Root);
        Assert.Equal(4, second.Count);
        Assert.Equal(1, server.Requests);
    }

    [Fact]
    public async Task LoadAsync_Cancelled_KeepsPartialFileAndNextLoadResumes()
    {
        var archive = MakeArchive();
        var half = archive.Length / 2;
        using var cts = new CancellationTokenSource();
        using var server = new LoopbackServer(async (ctx, n) =>
        {
            if (n == 1)
            {
                ctx.Response.ContentLength64 = archive.Length;
                await ctx.Response.OutputStream.WriteAsync(archive.AsMemory(0, half));
                await ctx.Response.OutputStream.FlushAsync();
                var part = _dir.Combine("cache", "tf_flowers", "flower_photos.tgz.part");
                for (var i = 0; i < 100 && !(File.Exists(part) && new FileInfo(part).Length > 0); i++)
                {
                    await Task.Delay(50); // until the client has written some of it
                }

                await cts.CancelAsync(); // the caller gives up mid-transfer
                await Task.Delay(TimeSpan.FromSeconds(2));
                ctx.Response.Abort();
                return;
            }

            await LoopbackServer.ServeAsync(ctx, archive);
        });
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => TfFlowers.LoadAsync(Options(server.UrlOf("flower_photos.tgz"), Sha(archive)), null, cts.Token));
        var part = _dir.Combine("cache", "tf_flowers", "flower_photos.tgz.part");
        Assert.True(File.Exists(part));
        var kept = new FileInfo(part).Length;
        Assert.InRange(kept, 1, half);

        var folder = await TfFlowers.LoadAsync(Options(server.UrlOf("flower_photos.tgz"), Sha(archive)));
        Assert.Equal(4, folder.Count);
        Assert.Equal(2, server.Requests);
        Assert.Equal($"bytes={kept}-", server.RangeHeaders[1]);
    }

    [Fact]
    public async Task LoadAsync_StalledTransfer_IsAbandonedAndResumed()
    {
        var archive = MakeArchive();
        var half = archive.Length / 2;
        using var server = new LoopbackServer(async (ctx, n) =>
        {
            if (n == 1)
            {
                ctx.Response.ContentLength64 = archive.Length;
                await ctx.Response.OutputStream.WriteAsync(archive.AsMemory(0, half));
                await ctx.Response.OutputStream.FlushAsync();
                await Task.Delay(TimeSpan.FromSeconds(5)); // stall, then give up
                ctx.Response.Abort();
                return;
            }

            await LoopbackServer.ServeAsync(ctx, archive);
        });
        var options = Options(server.UrlOf("flower_photos.tgz"), Sha(archive));
        // 1.5 s: long enough for the first half to arrive even on a loaded machine (with 300 ms a clean-clone CI run once
        // gave up before any byte was written, so the retry rightly started from 0 without a Range header).
        options.Download.StallTimeout = TimeSpan.FromMilliseconds(1500);
        var folder = await TfFlowers.LoadAsync(options);
        Assert.Equal(4, folder.Count);
        Assert.Matches(@"^bytes=\d+-$", server.RangeHeaders[1]);
    }

    [Fact]
    public async Task LoadAsync_NotFound_ThrowsClearErrorWithoutRetrying()
    {
        using var server = new LoopbackServer((ctx, _) =>
        {
            ctx.Response.StatusCode = 404;
            ctx.Response.Close();
            return Task.CompletedTask;
        });
        var ex = await Assert.ThrowsAsync<DatasetDownloadException>(() => TfFlowers.LoadAsync(Options(server.UrlOf("flower_photos.tgz"), new string('0', 64))));
        Assert.Equal($"Downloading {server.UrlOf("flower_photos.tgz")} failed: HTTP 404 Not Found. Check the URL (TfFlowersOptions.Url).", ex.Message);
        Assert.Equal(1, server.Requests);
    }

    [Fact]
    public async Task LoadAsync_WrongHash_ThrowsAndLeavesNothingThatLooksComplete()
    {
        var archive = MakeArchive();
        using var server = new LoopbackServer((ctx, _) => LoopbackServer.ServeAsync(ctx, archive));
        var wrong = new string('a', 64);
        var ex = await Assert.ThrowsAsync<DatasetDownloadException>(() => TfFlowers.LoadAsync(Options(server.UrlOf("flower_photos.tgz"), wrong)));
        Assert.Contains($"has SHA-256 {Sha(archive)}, expected {wrong}; the file was deleted", ex.Message, StringComparison.Ordinal);
        // Only the downloader's lock file remains: no archive, partial file, sidecar or extracted folder.
        Assert.Equal(["flower_photos.tgz.lock"], Directory.EnumerateFileSystemEntries(_dir.Combine("cache", "tf_flowers")).Select(Path.GetFileName));
    }

    [Fact]
    public async Task LoadAsync_TraversalEntry_IsRefusedAndNothingExtracted()
    {
        var archive = MakeArchive(traversal: true);
        using var server = new LoopbackServer((ctx, _) => LoopbackServer.ServeAsync(ctx, archive));
        var ex = await Assert.ThrowsAsync<DatasetDownloadException>(() => TfFlowers.LoadAsync(Options(server.UrlOf("flower_photos.tgz"), Sha(archive))));
        Assert.Contains("contains an unsafe entry '../evil'", ex.Message, StringComparison.Ordinal);
        var cache = _dir.Combine("cache", "tf_flowers");
        // The verified archive with the downloader's lock and sidecar; nothing extracted.
        Assert.Equal(
            ["flower_photos.tgz", "flower_photos.tgz.lock", "flower_photos.tgz.sha256"],
            Directory.EnumerateFileSystemEntries(cache).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Assert.False(File.Exists(_dir.Combine("cache", "evil")));
        Assert.False(File.Exists(Path.Combine(cache, "evil")));
    }

    [Fact]
    public async Task LoadAsync_ServerKeepsFailing_ThrowsAfterRetriesKeepingPartialFile()
    {
        var archive = MakeArchive();
        using var server = new LoopbackServer((ctx, _) => LoopbackServer.ServeAsync(ctx, archive, 1000));
        var ex = await Assert.ThrowsAsync<DatasetDownloadException>(() => TfFlowers.LoadAsync(Options(server.UrlOf("flower_photos.tgz"), Sha(archive))));
        Assert.StartsWith($"Downloading {server.UrlOf("flower_photos.tgz")} failed after 3 attempt(s)", ex.Message, StringComparison.Ordinal);
        Assert.Equal(3, server.Requests);
        Assert.True(File.Exists(_dir.Combine("cache", "tf_flowers", "flower_photos.tgz.part")));
        Assert.False(Directory.EnumerateDirectories(_dir.Combine("cache", "tf_flowers")).Any());
    }

    [Fact]
    public void DefaultDirectory_HonoursEnvironmentVariable()
    {
        var old = Environment.GetEnvironmentVariable(DatasetCache.EnvironmentVariable);
        try
        {
            Environment.SetEnvironmentVariable(DatasetCache.EnvironmentVariable, _dir.Combine("custom"));
            Assert.Equal(_dir.Combine("custom"), DatasetCache.DefaultDirectory);
            Environment.SetEnvironmentVariable(DatasetCache.EnvironmentVariable, null);
            Assert.EndsWith(Path.Combine("transferlearning", "datasets"), DatasetCache.DefaultDirectory, StringComparison.Ordinal);
        }
        finally
        {
            Environment.SetEnvironmentVariable(DatasetCache.EnvironmentVariable, old);
        }
    }

    [Theory]
    [InlineData("../evil")]
    [InlineData("/etc/passwd")]
    [InlineData("a/../../evil")]
    [InlineData("a/b/../../../evil")]
    public void SafePath_EscapingNames_AreRefused(string name) =>
        Assert.Throws<DatasetDownloadException>(() => DatasetCache.SafePath(_dir.Path, name, "x.tgz"));

    [Fact]
    public void SafePath_NormalName_StaysInside() =>
        Assert.Equal(Path.Combine(_dir.Path, "a", "b.jpg"), DatasetCache.SafePath(_dir.Path, "a/b.jpg", "x.tgz"));
}
