// <readme:bad-images>
using TransferLearning;

// </readme:bad-images>
namespace QuickStart.Snippets;

/// <summary>README, "Data layout": unreadable images in a fit.</summary>
internal static class BadImages
{
    public static void Run(TransferLearning.Datasets.DatasetSplit data)
    {
        // <readme:bad-images>
        var result = TransferLearner.From("resnet18").Freeze().AddHead(data.Classes).Fit(data, epochs: 6);
        foreach (var skipped in result.SkippedImages)    // unreadable photos were left out (WithBadImages)
        {
            Console.WriteLine($"skipped {skipped.Path}: {skipped.Reason}");
        }
        // </readme:bad-images>
        result.Model.Dispose();
    }
}
