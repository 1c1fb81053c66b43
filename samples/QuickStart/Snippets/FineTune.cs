// <readme:fine-tune>
using TransferLearning;

// </readme:fine-tune>
namespace QuickStart.Snippets;

/// <summary>README, "Quick start": fine-tuning continues the model of the quick start.</summary>
internal static class FineTune
{
    public static void Run(TransferLearning.Models.TrainedModel model, TransferLearning.Datasets.DatasetSplit data)
    {
        // <readme:fine-tune>
        var (tuned, all) = TransferLearner.From(model).Unfreeze("layer4").WithLearningRate(1e-5).Fit(data, epochs: 4);
        // </readme:fine-tune>
        Console.WriteLine($"{tuned.Classes.Count} classes, {all.Count} epochs");
    }
}
