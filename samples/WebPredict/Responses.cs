using TransferLearning.Datasets;
using TransferLearning.Inference;

namespace WebPredict;

/// <summary>The body of every 4xx/5xx answer.</summary>
/// <param name="Error">What went wrong, in words for the person who sent the request.</param>
internal sealed record ErrorResponse(string Error);

/// <summary>The answer of <c>POST /predict</c>.</summary>
/// <param name="Label">The most probable class.</param>
/// <param name="Index">Its index in the model's class list.</param>
/// <param name="Probability">Its probability.</param>
/// <param name="Top">The topK most probable classes, most probable first.</param>
/// <param name="File">The uploaded file name.</param>
/// <param name="ElapsedMs">Decode, resize and inference time on the server.</param>
internal sealed record PredictResponse(string Label, int Index, float Probability, IReadOnlyList<ClassProbability> Top, string File, double ElapsedMs);

/// <summary>The answer of <c>GET /health</c>: the model being served.</summary>
internal sealed record HealthResponse(string Status, string Model, string? Source, int InputWidth, int InputHeight, string Resize, IReadOnlyList<string> Classes)
{
    public static HealthResponse Of(ImageClassifier model, string path) =>
        new("ok", Path.GetFileName(path), model.Source, model.InputWidth, model.InputHeight,
            model.ResizeMode == ResizeMode.CenterCrop ? "center-crop" : "stretch", model.Classes);
}
