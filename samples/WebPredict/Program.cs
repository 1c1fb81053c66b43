using System.Reflection;
using Microsoft.AspNetCore.Http.Features;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using TransferLearning.Datasets.Decoding;
using TransferLearning.Inference;

namespace WebPredict;

/// <summary>
/// Serves an exported image classifier: <c>GET /</c> a page to pick or drop a photo, <c>POST /predict</c> (multipart
/// form, file field <c>image</c>, <c>?topK=</c>) the top classes as JSON, <c>GET /health</c> the model's description.
/// Run it with <c>dotnet run --project samples/WebPredict -- --Model:Path=flowers.onnx</c>.
/// </summary>
internal static class Program
{
    public static async Task<int> Main(string[] args)
    {
        WebApplication app;
        try
        {
            app = CreateApp(args);
        }
        catch (Exception ex) when (ex is InvalidOperationException or FileNotFoundException or InvalidModelException)
        {
            await Console.Error.WriteLineAsync("WebPredict: " + ex.Message);
            return 1;
        }

        await using (app)
        {
            await app.RunAsync();
        }

        return 0;
    }

    /// <summary>Builds the app (configuration, model, endpoints) without starting it; tests start it on a loopback port.</summary>
    /// <param name="args">Command-line arguments, e.g. <c>--Model:Path=FILE</c>, <c>--urls=http://127.0.0.1:0</c>.</param>
    /// <returns>The app; the caller starts and disposes it.</returns>
    /// <exception cref="InvalidOperationException">The configuration is missing or invalid.</exception>
    /// <exception cref="FileNotFoundException">The model file does not exist.</exception>
    /// <exception cref="InvalidModelException">The model file is not an exported classifier.</exception>
    public static WebApplication CreateApp(string[] args)
    {
        // appsettings.json is read from next to the app, whatever the current directory (which relative paths such as
        // Model:Path are resolved against).
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });
        var settings = WebPredictSettings.Read(builder.Configuration);
        // Loaded before the host is built, so a bad model stops startup with the loader's message.
        var classifier = ImageClassifier.Load(settings.ModelPath, new ImageClassifierOptions
        {
            IntraOpThreads = settings.IntraOpThreads,
            Decode = new ImageDecodeOptions { MaxPixels = settings.MaxPixels },
        });
        try
        {
            WarmUp(classifier); // also proves the model runs: a model that loads but fails to run stops startup
        }
        catch
        {
            classifier.Dispose();
            throw;
        }

        // The body may exceed the file by the multipart framing; the file itself is checked against MaxUploadBytes.
        var maxBody = settings.MaxUploadBytes + PredictEndpoint.MultipartAllowance;
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.Limits.MaxRequestBodySize = maxBody);
        builder.Services.Configure<FormOptions>(form => form.MultipartBodyLengthLimit = maxBody);
        builder.Services.AddSingleton(settings);
        builder.Services.AddSingleton(_ => classifier); // made by a factory, so the container disposes it

        var app = builder.Build();
        app.Services.GetRequiredService<ImageClassifier>(); // resolved once, so the container owns and disposes it
        // Unexpected failures (the middleware logs them) still answer in JSON; bad uploads never get here.
        app.UseExceptionHandler(error => error.Run(context =>
            Results.Json(new ErrorResponse("The server failed to handle the request."), statusCode: StatusCodes.Status500InternalServerError)
                .ExecuteAsync(context)));
        app.UseStatusCodePages(async status =>
        {
            var code = status.HttpContext.Response.StatusCode;
            var message = code switch
            {
                StatusCodes.Status404NotFound => "Not found: the endpoints are GET /, POST /predict and GET /health.",
                StatusCodes.Status405MethodNotAllowed => "Method not allowed: send the image with POST /predict.",
                _ => $"HTTP {code}.",
            };
            await Results.Json(new ErrorResponse(message), statusCode: code).ExecuteAsync(status.HttpContext);
        });

        app.MapGet("/", () => Results.Content(Page.Value, "text/html; charset=utf-8"));
        app.MapGet("/health", (ImageClassifier model) => Results.Json(HealthResponse.Of(model, settings.ModelPath)));
        app.MapPost("/predict", PredictEndpoint.HandleAsync);
        return app;
    }

    /// <summary>
    /// One prediction on a generated JPEG before the first request, so that request does not pay for loading the
    /// decoder, compiling the resize code (the image is 4× the input size, so the antialiasing pre-shrink runs too) and
    /// ONNX Runtime's first run.
    /// </summary>
    private static void WarmUp(ImageClassifier classifier)
    {
        using var image = new Image<Rgb24>(4 * classifier.InputWidth, 4 * classifier.InputHeight, new Rgb24(128, 128, 128));
        using var jpeg = new MemoryStream();
        image.SaveAsJpeg(jpeg);
        jpeg.Position = 0;
        classifier.Predict(jpeg, topK: 1);
    }

    private static readonly Lazy<string> Page = new(() =>
    {
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream("WebPredict.index.html")
            ?? throw new InvalidOperationException("The page resource WebPredict.index.html is missing from the assembly.");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    });
}
