using TorchSharp;

namespace TransferLearning.Datasets;

/// <summary>
/// One batch of decoded images. It owns its tensors (they are detached from any dispose scope): dispose the batch.
/// </summary>
public sealed class ImageBatch : IDisposable
{
    internal ImageBatch(int index, torch.Tensor images, torch.Tensor labels, IReadOnlyList<string> paths, IReadOnlyList<int> labelValues)
    {
        Index = index;
        Images = images;
        Labels = labels;
        Paths = paths;
        LabelValues = labelValues;
    }

    /// <summary>Position of the batch in its epoch (0-based).</summary>
    public int Index { get; }

    /// <summary>Images, float32 [N, 3, Height, Width], normalised as the <see cref="InputSpec"/> declares.</summary>
    public torch.Tensor Images { get; }

    /// <summary>Class indices, int64 [N].</summary>
    public torch.Tensor Labels { get; }

    /// <summary>Source file of each image, in batch order.</summary>
    public IReadOnlyList<string> Paths { get; }

    /// <summary>Class index of each image, in batch order (the same values as <see cref="Labels"/>, without touching the tensor).</summary>
    public IReadOnlyList<int> LabelValues { get; }

    /// <summary>Number of images (N).</summary>
    public int Count => Paths.Count;

    /// <summary>Frees the tensors.</summary>
    public void Dispose()
    {
        Images.Dispose();
        Labels.Dispose();
    }
}

/// <summary>Progress of one pass over a dataset, reported after each batch.</summary>
/// <param name="Epoch">The epoch being loaded.</param>
/// <param name="Batches">Batches delivered so far.</param>
/// <param name="Images">Images delivered so far.</param>
/// <param name="TotalImages">Images in the dataset.</param>
/// <param name="Skipped">Images skipped so far in this pass (bad files under <see cref="BadImagePolicy.Skip"/>).</param>
public sealed record LoaderProgress(int Epoch, int Batches, int Images, int TotalImages, int Skipped);
