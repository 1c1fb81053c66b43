namespace TransferLearning.Datasets;

/// <summary>One labelled image file.</summary>
/// <param name="Path">Full path of the image file.</param>
/// <param name="Label">Class index (position in <see cref="ImageDataset.Classes"/>).</param>
public sealed record ImageSample(string Path, int Label);

/// <summary>An image file that was left out, and why.</summary>
/// <param name="Path">Full path of the file.</param>
/// <param name="Reason">Why the file was left out (e.g. "truncated JPEG data").</param>
public sealed record SkippedImage(string Path, string Reason);

/// <summary>What to do with a file that cannot be read or decoded as an image.</summary>
public enum BadImagePolicy
{
    /// <summary>Throw an <see cref="InvalidImageException"/> naming the file and the reason (the default).</summary>
    Fail,

    /// <summary>Leave the file out and list it in a <c>Skipped</c> collection.</summary>
    Skip,
}

/// <summary>A labelled set of image files with named classes.</summary>
public class ImageDataset
{
    private readonly Dictionary<string, int> classToIndex;

    /// <summary>Creates a dataset from class names and samples.</summary>
    /// <param name="classes">Class names; a sample's label indexes this list. Names must be unique.</param>
    /// <param name="samples">The labelled samples.</param>
    /// <exception cref="ArgumentException">A class name is repeated or a label is out of range.</exception>
    public ImageDataset(IReadOnlyList<string> classes, IReadOnlyList<ImageSample> samples)
    {
        ArgumentNullException.ThrowIfNull(classes);
        ArgumentNullException.ThrowIfNull(samples);
        classToIndex = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < classes.Count; i++)
        {
            if (classes[i] is null || !classToIndex.TryAdd(classes[i], i))
            {
                throw new ArgumentException($"Class name '{classes[i]}' is null or repeated; class names must be unique.", nameof(classes));
            }
        }

        foreach (var s in samples)
        {
            ArgumentNullException.ThrowIfNull(s, nameof(samples));
            if ((uint)s.Label >= (uint)classes.Count)
            {
                throw new ArgumentException($"Sample '{s.Path}' has label {s.Label}, outside 0..{classes.Count - 1}.", nameof(samples));
            }
        }

        Classes = [.. classes];
        Samples = [.. samples];
    }

    /// <summary>Class names; a label is an index into this list.</summary>
    public IReadOnlyList<string> Classes { get; }

    /// <summary>The labelled samples.</summary>
    public IReadOnlyList<ImageSample> Samples { get; }

    /// <summary>Number of samples.</summary>
    public int Count => Samples.Count;

    /// <summary>Map from class name to class index.</summary>
    public IReadOnlyDictionary<string, int> ClassToIndex => classToIndex;

    /// <summary>Number of samples per class, indexed by label.</summary>
    /// <returns>An array with one count per class.</returns>
    public int[] CountPerClass()
    {
        var counts = new int[Classes.Count];
        foreach (var s in Samples)
        {
            counts[s.Label]++;
        }

        return counts;
    }
}
