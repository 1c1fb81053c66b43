using System.Globalization;
using Spectre.Console;
using TransferLearning.Datasets;
using TransferLearning.Models;
using TransferLearning.Training;

namespace Flowers;

/// <summary>Console tables.</summary>
internal static class Report
{
    public static void DataTable(IAnsiConsole console, ImageDataset all, DatasetSplit split)
    {
        var table = new Table().Border(TableBorder.Rounded).Title("Data");
        table.AddColumn("class");
        table.AddColumn(new TableColumn("images").RightAligned());
        table.AddColumn(new TableColumn("train").RightAligned());
        table.AddColumn(new TableColumn("validation").RightAligned());
        var allCounts = all.CountPerClass();
        var train = split.Train.CountPerClass();
        var validation = split.Validation.CountPerClass();
        for (var c = 0; c < all.Classes.Count; c++)
        {
            table.AddRow(Markup.Escape(all.Classes[c]), Num(allCounts[c]), Num(train[c]), Num(validation[c]));
        }

        table.AddRow("[bold]total[/]", $"[bold]{Num(all.Count)}[/]", $"[bold]{Num(split.Train.Count)}[/]", $"[bold]{Num(split.Validation.Count)}[/]");
        console.Write(table);
    }

    public static Table NewEpochTable()
    {
        var table = new Table().Border(TableBorder.Rounded).Title("Training");
        table.AddColumn(new TableColumn("epoch").RightAligned());
        table.AddColumn("stage");
        foreach (var name in new[] { "loss", "accuracy", "val_loss", "val_accuracy", "seconds" })
        {
            table.AddColumn(new TableColumn(name).RightAligned());
        }

        return table;
    }

    public static void AddEpochRow(Table table, EpochMetrics e, string stage) =>
        table.AddRow(
            Num(e.Epoch),
            stage,
            F4(e.Loss),
            F4(e.Accuracy),
            F4(e.ValLoss),
            $"[bold]{F4(e.ValAccuracy)}[/]",
            e.Seconds.ToString("F2", CultureInfo.InvariantCulture));

    public static async Task<Evaluation> EvaluateWithProgressAsync(IAnsiConsole console, TrainedModel model, ImageDataset data, string title, CancellationToken cancellationToken, bool testTimeAugmentation = false)
    {
        Evaluation? result = null;
        await console.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new SpinnerColumn())
            .StartAsync(async ctx =>
            {
                var task = ctx.AddTask($"{title} ({data.Count})", maxValue: Math.Max(1, data.Count));
                var done = 0;
                var work = Task.Run(() => model.Evaluate(data, new EvaluateOptions { BadImages = BadImagePolicy.Skip, TestTimeAugmentation = testTimeAugmentation }, new SyncProgress(n => Volatile.Write(ref done, n)), cancellationToken), cancellationToken);
                while (!work.IsCompleted)
                {
                    task.Value = Volatile.Read(ref done);
                    await Task.WhenAny(work, Task.Delay(100));
                }

                result = await work;
                task.Value = task.MaxValue;
            });
        return result!;
    }

    public static void EvaluationTables(IAnsiConsole console, Evaluation evaluation)
    {
        var perClass = new Table().Border(TableBorder.Rounded).Title("Per class");
        perClass.AddColumn("class");
        foreach (var name in new[] { "precision", "recall", "f1", "support" })
        {
            perClass.AddColumn(new TableColumn(name).RightAligned());
        }

        foreach (var m in evaluation.PerClass)
        {
            perClass.AddRow(Markup.Escape(m.Label), F4(m.Precision), F4(m.Recall), F4(m.F1), Num(m.Support));
        }

        perClass.AddRow("[bold]accuracy[/]", string.Empty, string.Empty, $"[bold]{F4(evaluation.Accuracy)}[/]", $"[bold]{Num(evaluation.Count)}[/]");

        var confusion = new Table().Border(TableBorder.Rounded).Title("Confusion matrix (rows: true, columns: predicted)");
        confusion.AddColumn("true \\ predicted");
        foreach (var c in evaluation.Classes)
        {
            confusion.AddColumn(new TableColumn(Markup.Escape(c)).RightAligned());
        }

        for (var i = 0; i < evaluation.Classes.Count; i++)
        {
            var cells = new List<string> { Markup.Escape(evaluation.Classes[i]) };
            for (var j = 0; j < evaluation.Classes.Count; j++)
            {
                var n = evaluation.ConfusionMatrix[i, j];
                cells.Add(i == j ? $"[green bold]{Num(n)}[/]" : n == 0 ? $"[grey]{Num(n)}[/]" : $"[red]{Num(n)}[/]");
            }

            confusion.AddRow(cells.ToArray());
        }

        console.Write(perClass);
        console.Write(confusion);
        foreach (var s in evaluation.Skipped)
        {
            console.MarkupLineInterpolated($"[yellow]skipped[/] {s.Path}: {s.Reason}");
        }
    }

    public static string F4(double value) => double.IsNaN(value) ? "-" : value.ToString("F4", CultureInfo.InvariantCulture);

    public static string Num(int value) => value.ToString(CultureInfo.InvariantCulture);

    /// <summary>An <see cref="IProgress{T}"/> that reports on the calling thread (no synchronisation context needed).</summary>
    private sealed class SyncProgress(Action<int> report) : IProgress<int>
    {
        public void Report(int value) => report(value);
    }
}
