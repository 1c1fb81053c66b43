using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using TransferLearning.Inference;

namespace WebPredict.Tests;

/// <summary>One server for the class (started once), tested over real HTTP.</summary>
public sealed class ServerFixture : IAsyncLifetime
{
    public WebServer Server { get; private set; } = null!;

    public async Task InitializeAsync() => Server = await WebServer.StartAsync();

    public async Task DisposeAsync() => await Server.DisposeAsync();
}

public sealed class PredictApiTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private HttpClient Client => fixture.Server.Client;

    private static string[] Photos(int count)
    {
        var all = Directory.GetFiles(RepoPaths.SamplePhotos, "*.jpg", SearchOption.AllDirectories);
        Array.Sort(all, StringComparer.Ordinal);
        return [.. all.Where((_, i) => i % (all.Length / count) == 0).Take(count)];
    }

    /// <summary>A generated 120×90 JPEG, for tests where the picture does not matter.</summary>
    private static byte[] Jpeg { get; } = TestImages.NoiseJpegBytes(120, 90, seed: 5);

    private static MultipartFormDataContent Form(byte[] bytes, string fileName, string field = "image", string mediaType = "image/jpeg")
    {
        var file = new ByteArrayContent(bytes);
        file.Headers.ContentType = new MediaTypeHeaderValue(mediaType);
        return new MultipartFormDataContent { { file, field, fileName } };
    }

    private async Task<(HttpStatusCode Status, JsonElement Body)> PostAsync(HttpContent content, string query = "")
    {
        using var response = await Client.PostAsync("/predict" + query, content);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        return (response.StatusCode, await response.Content.ReadFromJsonAsync<JsonElement>());
    }

    private async Task<string> ErrorAsync(HttpStatusCode expected, HttpContent content, string query = "")
    {
        var (status, body) = await PostAsync(content, query);
        Assert.Equal(expected, status);
        return body.GetProperty("error").GetString()!;
    }

    [Fact]
    public async Task Health_DescribesTheModel()
    {
        var body = await Client.GetFromJsonAsync<JsonElement>("/health");

        Assert.Equal("ok", body.GetProperty("status").GetString());
        Assert.Equal("flowers_stretch.onnx", body.GetProperty("model").GetString());
        Assert.Equal(32, body.GetProperty("inputWidth").GetInt32());
        Assert.Equal(24, body.GetProperty("inputHeight").GetInt32());
        Assert.Equal("stretch", body.GetProperty("resize").GetString());
        Assert.Equal(5, body.GetProperty("classes").GetArrayLength());
    }

    [Fact]
    public async Task Page_IsSelfContainedHtml()
    {
        using var response = await Client.GetAsync("/");
        var html = await response.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/html", response.Content.Headers.ContentType?.MediaType);
        Assert.Contains("<input id=\"file\" type=\"file\" accept=\"image/*\">", html, StringComparison.Ordinal);
        Assert.Contains("fetch(\"predict?topK=\"", html, StringComparison.Ordinal);
        Assert.Contains("addEventListener(\"drop\"", html, StringComparison.Ordinal);
        // No CDN, no external script, style sheet, font or image.
        Assert.DoesNotContain("http://", html, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("https://", html, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("<script src", html, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("<link", html, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    [Trait("Category", "RealData")]
    public async Task Predict_RealPhotos_TopClassesAsJson_SameAsTheLibrary()
    {
        using var library = ImageClassifier.Load(WebServer.Model);
        foreach (var photo in Photos(4))
        {
            using var form = Form(await File.ReadAllBytesAsync(photo), Path.GetFileName(photo));

            var (status, body) = await PostAsync(form, "?topK=3");

            Assert.Equal(HttpStatusCode.OK, status);
            var expected = library.Predict(photo, topK: 3);
            Assert.Equal(expected.Label, body.GetProperty("label").GetString());
            Assert.Equal(expected.Index, body.GetProperty("index").GetInt32());
            Assert.Equal(expected.Probability, body.GetProperty("probability").GetSingle());
            Assert.Equal(Path.GetFileName(photo), body.GetProperty("file").GetString());
            Assert.True(body.GetProperty("elapsedMs").GetDouble() >= 0);
            var top = body.GetProperty("top").EnumerateArray().ToList();
            Assert.Equal(expected.Top.Select(t => (t.Label, t.Index, t.Probability)),
                top.Select(t => (t.GetProperty("label").GetString()!, t.GetProperty("index").GetInt32(), t.GetProperty("probability").GetSingle())));
        }
    }

    [Theory]
    [InlineData("", 5)]
    [InlineData("?topK=1", 1)]
    [InlineData("?topK=2", 2)]
    [InlineData("?topK=99", 5)]
    public async Task Predict_TopKQuery(string query, int expected)
    {
        using var form = Form(Jpeg, "photo.jpg");

        var (status, body) = await PostAsync(form, query);

        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(expected, body.GetProperty("top").GetArrayLength());
    }

    [Fact]
    public async Task Predict_TheOnlyFileIsTakenWhateverItsFieldName()
    {
        using var form = Form(Jpeg, "photo.jpg", field: "photo");

        var (status, _) = await PostAsync(form);

        Assert.Equal(HttpStatusCode.OK, status);
    }

    [Fact]
    [Trait("Category", "RealData")]
    public async Task Predict_ManyRequestsAtOnce_AllAnswered()
    {
        var photos = Photos(8);
        var tasks = Enumerable.Range(0, 24).Select(async i =>
        {
            using var form = Form(await File.ReadAllBytesAsync(photos[i % photos.Length]), "p.jpg");
            var (status, body) = await PostAsync(form, "?topK=1");
            return (i, status, body.GetProperty("label").GetString());
        }).ToList();
        using var library = ImageClassifier.Load(WebServer.Model);

        foreach (var (i, status, label) in await Task.WhenAll(tasks))
        {
            Assert.Equal(HttpStatusCode.OK, status);
            Assert.Equal(library.Predict(photos[i % photos.Length]).Label, label);
        }
    }

    [Fact]
    public async Task NotAnImage_Is400WithTheReason()
    {
        using var form = Form("just some text\n"u8.ToArray(), "notes.txt", mediaType: "text/plain");

        var error = await ErrorAsync(HttpStatusCode.BadRequest, form);

        Assert.StartsWith("'notes.txt' is not a usable image: the content is not a recognised image format (supported: ", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TruncatedJpeg_Is400()
    {
        var jpeg = TestImages.NoiseJpegBytes(64, 64, seed: 3);
        using var form = Form(jpeg[..(jpeg.Length / 2)], "half.jpg");

        var error = await ErrorAsync(HttpStatusCode.BadRequest, form);

        Assert.Equal("'half.jpg' is not a usable image: the JPEG data is truncated (it ends before the end-of-image marker).", error);
    }

    [Fact]
    public async Task ImageDeclaringTooManyPixels_Is400BeforeDecoding()
    {
        using var form = Form(TestImages.PngHeaderOnly(100_000, 100_000), "bomb.png", mediaType: "image/png");

        var error = await ErrorAsync(HttpStatusCode.BadRequest, form);

        Assert.Contains("declares 100000x100000 = 10,000,000,000 pixels, above the limit of 50,000,000", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task EmptyFile_Is400()
    {
        using var form = Form([], "empty.jpg");

        Assert.Equal("The uploaded file 'empty.jpg' is empty.", await ErrorAsync(HttpStatusCode.BadRequest, form));
    }

    [Fact]
    public async Task FormWithoutAFile_Is400()
    {
        using var form = new MultipartFormDataContent { { new StringContent("x"), "name" } };

        Assert.Equal("The form holds no file: send the image as a file field named 'image'.", await ErrorAsync(HttpStatusCode.BadRequest, form));
    }

    [Fact]
    public async Task TwoFilesNeitherNamedImage_Is400()
    {
        using var form = new MultipartFormDataContent { { new ByteArrayContent([1]), "a", "a.jpg" }, { new ByteArrayContent([2]), "b", "b.jpg" } };

        Assert.Equal("The form holds 2 files and none is named 'image': send one image, as the field 'image'.",
            await ErrorAsync(HttpStatusCode.BadRequest, form));
    }

    [Fact]
    public async Task NotMultipart_Is415()
    {
        using var raw = new ByteArrayContent(Jpeg);
        raw.Headers.ContentType = new MediaTypeHeaderValue("image/jpeg");

        var error = await ErrorAsync(HttpStatusCode.UnsupportedMediaType, raw);

        Assert.Equal("Send the image as multipart/form-data with a file field named 'image' (got Content-Type 'image/jpeg').", error);
    }

    [Theory]
    [InlineData("0")]
    [InlineData("-3")]
    [InlineData("five")]
    public async Task BadTopK_Is400(string topK)
    {
        using var form = Form(Jpeg, "photo.jpg");

        var error = await ErrorAsync(HttpStatusCode.BadRequest, form, "?topK=" + topK);

        Assert.Equal($"topK must be a positive integer; got '{topK}'.", error);
    }

    [Theory]
    [InlineData("GET", "/predict", HttpStatusCode.MethodNotAllowed, "Method not allowed: send the image with POST /predict.")]
    [InlineData("GET", "/nowhere", HttpStatusCode.NotFound, "Not found: the endpoints are GET /, POST /predict and GET /health.")]
    public async Task WrongRoute_IsJson(string method, string path, HttpStatusCode expected, string message)
    {
        using var request = new HttpRequestMessage(new HttpMethod(method), path);
        using var response = await Client.SendAsync(request);
        var body = await response.Content.ReadFromJsonAsync<JsonElement>();

        Assert.Equal(expected, response.StatusCode);
        Assert.Equal(message, body.GetProperty("error").GetString());
    }
}

public sealed class UploadLimitTests
{
    [Fact]
    public async Task LargerThanUploadMaxBytes_Is413_SmallerIsServed()
    {
        await using var server = await WebServer.StartAsync("--Upload:MaxBytes=20000");
        var big = TestImages.NoiseJpegBytes(200, 200, seed: 1);
        var small = TestImages.NoiseJpegBytes(40, 40, seed: 2);
        Assert.True(big.Length > 20_000 && small.Length < 20_000);

        using var bigForm = new MultipartFormDataContent { { new ByteArrayContent(big), "image", "big.jpg" } };
        using var tooLarge = await server.Client.PostAsync("/predict", bigForm);
        var body = await tooLarge.Content.ReadFromJsonAsync<JsonElement>();
        using var smallForm = new MultipartFormDataContent { { new ByteArrayContent(small), "image", "small.jpg" } };
        using var fine = await server.Client.PostAsync("/predict", smallForm);

        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, tooLarge.StatusCode);
        Assert.Equal("The upload is larger than the limit of 20,000 bytes (Upload:MaxBytes).", body.GetProperty("error").GetString());
        Assert.Equal(HttpStatusCode.OK, fine.StatusCode);
    }
}

public sealed class StartupTests
{
    [Fact]
    public void NoModelPath_StopsStartupSayingHowToSetIt()
    {
        var ex = Assert.Throws<InvalidOperationException>(() => Program.CreateApp(["--urls=http://127.0.0.1:0", "--Model:Path="]));

        Assert.StartsWith("No model configured: set Model:Path to an exported .onnx classifier", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ModelNotFollowingTheContract_StopsStartup()
    {
        var path = RepoPaths.TestData("inference", "violation_output_name.onnx");

        var ex = Assert.Throws<InvalidModelException>(() => Program.CreateApp(["--urls=http://127.0.0.1:0", $"--Model:Path={path}"]));

        Assert.Contains("no output named 'probabilities'", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void BadNumber_StopsStartup()
    {
        var ex = Assert.Throws<InvalidOperationException>(() =>
            Program.CreateApp(["--urls=http://127.0.0.1:0", $"--Model:Path={WebServer.Model}", "--Upload:MaxBytes=lots"]));

        Assert.Equal("Upload:MaxBytes must be an integer from 1 to 1073741824; got 'lots'.", ex.Message);
    }
}
