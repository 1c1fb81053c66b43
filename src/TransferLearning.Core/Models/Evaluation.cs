using System.Globalization;
using System.Text;
using TransferLearning.Datasets;

namespace TransferLearning.Models;

/// <summary>Precision, recall and F1 of one class.</summary>
/// <param name="Label">Class name.</param>
/// <param name="Precision">Of the images predicted as this class, the share that are (0 when none were predicted).</param>
/// <param name="Recall">Of the images of this class, the share predicted as it (0 when there are none).</param>
/// <param name="F1">Harmonic mean of precision and recall.</param>
/// <param name="Support">Images of this class in the data.</param>
public sealed record ClassMetrics(string Label, double Precision, double Recall, double F1, int Support);

/// <summary>How a model did on a labelled data set.</summary>
public sealed class Evaluation
{
    internal Evaluation(IReadOnlyList<string> classes, int[,] confusion, double lossSum, IReadOnlyList<SkippedImage> skipped)
    {
        Classes = classes;
        ConfusionMatrix = confusion;
        Skipped = skipped;
        var n = classes.Count;
        Count = 0;
        var correct = 0;
        for (var i = 0; i < n; i++)
        {
            for (var j = 0; j < n; j++)
            {
                Count += confusion[i, j];
            }

            correct += confusion[i, i];
        }

        Accuracy = Count == 0 ? double.NaN : (double)correct / Count;
        Loss = Count == 0 ? double.NaN : lossSum / Count;
        var perClass = new List<ClassMetrics>(n);
        for (var c = 0; c < n; c++)
        {
            var support = Enumerable.Range(0, n).Sum(j => confusion[c, j]);
            var predicted = Enumerable.Range(0, n).Sum(i => confusion[i, c]);
            var precision = predicted == 0 ? 0 : (double)confusion[c, c] / predicted;
            var recall = support == 0 ? 0 : (double)confusion[c, c] / support;
            var f1 = precision + recall == 0 ? 0 : 2 * precision * recall / (precision + recall);
            perClass.Add(new ClassMetrics(classes[c], precision, recall, f1, support));
        }

        PerClass = perClass;
    }

    /// <summary>Class names, the order of the confusion matrix's rows and columns.</summary>
    public IReadOnlyList<string> Classes { get; }

    /// <summary>Images evaluated.</summary>
    public int Count { get; }

    /// <summary>Share of images whose most probable class is the true one.</summary>
    public double Accuracy { get; }

    /// <summary>Mean cross-entropy loss.</summary>
    public double Loss { get; }

    /// <summary>Per-class precision, recall and F1.</summary>
    public IReadOnlyList<ClassMetrics> PerClass { get; }

    /// <summary>Counts: row = true class, column = predicted class.</summary>
#pragma warning disable CA1819 // A matrix is the natural shape here; it is a copy the caller may keep.
    public int[,] ConfusionMatrix { get; }
#pragma warning restore CA1819

    /// <summary>Images that could not be read (when bad images are skipped), with the reason.</summary>
    public IReadOnlyList<SkippedImage> Skipped { get; }

    /// <summary>
    /// An evaluation from a confusion matrix collected over <paramref name="classes"/>; an empty matrix (a pass that saw
    /// no image) counts as all zeros.
    /// </summary>
    internal static Evaluation FromConfusion(IReadOnlyList<string> classes, int[,] confusion, double lossSum, IReadOnlyList<SkippedImage> skipped) =>
        new(classes, confusion.GetLength(0) == classes.Count ? confusion : new int[classes.Count, classes.Count], lossSum, skipped);

    /// <summary>Adds one batch to a confusion matrix (row = true class, column = predicted = argmax of the logits).</summary>
    /// <param name="confusion">The counts to add to.</param>
    /// <param name="logits">Scores <c>[N, classes]</c>.</param>
    /// <param name="labels">True class indices <c>[N]</c>.</param>
    /// <returns>The number of images added (N).</returns>
    internal static int AddToConfusion(int[,] confusion, TorchSharp.torch.Tensor logits, TorchSharp.torch.Tensor labels)
    {
        var predicted = logits.argmax(1).cpu().data<long>().ToArray();
        var truth = labels.cpu().data<long>().ToArray();
        for (var i = 0; i < truth.Length; i++)
        {
            confusion[truth[i], predicted[i]]++;
        }

        return truth.Length;
    }

    /// <summary>The confusion matrix as aligned text.</summary>
    public string FormatConfusionMatrix()
    {
        const string corner = "true \\ predicted";
        var width = Math.Max(6, Classes.Max(c => c.Length) + 1);
        var first = Math.Max(corner.Length, Classes.Max(c => c.Length)) + 1;
        var sb = new StringBuilder();
        sb.Append(corner.PadRight(first));
        foreach (var c in Classes)
        {
            sb.Append(c.PadLeft(width));
        }

        sb.AppendLine();
        for (var i = 0; i < Classes.Count; i++)
        {
            sb.Append(Classes[i].PadRight(first));
            for (var j = 0; j < Classes.Count; j++)
            {
                sb.Append(ConfusionMatrix[i, j].ToString(CultureInfo.InvariantCulture).PadLeft(width));
            }

            sb.AppendLine();
        }

        return sb.ToString();
    }

    /// <summary>Accuracy, loss, per-class metrics and the confusion matrix as text.</summary>
    public override string ToString()
    {
        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture, $"images: {Count}  accuracy: {Accuracy:F4}  loss: {Loss:F4}");
        var width = Math.Max(6, Classes.Max(c => c.Length) + 1);
        sb.AppendLine(CultureInfo.InvariantCulture, $"{"class".PadRight(width)} precision    recall        f1   support");
        foreach (var m in PerClass)
        {
            sb.AppendLine(CultureInfo.InvariantCulture, $"{m.Label.PadRight(width)} {m.Precision,9:F4} {m.Recall,9:F4} {m.F1,9:F4} {m.Support,9}");
        }

        sb.Append(FormatConfusionMatrix());
        return sb.ToString();
    }
}
