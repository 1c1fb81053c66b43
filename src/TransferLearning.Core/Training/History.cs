using System.Globalization;
using System.Text;

namespace TransferLearning.Training;

/// <summary>What one epoch measured.</summary>
/// <param name="Epoch">1-based epoch number, counting across fits of the same model.</param>
/// <param name="Loss">Mean training loss (sparse categorical cross-entropy).</param>
/// <param name="Accuracy">Training accuracy.</param>
/// <param name="ValLoss">Mean validation loss; NaN without validation data.</param>
/// <param name="ValAccuracy">Validation accuracy; NaN without validation data.</param>
/// <param name="LearningRate">Learning rate used in the epoch.</param>
/// <param name="Seconds">Wall time of the epoch, including validation.</param>
/// <param name="BackboneFrozen">Whether the whole backbone was frozen in this epoch.</param>
public sealed record EpochMetrics(
    int Epoch,
    double Loss,
    double Accuracy,
    double ValLoss,
    double ValAccuracy,
    double LearningRate,
    double Seconds,
    bool BackboneFrozen);

/// <summary>
/// Per-epoch metrics of a model's training, continued across fits (like Keras's <c>History.history</c>):
/// <c>history["val_accuracy"]</c> lists the validation accuracy of every epoch.
/// </summary>
public sealed class History
{
    /// <summary>Metric name of the training loss.</summary>
    public const string Loss = "loss";

    /// <summary>Metric name of the training accuracy.</summary>
    public const string Accuracy = "accuracy";

    /// <summary>Metric name of the validation loss.</summary>
    public const string ValLoss = "val_loss";

    /// <summary>Metric name of the validation accuracy.</summary>
    public const string ValAccuracy = "val_accuracy";

    /// <summary>Metric name of the learning rate.</summary>
    public const string LearningRate = "lr";

    /// <summary>Metric name of the epoch wall time in seconds.</summary>
    public const string Seconds = "seconds";

    private readonly List<EpochMetrics> _epochs = [];

    /// <summary>Creates an empty history.</summary>
    public History()
    {
    }

    /// <summary>Creates a history holding these epochs.</summary>
    /// <param name="epochs">Epochs in order.</param>
    public History(IEnumerable<EpochMetrics> epochs)
    {
        ArgumentNullException.ThrowIfNull(epochs);
        _epochs.AddRange(epochs);
    }

    /// <summary>Metric names, in Keras order.</summary>
    public static IReadOnlyList<string> MetricNames { get; } = [Loss, Accuracy, ValLoss, ValAccuracy, LearningRate, Seconds];

    /// <summary>The epochs in order.</summary>
    public IReadOnlyList<EpochMetrics> Epochs => _epochs;

    /// <summary>Number of epochs recorded.</summary>
    public int Count => _epochs.Count;

    /// <summary>The last epoch, or null when none ran.</summary>
    public EpochMetrics? Last => _epochs.Count == 0 ? null : _epochs[^1];

    /// <summary>Every metric as a list over epochs, keyed by name (Keras's <c>history.history</c>).</summary>
    public IReadOnlyDictionary<string, IReadOnlyList<double>> Metrics => MetricNames.ToDictionary(n => n, n => this[n]);

    /// <summary>One metric over all epochs.</summary>
    /// <param name="metric">One of <see cref="MetricNames"/>.</param>
    public IReadOnlyList<double> this[string metric] => metric switch
    {
        Loss => _epochs.Select(e => e.Loss).ToList(),
        Accuracy => _epochs.Select(e => e.Accuracy).ToList(),
        ValLoss => _epochs.Select(e => e.ValLoss).ToList(),
        ValAccuracy => _epochs.Select(e => e.ValAccuracy).ToList(),
        LearningRate => _epochs.Select(e => e.LearningRate).ToList(),
        Seconds => _epochs.Select(e => e.Seconds).ToList(),
        _ => throw new KeyNotFoundException($"History has no metric '{metric}'. Metrics: {string.Join(", ", MetricNames)}."),
    };

    internal void Add(EpochMetrics epoch) => _epochs.Add(epoch);

    /// <summary>A table of the epochs, one line each.</summary>
    public override string ToString()
    {
        var sb = new StringBuilder("epoch      loss  accuracy  val_loss  val_accuracy         lr   seconds\n");
        foreach (var e in _epochs)
        {
            sb.AppendLine(CultureInfo.InvariantCulture,
                $"{e.Epoch,5} {e.Loss,9:F4} {e.Accuracy,9:F4} {e.ValLoss,9:F4} {e.ValAccuracy,13:F4} {e.LearningRate,10:G3} {e.Seconds,9:F1}");
        }

        return sb.ToString();
    }
}
