// <readme:bf16>
using TransferLearning;

// </readme:bf16>
namespace QuickStart.Snippets;

/// <summary>README, "Bf16 backbone".</summary>
internal static class Bf16
{
    public static void Run(TransferLearning.Datasets.DatasetSplit data)
    {
        // <readme:bf16>
        var (model, history) = TransferLearner.From("resnet18").Freeze().AddHead(data.Classes).WithBf16Backbone().Fit(data, 6);
        // </readme:bf16>
        Console.WriteLine(history);
        model.Dispose();
    }
}
