// <readme:int8>
using TransferLearning;

// </readme:int8>
namespace QuickStart.Snippets;

/// <summary>README, "Int8 backbone".</summary>
internal static class Int8
{
    public static void Run(TransferLearning.Datasets.DatasetSplit data)
    {
        // <readme:int8>
        var (model, history) = TransferLearner.From("resnet18").Freeze().AddHead(data.Classes).WithInt8Backbone().Fit(data, 6);
        // </readme:int8>
        Console.WriteLine(history);
        model.Dispose();
    }
}
