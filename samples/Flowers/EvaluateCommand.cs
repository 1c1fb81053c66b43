using System.Diagnostics;
using Spectre.Console;
using TransferLearning.Datasets;
using TransferLearning.Models;

namespace Flowers;

internal static class EvaluateCommand
{
    public static async Task<int> RunAsync(string modelPath, string dataPath, string? jsonPath, Session session, bool tta = false)
    {
        Paths.CheckInputFile("--model", modelPath);
        Paths.CheckInputFolder("--data", dataPath, "one sub-folder of images per class");
        if (jsonPath is not null)
        {
            Paths.CheckOutputFile("--json", jsonPath);
            var json = new Paths.Named("--json", jsonPath, true);
            Paths.CheckDistinct([new("--model", modelPath, false), new("--data", dataPath, false), json]);
            Paths.CheckNotInsideFolder(json, "--data", dataPath);
        }

        var cancellationToken = session.Cancellation;
        var clock = Stopwatch.StartNew();
        var console = session.Console;
        console.Write(new Rule("[bold]Flowers[/] · evaluate").LeftJustified());

        // Class folders are matched to the model's classes by name; a folder the model does not know is reported and left out.
        var folder = ImageFolder.Load(dataPath, new ImageFolderOptions { BadImages = BadImagePolicy.Skip, MinimumClasses = 1, AllowEmptyClasses = true });
        TrainedModel model = null!;
        await console.Status().StartAsync($"Loading {Markup.Escape(modelPath)}…", _ =>
        {
            model = TrainedModel.Load(modelPath);
            return Task.CompletedTask;
        });

        using (model)
        {
            var counts = folder.CountPerClass();
            var known = folder.Classes.Where(c => model.Classes.Contains(c)).ToList();
            var unknown = folder.Classes.Select((c, i) => (Name: c, Images: counts[i])).Where(c => !model.Classes.Contains(c.Name)).ToList();
            var missing = model.Classes.Where(c => !folder.Classes.Contains(c)).ToList();
            foreach (var (name, images) in unknown)
            {
                console.MarkupLineInterpolated($"[yellow]excluded[/] class folder '{name}' ({images} images): not a class of the model ({string.Join(", ", model.Classes)}).");
            }

            if (missing.Count > 0)
            {
                console.MarkupLineInterpolated($"[grey]No folder for the model's classes: {string.Join(", ", missing)}.[/]");
            }

            if (known.Count == 0)
            {
                throw new InvalidDataException(
                    $"None of the class folders in '{folder.Root}' ({string.Join(", ", folder.Classes)}) is a class of the model ({string.Join(", ", model.Classes)}).");
            }

            var toKnown = known.Select((c, i) => (c, i)).ToDictionary(p => p.c, p => p.i, StringComparer.Ordinal);
            var samples = folder.Samples
                .Where(s => toKnown.ContainsKey(folder.Classes[s.Label]))
                .Select(s => new ImageSample(s.Path, toKnown[folder.Classes[s.Label]]))
                .ToList();
            var data = new ImageDataset(known, samples);
            var evaluation = await Report.EvaluateWithProgressAsync(console, model, data, "Evaluating", cancellationToken);
            var skipped = folder.Skipped.Concat(evaluation.Skipped).ToList();
            if (evaluation.Count == 0)
            {
                var first = skipped.FirstOrDefault();
                throw new InvalidDataException(
                    $"No image in '{folder.Root}' could be evaluated: all {skipped.Count} image file(s) of the model's classes are unreadable" +
                    (first is null ? "." : $" (e.g. '{first.Path}': {first.Reason}).") + " Check the files, or point --data at another folder.");
            }

            Report.EvaluationTables(console, evaluation);
            foreach (var s in folder.Skipped)
            {
                console.MarkupLineInterpolated($"[yellow]skipped[/] {s.Path}: {s.Reason}");
            }

            console.MarkupLineInterpolated($"Accuracy [bold]{evaluation.Accuracy:P1}[/] on {evaluation.Count} images ({skipped.Count} skipped, {unknown.Sum(u => u.Images)} in excluded folders).");
            var evaluationTta = tta
                ? await Report.EvaluateWithProgressAsync(console, model, data, "Evaluating with test-time augmentation", cancellationToken, testTimeAugmentation: true)
                : null;
            if (evaluationTta is not null)
            {
                console.MarkupLineInterpolated($"Accuracy with test-time augmentation (image and mirror): [bold]{evaluationTta.Accuracy:P1}[/].");
            }

            if (jsonPath is not null)
            {
                var json = JsonReports.Evaluate(Path.GetFullPath(modelPath), folder.Root, evaluation, evaluationTta, skipped, unknown, missing, clock.Elapsed.TotalSeconds);
                JsonReports.Write(jsonPath, json);
                console.MarkupLineInterpolated($"Summary written to {Path.GetFullPath(jsonPath)}");
            }
        }

        return Failure.Ok;
    }
}
