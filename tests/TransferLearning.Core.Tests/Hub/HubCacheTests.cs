using System.Security.Cryptography;
using TransferLearning.Downloads;
using TransferLearning.Hub;

namespace TransferLearning.Core.Tests.Hub;

public sealed class HubCacheTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("tl-hub-");
    private readonly LoopbackServer _server = new();

    public void Dispose()
    {
        _server.Dispose();
        _dir.Delete(true);
    }

    private static byte[] Content(int size, int seed)
    {
        var bytes = new byte[size];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    private HubCache Cache() => new(_dir.FullName, new DownloadOptions { RetryDelay = TimeSpan.FromMilliseconds(10) });

    /// <summary>Puts a file where the cache keeps <paramref name="url"/>, without a sidecar.</summary>
    private string PlaceEntry(Uri url, byte[] content)
    {
        var entry = Cache().EntryPath(url);
        Directory.CreateDirectory(Path.GetDirectoryName(entry)!);
        File.WriteAllBytes(entry, content);
        return entry;
    }

    private sealed class SyncProgress : IProgress<DownloadProgress>
    {
        public List<DownloadProgress> Reports { get; } = [];

        public void Report(DownloadProgress value)
        {
            lock (Reports)
            {
                Reports.Add(value);
            }
        }
    }

    [Fact]
    public async Task GetAsync_FirstThenSecondCall_DownloadsOnceWithProgressAndSidecar()
    {
        var body = Content(100_000, 1);
        var url = _server.Add("models/net-1234.onnx", body);
        var progress = new SyncProgress();
        var path = await Cache().GetAsync(url, Convert.ToHexStringLower(SHA256.HashData(body)), progress, default);
        Assert.Equal("net-1234.onnx", Path.GetFileName(path));
        Assert.StartsWith(_dir.FullName, path, StringComparison.Ordinal);
        Assert.Equal(body, File.ReadAllBytes(path));
        Assert.True(File.Exists(path + ".sha256"));
        Assert.Equal(100_000, progress.Reports[^1].BytesReceived);
        Assert.Equal(100_000, progress.Reports[^1].TotalBytes);

        var again = await Cache().GetAsync(url, null, null, default);
        Assert.Equal(path, again);
        Assert.Equal(1, _server.Requests);
        Assert.Empty(Directory.GetFiles(Path.GetDirectoryName(path)!, "*.part"));
    }

    [Fact]
    public async Task GetAsync_WrongSha256_ThrowsAndCachesNothing()
    {
        var url = _server.Add("a.onnx", Content(5000, 2));
        var wrong = new string('0', 64);
        var ex = await Assert.ThrowsAsync<InvalidDataException>(() => Cache().GetAsync(url, wrong, null, default));
        Assert.Contains($"but {wrong} was expected", ex.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(Cache().EntryPath(url)));
    }

    [Fact]
    public async Task GetAsync_TransientFailuresAndTruncatedBody_RetriesAndSucceeds()
    {
        var body = Content(50_000, 3);
        var url = _server.Add("b.pth", body);
        _server.FailNext = 1;
        _server.TruncateNext = 1;
        var path = await Cache().GetAsync(url, null, null, default);
        Assert.Equal(body, File.ReadAllBytes(path));
        Assert.Equal(3, _server.Requests);
    }

    [Fact]
    public async Task GetAsync_DroppedConnection_ResumesWithRangeRequest()
    {
        var body = Content(60_000, 8);
        var url = _server.Add("g.onnx", body);
        _server.TruncateNext = 1;
        var progress = new SyncProgress();
        var path = await Cache().GetAsync(url, Convert.ToHexStringLower(SHA256.HashData(body)), progress, default);
        Assert.Equal(body, File.ReadAllBytes(path));
        Assert.Equal(2, _server.Requests);
        Assert.Null(_server.RangeHeaders[0]);
        Assert.Matches(@"^bytes=\d+-$", _server.RangeHeaders[1]);
        var resumedAt = int.Parse(_server.RangeHeaders[1]![6..^1], System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(resumedAt, 1, body.Length / 2);
        Assert.Contains(progress.Reports, p => p.BytesReceived == resumedAt && p.TotalBytes == body.Length && p.Stage == DownloadStage.Downloading);
        Assert.Equal(DownloadStage.Done, progress.Reports[^1].Stage);
        Assert.Empty(Directory.GetFiles(Path.GetDirectoryName(path)!, "*.part"));
    }

    [Fact]
    public async Task GetAsync_StalledTransfer_IsAbandonedAndResumed()
    {
        var body = Content(60_000, 9);
        var url = _server.Add("h.onnx", body);
        _server.StallNext = 1;
        var cache = new HubCache(_dir.FullName, new DownloadOptions { RetryDelay = TimeSpan.Zero, StallTimeout = TimeSpan.FromMilliseconds(300) });
        var path = await cache.GetAsync(url, null, null, default);
        Assert.Equal(body, File.ReadAllBytes(path));
        Assert.Equal(2, _server.Requests);
        Assert.Matches(@"^bytes=\d+-$", _server.RangeHeaders[1]);
    }

    [Fact]
    public async Task GetAsync_CompleteFileWithoutSidecar_IsAdoptedWhenItHasTheExpectedHash()
    {
        var body = Content(8_000, 10);
        var url = _server.Add("i.onnx", body);
        var entry = PlaceEntry(url, body); // e.g. copied in by hand
        var sha = Convert.ToHexStringLower(SHA256.HashData(body));
        var path = await Cache().GetAsync(url, sha, null, default);
        Assert.Equal(entry, path);
        Assert.Equal(0, _server.Requests);
        Assert.Equal($"{sha} {body.Length}\n", File.ReadAllText(entry + ".sha256"));
    }

    [Fact]
    public async Task GetAsync_NotFound_FailsWithoutRetry()
    {
        var url = new Uri(_server.BaseUrl + "missing.onnx");
        var ex = await Assert.ThrowsAsync<HttpRequestException>(() => Cache().GetAsync(url, null, null, default));
        Assert.Contains("HTTP 404", ex.Message, StringComparison.Ordinal);
        Assert.Equal(1, _server.Requests);
    }

    [Fact]
    public async Task GetAsync_PartialEntryWithoutSidecar_IsRefetched()
    {
        var body = Content(20_000, 4);
        var url = _server.Add("c.onnx", body);
        PlaceEntry(url, body[..1000]); // a crash mid-download left a partial file and no sidecar
        var path = await Cache().GetAsync(url, null, null, default);
        Assert.Equal(body, File.ReadAllBytes(path));
        Assert.Equal(1, _server.Requests);
    }

    [Fact]
    public async Task GetAsync_CachedEntryButDifferentExpectedSha_Refetches()
    {
        var body = Content(10_000, 5);
        var url = _server.Add("d.onnx", body);
        await Cache().GetAsync(url, null, null, default);
        var sha = Convert.ToHexStringLower(SHA256.HashData(body));
        await Cache().GetAsync(url, sha, null, default); // matches the sidecar: no request
        Assert.Equal(1, _server.Requests);
        await Assert.ThrowsAsync<InvalidDataException>(() => Cache().GetAsync(url, new string('a', 64), null, default));
        Assert.Equal(2, _server.Requests);
    }

    [Fact]
    public async Task GetAsync_Cancelled_ThrowsAndLeavesNoEntry()
    {
        _server.ChunkDelay = TimeSpan.FromMilliseconds(20);
        var url = _server.Add("e.onnx", Content(400_000, 6));
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(150));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => Cache().GetAsync(url, null, null, cts.Token));
        var entry = Cache().EntryPath(url);
        Assert.False(File.Exists(entry));
        Assert.Empty(Directory.GetFiles(Path.GetDirectoryName(entry)!, "*.part"));
    }

    [Fact]
    public async Task GetAsync_ConcurrentFetchesOfOneUrl_DownloadOnce()
    {
        _server.ChunkDelay = TimeSpan.FromMilliseconds(2);
        var body = Content(200_000, 7);
        var url = _server.Add("f.onnx", body);
        var tasks = Enumerable.Range(0, 4).Select(_ => Task.Run(() => Cache().GetAsync(url, null, null, default))).ToArray();
        var paths = await Task.WhenAll(tasks);
        Assert.Single(paths.Distinct());
        Assert.Equal(body, File.ReadAllBytes(paths[0]));
        Assert.Equal(1, _server.Requests);
    }

    [Fact]
    public async Task LoadBackboneAsync_OnnxUrl_DownloadsIntoGivenCacheAndLoads()
    {
        var b = new Onnx.OnnxModelBuilder(13, [1, 3, 8, 8]);
        var conv = b.Node("Conv", ["x", b.Weight(4, 3, 3, 3)]);
        var gap = b.Node("GlobalAveragePool", [conv]);
        var flat = b.Node("Flatten", [gap]);
        b.Output(b.Node("Softmax", [b.Node("Gemm", [flat, b.Weight(5, 4)], Onnx.OnnxModelBuilder.I("transB", 1))]));
        var url = _server.Add("tiny/classifier.onnx", b.Bytes());
        using var backbone = await ModelHub.LoadBackboneAsync(url.AbsoluteUri, new BackboneLoadOptions { CacheDirectory = _dir.FullName });
        Assert.Equal(4, backbone.FeatureSize); // cut before Gemm: the 4 pooled channels
        Assert.Equal(url.AbsoluteUri, backbone.Source);
        Assert.Equal(8, backbone.InputSpec.Width);
        Assert.Single(Directory.GetFiles(_dir.FullName, "classifier.onnx", SearchOption.AllDirectories));
    }

    [Fact]
    public void CacheDirectory_EnvironmentVariable_IsDefault()
    {
        var old = Environment.GetEnvironmentVariable(ModelHub.CacheDirectoryVariable);
        try
        {
            Environment.SetEnvironmentVariable(ModelHub.CacheDirectoryVariable, _dir.FullName);
            Assert.Equal(_dir.FullName, ModelHub.CacheDirectory);
        }
        finally
        {
            Environment.SetEnvironmentVariable(ModelHub.CacheDirectoryVariable, old);
        }
    }

    private static byte[] TinyClassifierOnnx()
    {
        var b = new Onnx.OnnxModelBuilder(13, [1, 3, 8, 8]);
        var conv = b.Node("Conv", ["x", b.Weight(4, 3, 3, 3)]);
        var flat = b.Node("Flatten", [b.Node("GlobalAveragePool", [conv])]);
        b.Output(b.Node("Softmax", [b.Node("Gemm", [flat, b.Weight(5, 4)], Onnx.OnnxModelBuilder.I("transB", 1))]));
        return b.Bytes();
    }

    private const string CaptivePortal = "<!DOCTYPE html>\n<html><head><title>Sign in to Wi-Fi</title></head><body>Accept the terms</body></html>\n";

    [Fact]
    public async Task LoadBackboneAsync_UrlServesHtmlPage_NothingCachedAndFetchedAgainOnceFixed()
    {
        var url = _server.Add("tiny/classifier.onnx", System.Text.Encoding.UTF8.GetBytes(CaptivePortal));
        var options = new BackboneLoadOptions { CacheDirectory = _dir.FullName };

        var ex = await Assert.ThrowsAsync<InvalidDataException>(() => ModelHub.LoadBackboneAsync(url.AbsoluteUri, options));

        Assert.Equal(
            $"The file downloaded from '{url}' is an HTML page, not a model file (a captive portal, a login page or an error page served as if it were the file?). " +
            "It was not cached; it will be fetched again next time.",
            ex.Message);
        var entry = Cache().EntryPath(url);
        Assert.False(File.Exists(entry));
        Assert.False(File.Exists(FileDownloader.SidecarPath(entry)));
        Assert.False(File.Exists(FileDownloader.PartPath(entry)));

        _server.Add("tiny/classifier.onnx", TinyClassifierOnnx());
        using var backbone = await ModelHub.LoadBackboneAsync(url.AbsoluteUri, options);
        Assert.Equal(4, backbone.FeatureSize);
        Assert.Equal(2, _server.Requests);
    }

    [Fact]
    public async Task LoadBackboneAsync_CachedHtmlPageFromBefore_RefetchedInsteadOfUsed()
    {
        // A cache filled before downloads were checked: the page and a matching .sha256 record.
        var url = _server.Add("tiny/classifier.onnx", TinyClassifierOnnx());
        var entry = PlaceEntry(url, System.Text.Encoding.UTF8.GetBytes(CaptivePortal));
        File.WriteAllText(entry + ".sha256", $"{Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(entry)))} {new FileInfo(entry).Length}\n");

        using var backbone = await ModelHub.LoadBackboneAsync(url.AbsoluteUri, new BackboneLoadOptions { CacheDirectory = _dir.FullName });

        Assert.Equal(4, backbone.FeatureSize);
        Assert.Equal(1, _server.Requests);
    }

    [Fact]
    public async Task LoadBackboneAsync_DownloadIsNotOnnx_EvictedAndMessageSaysSo()
    {
        var garbage = new byte[2000];
        new Random(3).NextBytes(garbage);
        garbage[0] = 0x07; // field 0 with wire type 7: never a protobuf tag
        var url = _server.Add("broken/net.onnx", garbage);

        var ex = await Assert.ThrowsAsync<InvalidDataException>(
            () => ModelHub.LoadBackboneAsync(url.AbsoluteUri, new BackboneLoadOptions { CacheDirectory = _dir.FullName }));

        var entry = Cache().EntryPath(url);
        Assert.Equal(
            $"'{entry}' is not an ONNX model: its first bytes ({Convert.ToHexString(garbage.AsSpan(0, 4))}) cannot start an ONNX protobuf. " +
            $"The file was downloaded from '{url.AbsoluteUri}'; it was removed from the cache and will be fetched again next time.",
            ex.Message);
        Assert.False(File.Exists(entry));
        Assert.False(File.Exists(entry + ".sha256"));
    }

    [Theory]
    [InlineData(new byte[0], "the file is empty (0 bytes)")]
    [InlineData(new byte[] { 0x3C, 0x21, 0x64, 0x6F, 0x63 }, "its first bytes (3C21646F) cannot start an ONNX protobuf (it looks like an HTML or XML page)")]
    [InlineData(new byte[] { 0x50, 0x4B, 0x03, 0x04, 0x00 }, "its first bytes (504B0304) cannot start an ONNX protobuf (it looks like a zip archive, e.g. a PyTorch .pth file)")]
    [InlineData(new byte[] { 0x80, 0x02, 0x7D, 0x71 }, "its first bytes (80027D71) cannot start an ONNX protobuf (it looks like a Python pickle, e.g. a PyTorch .pth file)")]
    public void LoadBackbone_OnnxFileThatIsNotOnnx_SaysWhatItIs(byte[] content, string problem)
    {
        var path = Path.Combine(_dir.FullName, "model.onnx");
        File.WriteAllBytes(path, content);

        var ex = Assert.Throws<InvalidDataException>(() => ModelHub.LoadBackbone(path));

        Assert.Equal($"'{path}' is not an ONNX model: {problem}.", ex.Message);
    }

    [Fact]
    public void LoadBackbone_OnnxWithoutGraph_SaysSo()
    {
        var path = Path.Combine(_dir.FullName, "model.onnx");
        File.WriteAllBytes(path, [0x08, 0x07]); // ir_version 7 and nothing else

        var ex = Assert.Throws<InvalidDataException>(() => ModelHub.LoadBackbone(path));

        Assert.Equal($"'{path}' is not an ONNX model: it has no graph (no nodes or no outputs).", ex.Message);
    }

    [Fact]
    public async Task LoadBackboneAsync_UnknownSource_SaysWhatIsAccepted()
    {
        var ex = await Assert.ThrowsAsync<FileNotFoundException>(() => ModelHub.LoadBackboneAsync("no-such-model"));
        Assert.Equal("The backbone source 'no-such-model' is neither an existing file, an http(s) URL, nor a short name (resnet18).", ex.Message);
    }
}

