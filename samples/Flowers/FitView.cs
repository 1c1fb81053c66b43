using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using Spectre.Console;
using TransferLearning;
using TransferLearning.Training;

namespace Flowers;

/// <summary>Collects progress reports from the training thread for the console to draw.</summary>
internal sealed class FitMonitor(int trainCount, int validationCount) : IProgress<TrainingProgress>
{
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly object _gate = new();
    private int _featurizePass;
    private int _lastFeaturizeStep;
    private double _featurizeSeconds = double.NaN;

    public int TrainCount { get; } = trainCount;

    public int ValidationCount { get; } = validationCount;

    public ConcurrentQueue<EpochMetrics> Completed { get; } = new();

    public TrainingProgress? Latest { get; private set; }

    public int FeaturizedTrain { get; private set; }

    public int FeaturizedValidation { get; private set; }

    public bool Featurizing { get; private set; }

    /// <summary>True once a report other than featurizing arrived (training has begun).</summary>
    public bool PastFeaturizing { get; private set; }

    /// <summary>Images featurized per second (train + validation), or 0 when there was no featurizing pass.</summary>
    public double FeaturizeImagesPerSecond
    {
        get
        {
            lock (_gate)
            {
                var images = FeaturizedTrain + FeaturizedValidation;
                return images == 0 || double.IsNaN(_featurizeSeconds) || _featurizeSeconds <= 0 ? 0 : images / _featurizeSeconds;
            }
        }
    }

    public void Report(TrainingProgress value)
    {
        lock (_gate)
        {
            Latest = value;
            if (value.Phase == TrainingPhase.Featurizing)
            {
                Featurizing = true;

                // Two passes report in turn (training images, then validation images); a smaller step starts the next pass.
                if (value.Step < _lastFeaturizeStep)
                {
                    _featurizePass++;
                }

                _lastFeaturizeStep = value.Step;
                if (_featurizePass == 0)
                {
                    FeaturizedTrain = value.Step;
                    if (value.Step >= value.Steps)
                    {
                        _featurizePass = 1;
                        _lastFeaturizeStep = 0;
                    }
                }
                else
                {
                    FeaturizedValidation = value.Step;
                }

                return;
            }

            if (!PastFeaturizing)
            {
                PastFeaturizing = true;
                if (Featurizing)
                {
                    _featurizeSeconds = _clock.Elapsed.TotalSeconds;
                }
            }

            if (value is { Phase: TrainingPhase.EpochEnd, Completed: { } metrics })
            {
                Completed.Enqueue(metrics);
            }
        }
    }
}

/// <summary>Draws a running fit: a featurizing progress bar, then a live table with a row per epoch.</summary>
internal static class FitView
{
    public static async Task<FitResult> RunAsync(IAnsiConsole console, FitMonitor monitor, Table table, string stage, int lastEpoch, bool featurizes, Task<FitResult> fit)
    {
        // Phase 1: the frozen backbone runs once over every image (its features are cached for all epochs).
        if (featurizes)
        {
            await FeaturizingAsync(console, monitor, fit);
        }

        return await EpochsAsync(console, monitor, table, stage, lastEpoch, fit);
    }

    private static Task FeaturizingAsync(IAnsiConsole console, FitMonitor monitor, Task<FitResult> fit) =>
        console.Progress()
            .AutoClear(false)
            .HideCompleted(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new SpinnerColumn())
            .StartAsync(async ctx =>
            {
                ProgressTask? train = null;
                ProgressTask? validation = null;
                while (!fit.IsCompleted && !monitor.PastFeaturizing)
                {
                    if (monitor.Featurizing)
                    {
                        train ??= ctx.AddTask($"Featurizing {monitor.TrainCount} training images", maxValue: monitor.TrainCount);
                        validation ??= ctx.AddTask($"Featurizing {monitor.ValidationCount} validation images", maxValue: Math.Max(1, monitor.ValidationCount));
                        train.Value = monitor.FeaturizedTrain;
                        validation.Value = monitor.FeaturizedValidation;
                    }

                    await Task.WhenAny(fit, Task.Delay(100));
                }

                if (train is not null && validation is not null && !fit.IsFaulted && !fit.IsCanceled)
                {
                    train.Value = train.MaxValue;
                    validation.Value = validation.MaxValue;
                }
            });

    private static async Task<FitResult> EpochsAsync(IAnsiConsole console, FitMonitor monitor, Table table, string stage, int lastEpoch, Task<FitResult> fit)
    {
        // Phase 2: epochs. Without an interactive terminal (output redirected), print one plain line per epoch instead.
        if (fit.IsFaulted || fit.IsCanceled)
        {
            return await fit;
        }

        if (!console.Profile.Capabilities.Interactive)
        {
            console.WriteLine("epoch  stage          loss  accuracy  val_loss  val_accuracy  seconds");
            while (true)
            {
                while (monitor.Completed.TryDequeue(out var e))
                {
                    Report.AddEpochRow(table, e, stage);
                    console.WriteLine(string.Create(
                        CultureInfo.InvariantCulture,
                        $"{e.Epoch,5}  {stage,-9} {Report.F4(e.Loss),9} {Report.F4(e.Accuracy),9} {Report.F4(e.ValLoss),9} {Report.F4(e.ValAccuracy),13} {e.Seconds,8:F2}"));
                }

                if (fit.IsCompleted)
                {
                    return await fit;
                }

                await Task.WhenAny(fit, Task.Delay(150));
            }
        }

        await console.Live(table).AutoClear(false).StartAsync(async ctx =>
        {
            while (true)
            {
                var done = fit.IsCompleted;
                while (monitor.Completed.TryDequeue(out var epoch))
                {
                    Report.AddEpochRow(table, epoch, stage);
                }

                table.Caption(done ? string.Empty : Status(monitor, stage, lastEpoch));
                ctx.Refresh();
                if (done)
                {
                    break;
                }

                await Task.WhenAny(fit, Task.Delay(150));
            }
        });

        return await fit;
    }

    private static string Status(FitMonitor monitor, string stage, int lastEpoch)
    {
        if (monitor.Latest is not { } p || p.Phase == TrainingPhase.Featurizing)
        {
            return "[grey]starting…[/]";
        }

        var what = p.Phase == TrainingPhase.Validating ? "validating" : "training";
        var share = p.Steps == 0 ? 0 : (double)p.Step / p.Steps;
        const int width = 30;
        var filled = (int)Math.Round(share * width);
        return string.Create(
            CultureInfo.InvariantCulture,
            $"[grey]{stage} epoch {p.Epoch}/{lastEpoch} · {what}[/] [green]{new string('━', filled)}[/][grey]{new string('━', width - filled)}[/] [grey]{p.Step}/{p.Steps} images[/]");
    }
}
