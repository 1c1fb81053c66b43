// <readme:mirror-averaged>
using TransferLearning;
using TransferLearning.Datasets;
using TransferLearning.Hub;

// </readme:mirror-averaged>
namespace QuickStart.Snippets;

/// <summary>README, "Mirror-averaged features".</summary>
internal static class MirrorAveragedSnippet
{
    public static void Run(DatasetSplit data)
    {
        // <readme:mirror-averaged>
        // Multi-stage features, each the mean over the photo and its mirror; the int8 backbone pays for the second pass.
        var options = new BackboneLoadOptions { Features = BackboneFeatures.MultiStage, MirrorAveraged = true };
        var (model, history) = TransferLearner.From("resnet18", options).Freeze().AddHead(data.Classes)
            .WithStandardizedFeatures().WithResizeMode(ResizeMode.CenterCrop).WithInt8Backbone().Fit(data, epochs: 6);
        // </readme:mirror-averaged>
        Console.WriteLine($"val accuracy {history[TransferLearning.Training.History.ValAccuracy][^1]:P1}");
        model.Dispose();
    }
}
