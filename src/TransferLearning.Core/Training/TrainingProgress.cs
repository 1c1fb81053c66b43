namespace TransferLearning.Training;

/// <summary>What training is doing.</summary>
public enum TrainingPhase
{
    /// <summary>Running the frozen backbone once over every image to cache features.</summary>
    Featurizing,

    /// <summary>Training on a batch.</summary>
    Training,

    /// <summary>Measuring on the validation data.</summary>
    Validating,

    /// <summary>An epoch finished; <see cref="TrainingProgress.Completed"/> holds its metrics.</summary>
    EpochEnd,
}

/// <summary>A progress report from <c>FitAsync</c>.</summary>
/// <param name="Phase">What is being done.</param>
/// <param name="Epoch">1-based epoch within the model's history (0 while featurizing).</param>
/// <param name="Step">Images done so far in this phase.</param>
/// <param name="Steps">Images in this phase.</param>
/// <param name="Completed">The finished epoch's metrics when <paramref name="Phase"/> is <see cref="TrainingPhase.EpochEnd"/>.</param>
public sealed record TrainingProgress(TrainingPhase Phase, int Epoch, int Step, int Steps, EpochMetrics? Completed = null);
