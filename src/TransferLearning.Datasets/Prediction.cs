namespace TransferLearning.Datasets;

/// <summary>A class and its predicted probability.</summary>
/// <param name="Label">Class name.</param>
/// <param name="Index">Class index in the class list.</param>
/// <param name="Probability">Softmax probability.</param>
public sealed record ClassProbability(string Label, int Index, float Probability);

/// <summary>What the model says about one image.</summary>
/// <param name="Label">The most probable class.</param>
/// <param name="Index">Its index in the class list.</param>
/// <param name="Probability">Its probability.</param>
/// <param name="Top">The <c>topK</c> most probable classes, most probable first.</param>
/// <param name="Probabilities">The probability of every class, in class order.</param>
/// <param name="Source">The file the image came from, when it came from a file.</param>
public sealed record Prediction(
    string Label,
    int Index,
    float Probability,
    IReadOnlyList<ClassProbability> Top,
    IReadOnlyList<float> Probabilities,
    string? Source = null)
{
    /// <summary>
    /// Builds the prediction for one image from the probability of every class: <see cref="Top"/> holds the
    /// <paramref name="topK"/> most probable classes (fewer when there are fewer classes), most probable first, equal
    /// probabilities in class order. Every predictor of the library (LibTorch or ONNX Runtime) goes through here.
    /// </summary>
    /// <param name="classes">Class names in label order.</param>
    /// <param name="probabilities">The probability of every class, in class order (copied).</param>
    /// <param name="topK">How many classes to list in <see cref="Top"/> (at least 1).</param>
    /// <param name="source">The file the image came from, or null.</param>
    /// <returns>The prediction.</returns>
    /// <exception cref="ArgumentException">The number of probabilities is not the number of classes, or there are no classes.</exception>
    public static Prediction FromProbabilities(IReadOnlyList<string> classes, ReadOnlySpan<float> probabilities, int topK, string? source = null)
    {
        ArgumentNullException.ThrowIfNull(classes);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(topK);
        if (classes.Count == 0 || probabilities.Length != classes.Count)
        {
            throw new ArgumentException(
                $"Expected one probability per class ({classes.Count} classes); got {probabilities.Length}.", nameof(probabilities));
        }

        var row = probabilities.ToArray();
        var order = new int[row.Length];
        for (var i = 0; i < order.Length; i++)
        {
            order[i] = i;
        }

        Array.Sort(order, (a, b) => row[a] != row[b] ? row[b].CompareTo(row[a]) : a.CompareTo(b));
        var top = new ClassProbability[Math.Min(topK, row.Length)];
        for (var k = 0; k < top.Length; k++)
        {
            top[k] = new ClassProbability(classes[order[k]], order[k], row[order[k]]);
        }

        return new Prediction(top[0].Label, top[0].Index, top[0].Probability, top, row, source);
    }
}