public sealed class ModelHubTfjsTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("tl-hub-tfjs-");
    private readonly LoopbackServer _server = new();

    public void Dispose()
    {
        _server.Dispose();
        _dir.Delete(true);
    }

    private static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "TestData", "tfjs", name);

    private static float[] Features(TransferLearning.Backbones.Backbone backbone)
    {
        using var scope = TorchSharp.torch.NewDisposeScope();
        using var generator = new TorchSharp.torch.Generator(1, TorchSharp.torch.CPU); // not the global one: tests run in parallel
        var x = TorchSharp.torch.rand(2, 3, backbone.InputSpec.Height, backbone.InputSpec.Width, generator: generator);
        backbone.SetTrainingMode(false);
        return backbone.Forward(x).data<float>().ToArray();
    }

    [Fact]
    public void LoadBackbone_LocalModelJson_SameAsTfjsLoader()
    {
        var path = Path.Combine(Fixture("nested"), "model.json");
        using var viaHub = ModelHub.LoadBackbone(path);
        using var direct = TransferLearning.Backbones.Tfjs.TfjsModel.Load(path);

        Assert.Equal(path, viaHub.Source);
        Assert.Equal(Features(direct), Features(viaHub));
    }

    [Fact]
    public async Task LoadBackboneAsync_ModelJsonUrl_FetchesShardsThroughCacheAndLoads()
    {
        var folder = Fixture("nested");
        var url = _server.Add("keras/nested/model.json", File.ReadAllBytes(Path.Combine(folder, "model.json")));
        _server.Add("keras/nested/weights.bin", File.ReadAllBytes(Path.Combine(folder, "weights.bin")));

        using var viaUrl = await ModelHub.LoadBackboneAsync(url.AbsoluteUri, new BackboneLoadOptions { CacheDirectory = _dir.FullName });
        using var local = TransferLearning.Backbones.Tfjs.TfjsModel.Load(Path.Combine(folder, "model.json"));

        Assert.Equal(url.AbsoluteUri, viaUrl.Source);
        Assert.Equal(Features(local), Features(viaUrl));
        Assert.Single(Directory.GetFiles(_dir.FullName, "weights.bin", SearchOption.AllDirectories));
    }

    [Fact]
    public async Task LoadBackboneAsync_ServerDown_SaysWhichBackboneCouldNotBeDownloadedAndWhatToDo()
    {
        var closed = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        closed.Start();
        var port = ((System.Net.IPEndPoint)closed.LocalEndpoint).Port;
        closed.Stop(); // nothing listens there any more: connection refused
        var url = $"http://127.0.0.1:{port}/backbone.onnx";
        var options = new BackboneLoadOptions { CacheDirectory = _dir.FullName, Download = new DownloadOptions { MaxRetries = 1, RetryDelay = TimeSpan.Zero } };

        var e = await Assert.ThrowsAsync<HttpRequestException>(() => ModelHub.LoadBackboneAsync(url, options));

        Assert.StartsWith($"Could not download the backbone file '{url}' (tried 2 time(s)): ", e.Message, StringComparison.Ordinal);
        Assert.EndsWith($". Check the URL and the network, or download the file yourself and pass its local path; downloads are cached in '{_dir.FullName}'.", e.Message, StringComparison.Ordinal);
        Assert.IsType<HttpRequestException>(e.InnerException);
    }
}
