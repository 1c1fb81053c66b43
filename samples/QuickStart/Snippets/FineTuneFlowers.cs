// <readme:fine-tune-flowers>
using TransferLearning;
using TransferLearning.Datasets;
using TransferLearning.Training;

// </readme:fine-tune-flowers>
namespace QuickStart.Snippets;

/// <summary>README, "Measured on flowers": the fine-tuning recipe that reached 0.95.</summary>
internal static class FineTuneFlowersSnippet
{
    public static void Run(DatasetSplit data)
    {
        // <readme:fine-tune-flowers>
        // Photos cropped to their square centre (aspect ratio kept) and milder random crops: 60–100 % of the area, not 35–100 %.
        var crops = Augmentation.Standard;
        crops.CropScaleMin = 0.6;
        var result = TransferLearner.From("resnet18").AddHead(data.Classes)
            .WithResizeMode(ResizeMode.CenterCrop).WithAugmentation(crops).FineTune(data, epochs: 4);
        // </readme:fine-tune-flowers>
        using var model = result.Model;
        Console.WriteLine($"val accuracy {result.ValidationEvaluation!.Accuracy:P1}");
    }
}
