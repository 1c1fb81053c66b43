using TransferLearning.Datasets;
using TransferLearning.Models;
using TransferLearning.Training;

namespace TransferLearning;

/// <summary>The result of <see cref="TransferLearner.Fit(Datasets.DatasetSplit, int)"/>: deconstructs into <c>(model, history)</c>.</summary>
/// <param name="Model">The trained model (owns the backbone; dispose it).</param>
/// <param name="History">Every epoch of the model so far, including earlier fits.</param>
public sealed record FitResult(TrainedModel Model, History History)
{
    /// <summary>
    /// How the returned <see cref="Model"/> does on the validation images (accuracy, loss, per-class precision/recall/F1,
    /// confusion matrix), taken from the validation pass the fit already made: the last epoch's, or, when early
    /// stopping restored the best weights, the best epoch's. It equals <c>Model.Evaluate(data.Validation)</c> without
    /// running the backbone over the validation images again. Null when the split has no validation images.
    /// </summary>
    public Evaluation? ValidationEvaluation { get; init; }

    /// <summary>
    /// Training, validation and int8-calibration images that could not be read or decoded and were left out, ordered by
    /// path (see <see cref="TransferLearner.WithBadImages"/>); empty when every image was used.
    /// </summary>
    public IReadOnlyList<SkippedImage> SkippedImages { get; init; } = [];
}
