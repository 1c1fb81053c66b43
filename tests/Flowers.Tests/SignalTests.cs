using System.Runtime.InteropServices;
using Flowers.Tests.Support;
using TransferLearning.Models;

namespace Flowers.Tests;

/// <summary>
/// Ctrl+C and SIGTERM: during training they stop the run and nothing is written; once training is done, a stop request
/// lets the save complete (the new model replaces the old file whole) and the run then ends with 130 or 143.
/// </summary>
public sealed class SignalTests : IDisposable
{
    private readonly GeneratedImages _images = new();
    private readonly TempDir _dir = new();

    public void Dispose()
    {
        _images.Dispose();
        _dir.Dispose();
    }

    [Theory]
    [InlineData(PosixSignal.SIGINT, 130)]
    [InlineData(PosixSignal.SIGTERM, 143)]
    public async Task Train_StopRequestedWhileSaving_SaveCompletesThenExitsWithSignalCode(PosixSignal signal, int expectedExit)
    {
        var model = _dir.Combine("m.tlmodel");
        File.WriteAllText(model, "the old model");
        var requested = 0;

        var run = await FlowersCli.RunAsync(TestData.Train(_images.Root, model, "--json", _dir.Combine("m.json")), (printed, stop) =>
        {
            if (printed.Contains("Saving the model to", StringComparison.Ordinal) && Interlocked.Exchange(ref requested, 1) == 0)
            {
                stop.Request(signal);
            }
        });

        Assert.Equal(1, requested);
        Assert.Equal(expectedExit, run.ExitCode);
        Assert.Equal(FlowersCli.ErrorLine($"cancelled after training; the model was saved to '{model}' (plots and summary were not written)."), run.Error);
        Assert.Equal(["m.tlmodel"], Directory.GetFiles(_dir.Path).Select(Path.GetFileName)); // no plots, no summary, no temporary file
        using var saved = TrainedModel.Load(model);
        Assert.Equal(["blue", "red"], saved.Classes);
    }

    [Fact]
    public async Task Train_StopRequestedWhileTraining_NothingWritten()
    {
        var model = _dir.Combine("out", "m.tlmodel");

        var run = await FlowersCli.RunAsync(TestData.Train(_images.Root, model, "--epochs", "10000"), (printed, stop) =>
        {
            if (printed.Contains("val_accuracy", StringComparison.Ordinal))
            {
                stop.Request(PosixSignal.SIGINT);
            }
        });

        Assert.Equal(130, run.ExitCode);
        Assert.Equal(FlowersCli.ErrorLine("cancelled; nothing was saved."), run.Error);
        Assert.False(Directory.Exists(_dir.Combine("out")));
    }

    /// <summary>The real signals, sent to the CLI process: the same clean-up for SIGTERM as for Ctrl+C.</summary>
    [Theory]
    [InlineData(2, 130)]
    [InlineData(15, 143)]
    public async Task Train_SignalDuringTraining_ProcessStopsCleanlyWithSignalCode(int signal, int expectedExit)
    {
        var model = _dir.Combine("out", "m.tlmodel");
        using var process = FlowersProcess.Start("Flowers", TestData.Train(_images.Root, model, "--epochs", "10000"));

        Assert.True(await process.WaitForOutputAsync("val_accuracy", TimeSpan.FromMinutes(2)), process.Output + process.ErrorWithoutLibTorchWarnings);
        process.Signal(signal);

        Assert.Equal(expectedExit, await process.ExitCodeAsync(TimeSpan.FromMinutes(3))); // generous: a loaded 2-core machine starts and stops slowly
        Assert.Equal("flowers: error: cancelled; nothing was saved.\n", process.ErrorWithoutLibTorchWarnings);
        Assert.False(Directory.Exists(_dir.Combine("out")));
    }
}
