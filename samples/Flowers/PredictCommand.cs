using System.Globalization;
using Spectre.Console;
using TransferLearning.Datasets;
using TransferLearning.Models;

namespace Flowers;

internal static class PredictCommand
{
    public static Task<int> RunAsync(string modelPath, string[] images, Session session)
    {
        Paths.CheckInputFile("--model", modelPath);
        var folders = images.Where(Directory.Exists).ToList();
        if (folders.Count > 0)
        {
            throw new UsageException(
                $"IMAGE '{folders[0]}' is a folder, not an image file; pass the image files in it instead (e.g. {Path.Combine(folders[0], "*.jpg")}).");
        }

        var missing = images.Where(i => !File.Exists(i)).ToList();
        if (missing.Count > 0)
        {
            throw new UsageException($"image file(s) not found: {string.Join(", ", missing)}.");
        }

        var cancellationToken = session.Cancellation;
        var console = session.Console;
        using var model = TrainedModel.Load(modelPath);
        var table = new Table().Border(TableBorder.Rounded);
        table.AddColumn("image");
        table.AddColumn("prediction");
        table.AddColumn(new TableColumn("probability").RightAligned());
        table.AddColumn("top 3");
        var failed = 0;
        foreach (var image in images)
        {
            cancellationToken.ThrowIfCancellationRequested();
            Prediction prediction;
            try
            {
                prediction = model.Predict(image, topK: 3);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                // One line per unreadable image; the others are still classified.
                Failure.WriteLine(session, $"cannot classify '{image}': {e.Message}");
                failed++;
                continue;
            }

            var top = string.Join(", ", prediction.Top.Select(t => $"{t.Label} {t.Probability.ToString("P1", CultureInfo.InvariantCulture)}"));
            table.AddRow(
                Markup.Escape(image),
                $"[bold]{Markup.Escape(prediction.Label)}[/]",
                prediction.Probability.ToString("P1", CultureInfo.InvariantCulture),
                Markup.Escape(top));
        }

        if (table.Rows.Count > 0)
        {
            console.Write(table);
        }

        return Task.FromResult(failed == 0 ? Failure.Ok : Failure.Failed);
    }
}
