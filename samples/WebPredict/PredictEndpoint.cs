using System.Diagnostics;
using System.Globalization;
using TransferLearning.Datasets;
using TransferLearning.Inference;

namespace WebPredict;

/// <summary>
/// <c>POST /predict</c>: one image as a multipart form file (field <c>image</c>, or the only file in the form) and an
/// optional <c>?topK=</c>. Every bad upload gets a 4xx with an <see cref="ErrorResponse"/>: 400 (no file, empty file,
/// not a usable image, bad topK, unreadable form), 413 (larger than <c>Upload:MaxBytes</c>), 415 (not multipart).
/// </summary>
internal static class PredictEndpoint
{
    /// <summary>The form field the page sends the image in.</summary>
    public const string FieldName = "image";

    /// <summary>Room for the multipart framing (boundaries, part headers, other small fields) on top of the file.</summary>
    public const long MultipartAllowance = 64 * 1024;

    public static async Task<IResult> HandleAsync(HttpRequest request, ImageClassifier classifier, WebPredictSettings settings, CancellationToken cancellationToken)
    {
        var topK = WebPredictSettings.DefaultTopK;
        if (request.Query.TryGetValue("topK", out var topKText) &&
            (!int.TryParse(topKText, NumberStyles.Integer, CultureInfo.InvariantCulture, out topK) || topK < 1))
        {
            return Error(StatusCodes.Status400BadRequest, $"topK must be a positive integer; got '{topKText}'.");
        }

        if (!request.HasFormContentType || request.ContentType?.StartsWith("multipart/form-data", StringComparison.OrdinalIgnoreCase) != true)
        {
            return Error(StatusCodes.Status415UnsupportedMediaType,
                $"Send the image as multipart/form-data with a file field named '{FieldName}' (got Content-Type '{request.ContentType}').");
        }

        if (request.ContentLength > settings.MaxUploadBytes + MultipartAllowance)
        {
            return TooLarge(settings);
        }

        IFormCollection form;
        try
        {
            form = await request.ReadFormAsync(cancellationToken);
        }
        catch (BadHttpRequestException ex) when (ex.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            return TooLarge(settings);
        }
        catch (InvalidDataException ex) when (ex.Message.Contains("limit", StringComparison.OrdinalIgnoreCase))
        {
            return TooLarge(settings);
        }
        catch (Exception ex) when (ex is InvalidDataException or BadHttpRequestException or IOException)
        {
            return Error(StatusCodes.Status400BadRequest, $"The multipart form could not be read: {ex.Message}");
        }

        var file = form.Files.GetFile(FieldName) ?? (form.Files.Count == 1 ? form.Files[0] : null);
        if (file is null)
        {
            return Error(StatusCodes.Status400BadRequest, form.Files.Count == 0
                ? $"The form holds no file: send the image as a file field named '{FieldName}'."
                : $"The form holds {form.Files.Count} files and none is named '{FieldName}': send one image, as the field '{FieldName}'.");
        }

        if (file.Length == 0)
        {
            return Error(StatusCodes.Status400BadRequest, $"The uploaded file '{file.FileName}' is empty.");
        }

        if (file.Length > settings.MaxUploadBytes)
        {
            return TooLarge(settings);
        }

        using var image = new MemoryStream((int)file.Length);
        await using (var upload = file.OpenReadStream())
        {
            await upload.CopyToAsync(image, cancellationToken);
        }

        image.Position = 0;
        var clock = Stopwatch.StartNew();
        try
        {
            var prediction = classifier.Predict(image, topK);
            return Results.Json(new PredictResponse(
                prediction.Label, prediction.Index, prediction.Probability, prediction.Top, file.FileName, clock.Elapsed.TotalMilliseconds));
        }
        catch (InvalidImageException ex)
        {
            return Error(StatusCodes.Status400BadRequest, $"'{file.FileName}' is not a usable image: {ex.Reason}.");
        }
    }

    private static IResult TooLarge(WebPredictSettings settings) =>
        Error(StatusCodes.Status413PayloadTooLarge,
            $"The upload is larger than the limit of {settings.MaxUploadBytes.ToString("N0", CultureInfo.InvariantCulture)} bytes (Upload:MaxBytes).");

    private static IResult Error(int status, string message) => Results.Json(new ErrorResponse(message), statusCode: status);
}
