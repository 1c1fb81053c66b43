// TEMPORARY: stand-ins for the Datasets API being written on the `datasets` branch. Deleted at merge.
#pragma warning disable CS1591, CA1822, CA1065, IDE0060
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using TorchSharp;
using static TorchSharp.torch;

namespace TransferLearning.Datasets;

public sealed record ImageSample(string Path, int Label);

public class ImageDataset
{
    public ImageDataset(IReadOnlyList<string> classes, IReadOnlyList<ImageSample> samples) { Classes = classes; Samples = samples; }
    public IReadOnlyList<string> Classes { get; }
    public IReadOnlyList<ImageSample> Samples { get; }
    public int Count => Samples.Count;
}

public sealed class DatasetSplit
{
    public DatasetSplit(ImageDataset train, ImageDataset validation) { Train = train; Validation = validation; }
    public ImageDataset Train { get; }
    public ImageDataset Validation { get; }
    public IReadOnlyList<string> Classes => Train.Classes;
}

public sealed class ImageBatch : IDisposable
{
    public Tensor Images { get; init; } = null!;
    public Tensor Labels { get; init; } = null!;
    public IReadOnlyList<string> Paths { get; init; } = [];
    public int Count => Paths.Count;
    public void Dispose() { Images.Dispose(); Labels.Dispose(); }
}

public sealed record SkippedImage(string Path, string Reason);

public enum BadImagePolicy { Fail, Skip }

public sealed class ImageLoaderOptions
{
    public int BatchSize { get; set; } = 32;
    public bool Shuffle { get; set; }
    public int Seed { get; set; }
    public int DegreeOfParallelism { get; set; } = 2;
    public BadImagePolicy BadImages { get; set; }
}

public sealed class ImageLoader : IDisposable
{
    public ImageLoader(ImageDataset data, InputSpec spec, ImageLoaderOptions? options = null) => throw new NotImplementedException();
    public IReadOnlyList<SkippedImage> Skipped => [];
    public IEnumerable<ImageBatch> Batches(int epoch = 0, CancellationToken cancellationToken = default) => throw new NotImplementedException();
    public void Dispose() { }
}

public static class ImageTensor
{
    public static Tensor FromFile(string path, InputSpec spec) => throw new NotImplementedException();
    public static Tensor FromStream(Stream stream, InputSpec spec) => throw new NotImplementedException();
    public static Tensor FromImage(Image<Rgb24> image, InputSpec spec) => throw new NotImplementedException();
}
