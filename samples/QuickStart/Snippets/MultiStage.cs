// <readme:multi-stage>
using TransferLearning;
using TransferLearning.Datasets;
using TransferLearning.Hub;

// </readme:multi-stage>
namespace QuickStart.Snippets;

/// <summary>README, "A frozen head on multi-stage features".</summary>
internal static class MultiStageSnippet
{
    public static void Run(DatasetSplit data)
    {
        // <readme:multi-stage>
        // Average- and max-pooled layer3 and layer4 maps (1,536 features), standardized for the head; aspect ratio kept.
        var options = new BackboneLoadOptions { Features = BackboneFeatures.MultiStage };
        var (model, history) = TransferLearner.From("resnet18", options).Freeze().AddHead(data.Classes)
            .WithStandardizedFeatures().WithResizeMode(ResizeMode.CenterCrop).Fit(data, epochs: 6);
        // </readme:multi-stage>
        Console.WriteLine($"val accuracy {history[TransferLearning.Training.History.ValAccuracy][^1]:P1}");
        model.Dispose();
    }
}
