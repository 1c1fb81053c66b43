using TransferLearning.Catalog;
using TransferLearning.Downloads;
using TransferLearning.Hub;

namespace TransferLearning.Core.Tests.Downloads;

/// <summary>One download-options type: one set of defaults, checked setters, and the same retries in the hub and the catalog.</summary>
public sealed class DownloadOptionsTests : IDisposable
{
    private readonly TempDir _dir = new();

    /// <summary>Answers every request with 503 Service Unavailable, a failure worth retrying.</summary>
    private readonly LoopbackServer _unavailable = new((ctx, _) =>
    {
        ctx.Response.StatusCode = 503;
        ctx.Response.Close();
        return Task.CompletedTask;
    });

    public void Dispose()
    {
        _unavailable.Dispose();
        _dir.Dispose();
    }

    private static DownloadOptions NoDelay() => new() { RetryDelay = TimeSpan.Zero };

    [Fact]
    public void Defaults_EveryConsumer_SameNamedConstants()
    {
        var options = new DownloadOptions();
        Assert.Equal(3, DownloadOptions.DefaultMaxRetries);
        Assert.Equal(TimeSpan.FromSeconds(1), DownloadOptions.DefaultRetryDelay);
        Assert.Equal(TimeSpan.FromSeconds(60), DownloadOptions.DefaultStallTimeout);
        Assert.Equal(DownloadOptions.DefaultMaxRetries, options.MaxRetries);
        Assert.Equal(DownloadOptions.DefaultRetryDelay, options.RetryDelay);
        Assert.Equal(DownloadOptions.DefaultStallTimeout, options.StallTimeout);
        Assert.Null(options.HttpClient);

        foreach (var consumer in new[] { new BackboneLoadOptions().Download, new TfFlowersOptions().Download, new DownloadRequest(new Uri("http://127.0.0.1/x"), "x").Options })
        {
            Assert.Equal(DownloadOptions.DefaultMaxRetries + 1, consumer.MaxAttempts);
            Assert.Equal(DownloadOptions.DefaultRetryDelay, consumer.RetryDelay);
            Assert.Equal(DownloadOptions.DefaultStallTimeout, consumer.StallTimeout);
        }
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(11)]
    public void MaxRetries_OutOfRange_ThrowsWhenSet(int retries)
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new DownloadOptions { MaxRetries = retries });
        Assert.Equal($"MaxRetries must be from 0 to 10; got {retries}. (Parameter 'MaxRetries')", e.Message);
    }

    [Theory]
    [InlineData(-0.5, "-0.5")]
    [InlineData(61, "61")]
    public void RetryDelay_OutOfRange_ThrowsWhenSet(double seconds, string shown)
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new DownloadOptions { RetryDelay = TimeSpan.FromSeconds(seconds) });
        Assert.Equal($"RetryDelay must be from 0 to 60 s; got {shown} s. (Parameter 'RetryDelay')", e.Message);
    }

    [Theory]
    [InlineData(0, "0")]
    [InlineData(-1, "-1")]
    [InlineData(86_401, "86401")]
    public void StallTimeout_OutOfRange_ThrowsWhenSet(double seconds, string shown)
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new DownloadOptions { StallTimeout = TimeSpan.FromSeconds(seconds) });
        Assert.Equal($"StallTimeout must be more than 0 s and at most 86400 s; got {shown} s. (Parameter 'StallTimeout')", e.Message);
    }

    [Fact]
    public void Setters_Limits_Accepted()
    {
        var options = new DownloadOptions { MaxRetries = 0, RetryDelay = TimeSpan.Zero, StallTimeout = TimeSpan.FromDays(1) };
        options.MaxRetries = DownloadOptions.MaxRetriesLimit;
        options.RetryDelay = DownloadOptions.RetryDelayLimit;
        Assert.Equal(11, options.MaxAttempts);
        Assert.Equal(TimeSpan.FromMinutes(1), options.RetryDelay);
    }

    [Fact]
    public void Download_SetOnOptionsThenChanged_OptionsKeepTheirCopy()
    {
        var shared = new DownloadOptions { MaxRetries = 5 };
        var hub = new BackboneLoadOptions { Download = shared };
        var catalog = new TfFlowersOptions { Download = shared };
        shared.MaxRetries = 0;

        Assert.Equal(5, hub.Download.MaxRetries);
        Assert.Equal(5, catalog.Download.MaxRetries);
        Assert.Throws<ArgumentNullException>(() => hub.Download = null!);
        Assert.Throws<ArgumentNullException>(() => catalog.Download = null!);
    }

    [Fact]
    public async Task LoadBackboneAsync_ServerKeepsFailing_DefaultRetriesThenThrows()
    {
        var url = _unavailable.UrlOf("tiny/net.onnx");
        var options = new BackboneLoadOptions { CacheDirectory = _dir.Combine("hub"), Download = NoDelay() };

        var ex = await Assert.ThrowsAsync<HttpRequestException>(() => ModelHub.LoadBackboneAsync(url.AbsoluteUri, options));

        Assert.Equal(
            $"Could not download the backbone file '{url.AbsoluteUri}' (tried 4 time(s)): Downloading {url} failed: HTTP 503 Service Unavailable. " +
            $"Check the URL and the network, or download the file yourself and pass its local path; downloads are cached in '{_dir.Combine("hub")}'.",
            ex.Message);
        Assert.Equal($"Downloading {url} failed: HTTP 503 Service Unavailable.", ex.InnerException!.Message);
        Assert.Equal(System.Net.HttpStatusCode.ServiceUnavailable, ex.StatusCode);
        Assert.Equal(DownloadOptions.DefaultMaxRetries + 1, _unavailable.Requests);
    }

    [Fact]
    public async Task LoadAsync_ServerKeepsFailing_SameRetriesAsTheHub()
    {
        var url = _unavailable.UrlOf("flower_photos.tgz");
        var options = new TfFlowersOptions { CacheDirectory = _dir.Combine("datasets"), Url = url, Sha256 = new string('0', 64), Download = NoDelay() };

        var ex = await Assert.ThrowsAsync<DatasetDownloadException>(() => TfFlowers.LoadAsync(options));

        var part = _dir.Combine("datasets", TfFlowers.Name, "flower_photos.tgz.part");
        Assert.Equal(
            $"Downloading {url} failed after 4 attempt(s): Downloading {url} failed: HTTP 503 Service Unavailable. " +
            $"The partial file '{part}' is kept; run again to resume.",
            ex.Message);
        Assert.Equal(DownloadOptions.DefaultMaxRetries + 1, _unavailable.Requests);
    }

    [Fact]
    public async Task GetAsync_OptionsChangedAfterTheCacheWasMade_CacheKeepsItsCopy()
    {
        var options = NoDelay();
        var cache = new HubCache(_dir.Path, options);
        options.MaxRetries = 0;

        await Assert.ThrowsAsync<HttpRequestException>(() => cache.GetAsync(_unavailable.UrlOf("a.onnx"), null, null, default));

        Assert.Equal(DownloadOptions.DefaultMaxRetries + 1, _unavailable.Requests);
    }

    [Fact]
    public async Task LoadAsync_OptionsChangedWhileLoading_LoadKeepsItsCopy()
    {
        var options = new TfFlowersOptions
        {
            CacheDirectory = _dir.Combine("datasets"),
            Url = _unavailable.UrlOf("flower_photos.tgz"),
            Sha256 = new string('0', 64),
            Download = NoDelay(),
        };

        var load = TfFlowers.LoadAsync(options);
        options.Download.MaxRetries = 0;

        await Assert.ThrowsAsync<DatasetDownloadException>(() => load);
        Assert.Equal(DownloadOptions.DefaultMaxRetries + 1, _unavailable.Requests);
    }
}
