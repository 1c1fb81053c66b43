// TEMPORARY: lets the sample compile against main's Datasets stand-ins; delete when main has the real ImageFolder.
#pragma warning disable CA1822
using TransferLearning.Datasets;

namespace Flowers;

internal sealed class ImageFolderOptions
{
    public BadImagePolicy BadImages { get; set; }
    public int MinimumClasses { get; set; } = 2;
    public bool AllowEmptyClasses { get; set; }
}

internal sealed class ImageFolder : ImageDataset
{
    private ImageFolder(string root, IReadOnlyList<string> classes, IReadOnlyList<ImageSample> samples)
        : base(classes, samples) => Root = root;

    public string Root { get; }

    public IReadOnlyList<SkippedImage> Skipped => [];

    public IReadOnlyList<string> IgnoredFiles => [];

    public static ImageFolder Load(string root, ImageFolderOptions? options = null)
    {
        _ = options;
        var full = Path.GetFullPath(root);
        if (!Directory.Exists(full))
        {
            throw new DirectoryNotFoundException($"The image folder '{full}' does not exist.");
        }

        var dirs = Directory.GetDirectories(full).OrderBy(d => d, StringComparer.Ordinal).ToList();
        var classes = dirs.Select(Path.GetFileName).ToList();
        var samples = dirs.SelectMany((d, i) => Directory.GetFiles(d).Order(StringComparer.Ordinal).Select(f => new ImageSample(f, i))).ToList();
        return new ImageFolder(full, classes!, samples);
    }
}

internal static class DatasetShimExtensions
{
    public static DatasetSplit Split(this ImageDataset data, double trainFraction, int seed)
    {
        _ = seed;
        var train = new List<ImageSample>();
        var validation = new List<ImageSample>();
        foreach (var group in data.Samples.GroupBy(s => s.Label))
        {
            var list = group.ToList();
            var n = (int)Math.Round(list.Count * trainFraction, MidpointRounding.AwayFromZero);
            train.AddRange(list.Take(n));
            validation.AddRange(list.Skip(n));
        }

        return new DatasetSplit(new ImageDataset(data.Classes, train), new ImageDataset(data.Classes, validation));
    }

    public static int[] CountPerClass(this ImageDataset data)
    {
        var counts = new int[data.Classes.Count];
        foreach (var s in data.Samples)
        {
            counts[s.Label]++;
        }

        return counts;
    }
}
