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
    private readonly Dictionary<string, int> _classToIndex;

    /// <summary>Creates a dataset from class names and samples.</summary>
    /// <param name="classes">Class names; a sample's label indexes this list. Names must be unique.</param>
    /// <param name="samples">The labelled samples.</param>
    /// <exception cref="ArgumentException">A class name is repeated or a label is out of range.</exception>
    public ImageDataset(IReadOnlyList<string> classes, IReadOnlyList<ImageSample> samples)
    {
        ArgumentNullException.ThrowIfNull(classes);
        ArgumentNullException.ThrowIfNull(samples);
        _classToIndex = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < classes.Count; i++)
        {
            if (classes[i] is null || !_classToIndex.TryAdd(classes[i], i))
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
    public IReadOnlyDictionary<string, int> ClassToIndex => _classToIndex;

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

    /// <summary>
    /// Splits into training and validation sets, stratified by class, reproducibly: within each class the samples are
    /// sorted by path (ordinal) and shuffled with a fixed-algorithm PRNG (SplitMix64) seeded by <paramref name="seed"/>,
    /// so the same seed gives the same split on every machine and runtime.
    /// </summary>
    /// <param name="trainFraction">Fraction of each class for training (0..1); the rest is validation. 0.7 gives the usual 70/30.</param>
    /// <param name="seed">Seed of the shuffle.</param>
    /// <returns>The split (its <see cref="DatasetSplit.Test"/> is empty).</returns>
    public DatasetSplit Split(double trainFraction = 0.7, int seed = 42) => Split(trainFraction, 1.0 - trainFraction, seed);

    /// <summary>
    /// Splits into training, validation and (remainder) test sets, stratified by class and reproducible (see
    /// <see cref="Split(double, int)"/>). Per class, the training count is <c>round(n × trainFraction)</c> and the validation
    /// count <c>round(n × validationFraction)</c> (halves away from zero), capped so they never exceed <c>n</c>; the rest goes to
    /// <see cref="DatasetSplit.Test"/>.
    /// </summary>
    /// <param name="trainFraction">Fraction of each class for training (0..1).</param>
    /// <param name="validationFraction">Fraction of each class for validation (0..1); the two fractions sum to at most 1.</param>
    /// <param name="seed">Seed of the shuffle.</param>
    /// <returns>The split.</returns>
    /// <exception cref="ArgumentOutOfRangeException">A fraction is outside 0..1 or they sum to more than 1.</exception>
    public DatasetSplit Split(double trainFraction, double validationFraction, int seed)
    {
        if (!(trainFraction >= 0 && trainFraction <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(trainFraction), trainFraction, "The training fraction must be between 0 and 1.");
        }

        if (!(validationFraction >= -1e-12 && validationFraction <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(validationFraction), validationFraction, "The validation fraction must be between 0 and 1.");
        }

        if (trainFraction + validationFraction > 1 + 1e-9)
        {
            throw new ArgumentOutOfRangeException(nameof(validationFraction), validationFraction,
                $"The fractions sum to {trainFraction + validationFraction}, more than 1.");
        }

        validationFraction = Math.Max(0, validationFraction);
        var rng = new Pipeline.SplitMix64(unchecked((ulong)seed) ^ 0x5DEECE66DUL);
        List<ImageSample> train = [], validation = [], test = [];
        for (var c = 0; c < Classes.Count; c++)
        {
            var items = Samples.Where(s => s.Label == c).OrderBy(s => s.Path, StringComparer.Ordinal).ToList();
            rng.Shuffle(items);
            var n = items.Count;
            var nTrain = Math.Min(n, (int)Math.Round(n * trainFraction, MidpointRounding.AwayFromZero));
            var nVal = Math.Min(n - nTrain, (int)Math.Round(n * validationFraction, MidpointRounding.AwayFromZero));
            train.AddRange(items.Take(nTrain));
            validation.AddRange(items.Skip(nTrain).Take(nVal));
            test.AddRange(items.Skip(nTrain + nVal));
        }

        return new DatasetSplit(Ordered(train), Ordered(validation), Ordered(test));
    }

    private ImageDataset Ordered(List<ImageSample> samples) =>
        new(Classes, [.. samples.OrderBy(s => s.Label).ThenBy(s => s.Path, StringComparer.Ordinal)]);
}
