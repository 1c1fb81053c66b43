// <readme:save-load>
using TransferLearning.Datasets;
using TransferLearning.Models;

// </readme:save-load>
namespace QuickStart.Snippets;

/// <summary>README, "Save, load, predict, evaluate".</summary>
internal static class SaveLoad
{
    public static void Run(TrainedModel model)
    {
        // <readme:save-load>
        model.Save("flowers.tlmodel");                      // one file: weights, architecture, classes, input spec, history (atomic)
        using var loaded = TrainedModel.Load("flowers.tlmodel");
        var p = loaded.Predict("photo.jpg", topK: 3);        // also a Stream, an Image<Rgb24>, or many paths
        var e = loaded.Evaluate(ImageFolder.Load("test_photos"));
        Console.WriteLine(e);                                // accuracy, loss, per-class precision/recall/F1, confusion matrix
        // </readme:save-load>
        Console.WriteLine(p);
    }
}
