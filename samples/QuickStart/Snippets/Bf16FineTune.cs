// <readme:bf16-fine-tune>
using TransferLearning;

// </readme:bf16-fine-tune>
namespace QuickStart.Snippets;

/// <summary>README, "Bf16 backbone": fine-tuning in bf16.</summary>
internal static class Bf16FineTune
{
    public static void Run(TransferLearning.Datasets.DatasetSplit data)
    {
        // <readme:bf16-fine-tune>
        var tuned = TransferLearner.From("resnet18").AddHead(data.Classes).WithBf16Backbone().FineTune(data, epochs: 4);
        // </readme:bf16-fine-tune>
        tuned.Model.Dispose();
    }
}
