// <readme:pixels>
using TransferLearning.Datasets;
using TransferLearning.Datasets.Pipeline;

// </readme:pixels>
namespace QuickStart.Snippets;

/// <summary>The TransferLearning.Datasets package README: image folders to batches of pixels, without LibTorch.</summary>
internal static class Pixels
{
    public static void Run()
    {
        // <readme:pixels>
        var data = ImageFolder.Load("flower_photos").Split(0.8, seed: 42);          // one sub-folder per class
        var options = new ImageLoaderOptions { BatchSize = 32, Shuffle = true, BadImages = BadImagePolicy.Skip };
        using var loader = new ImageLoader(data.Train, InputSpec.ImageNet(224), options);
        foreach (var batch in loader.Batches(epoch: 0))
        {
            using (batch)
            {
                // batch.Pixels: Count × 3 × 224 × 224 floats (CHW, ImageNet mean/std), batch.Labels, batch.Paths
                Console.WriteLine($"{batch.Count} images, first label {data.Classes[batch.Labels[0]]}");
            }
        }

        Console.WriteLine($"{loader.Skipped.Count} unreadable image(s) skipped");
        // </readme:pixels>
    }
}
