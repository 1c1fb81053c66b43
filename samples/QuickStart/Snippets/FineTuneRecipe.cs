// <readme:fine-tune-recipe>
using TransferLearning;
using TransferLearning.Models;
using TransferLearning.Training;

// </readme:fine-tune-recipe>
namespace QuickStart.Snippets;

/// <summary>README, "Fine-tuning in one call".</summary>
internal static class FineTuneRecipeSnippet
{
    public static void Run(TransferLearning.Datasets.DatasetSplit data)
    {
        // <readme:fine-tune-recipe>
        // One head epoch on the frozen backbone, then 5 epochs with the backbone trained by the recipe's defaults.
        var result = TransferLearner.From("resnet18").AddHead(data.Classes).FineTune(data, epochs: 5);
        using var model = result.Model;
        var tta = model.Evaluate(data.Validation, new EvaluateOptions { TestTimeAugmentation = true });
        Console.WriteLine($"val accuracy {result.ValidationEvaluation!.Accuracy:P1}, with test-time augmentation {tta.Accuracy:P1}");

        // Frozen backbone, augmentation kept cheap: 2 augmented views of each training image featurized once and cached.
        var views = Augmentation.Standard;
        views.CachedViews = 2;
        var (frozen, _) = TransferLearner.From("resnet18").Freeze().AddHead(data.Classes).WithAugmentation(views).WithLabelSmoothing(0.1).Fit(data, epochs: 30);
        // </readme:fine-tune-recipe>
        frozen.Dispose();
    }
}
