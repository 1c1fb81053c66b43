using System.Text.Json;
using System.Text.Json.Nodes;
using TransferLearning.Datasets;
using TransferLearning.Models;
using TransferLearning.Training;

namespace Flowers;

/// <summary>Machine-readable summaries (<c>--json FILE</c>): snake_case keys, NaN written as null.</summary>
internal static class JsonReports
{
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    public static JsonObject Train(
        TrainSettings settings,
        ImageDataset data,
        DatasetSplit split,
        History history,
        int frozenEpochs,
        Evaluation evaluation,
        Evaluation? evaluationTta,
        IEnumerable<SkippedImage> skipped,
        double featurizeImagesPerSecond,
        double secondsTotal,
        string modelPath,
        string curvesPath,
        string confusionPath)
    {
        var epochs = new JsonArray();
        foreach (var e in history.Epochs)
        {
            epochs.Add(new JsonObject
            {
                ["epoch"] = e.Epoch,
                ["stage"] = e.Epoch <= frozenEpochs ? "frozen" : "fine-tune",
                ["loss"] = N(e.Loss),
                ["accuracy"] = N(e.Accuracy),
                ["val_loss"] = N(e.ValLoss),
                ["val_accuracy"] = N(e.ValAccuracy),
                ["learning_rate"] = N(e.LearningRate),
                ["seconds"] = N(e.Seconds),
            });
        }

        var frozenAccuracy = history.Epochs[frozenEpochs - 1].ValAccuracy;
        return new JsonObject
        {
            ["command"] = "train",
            ["data"] = Path.GetFullPath(settings.Data),
            ["backbone"] = settings.Model,
            ["classes"] = Strings(split.Classes),
            ["count"] = data.Count,
            ["train_count"] = split.Train.Count,
            ["val_count"] = split.Validation.Count,
            ["epochs"] = settings.Epochs,
            ["fine_tune_epochs"] = settings.FineTuneEpochs,
            ["augment"] = new JsonObject { ["frozen"] = settings.AugmentHead, ["fine_tune"] = settings.FineTuneEpochs > 0 && settings.AugmentFineTuning },
            ["tta"] = settings.Tta,
            ["int8"] = settings.Int8,
            ["bf16"] = settings.Bf16,
            ["multi_stage"] = settings.MultiStage,
            ["mirror"] = settings.Mirror,
            ["center_crop"] = settings.CenterCrop,
            ["crop_min"] = settings.UsesAugmentation ? settings.Augmentation().CropScaleMin : null,
            ["validation_split"] = settings.ValidationSplit,
            ["seed"] = settings.Seed,
            ["batch_size"] = settings.BatchSize,
            ["featurize_images_per_second"] = N(featurizeImagesPerSecond),
            ["history"] = epochs,
            ["frozen_val_accuracy"] = N(frozenAccuracy),
            ["fine_tune_gain"] = settings.FineTuneEpochs > 0 ? N(history.Last!.ValAccuracy - frozenAccuracy) : null,
            ["val_accuracy"] = N(evaluation.Accuracy),
            ["val_accuracy_tta"] = evaluationTta is null ? null : N(evaluationTta.Accuracy),
            ["val_loss"] = N(evaluation.Loss),
            ["per_class"] = PerClass(evaluation),
            ["confusion_matrix"] = Matrix(evaluation.ConfusionMatrix),
            ["skipped"] = Skipped(skipped),
            ["seconds_total"] = Math.Round(secondsTotal, 3),
            ["model"] = modelPath,
            ["plots"] = new JsonObject { ["curves"] = curvesPath, ["confusion_matrix"] = confusionPath },
        };
    }

    public static JsonObject Evaluate(
        string modelPath,
        string dataPath,
        Evaluation evaluation,
        Evaluation? evaluationTta,
        IEnumerable<SkippedImage> skipped,
        IReadOnlyList<(string Name, int Images)> unknownClasses,
        IReadOnlyList<string> missingClasses,
        double seconds)
    {
        var unknown = new JsonArray();
        foreach (var (name, images) in unknownClasses)
        {
            unknown.Add(new JsonObject { ["class"] = name, ["images"] = images });
        }

        var json = new JsonObject
        {
            ["command"] = "evaluate",
            ["model"] = modelPath,
            ["data"] = dataPath,
            ["classes"] = Strings(evaluation.Classes),
            ["count"] = evaluation.Count,
            ["accuracy"] = N(evaluation.Accuracy),
            ["loss"] = N(evaluation.Loss),
            ["per_class"] = PerClass(evaluation),
            ["confusion_matrix"] = Matrix(evaluation.ConfusionMatrix),
            ["skipped"] = Skipped(skipped),
            ["unknown_classes"] = unknown,
            ["missing_classes"] = Strings(missingClasses),
            ["seconds"] = Math.Round(seconds, 3),
        };
        if (evaluationTta is not null)
        {
            json.Insert(json.IndexOf("loss"), "accuracy_tta", N(evaluationTta.Accuracy));
        }

        return json;
    }

    public static void Write(string path, JsonObject json) =>
        OutputFile.Write(path, temp => File.WriteAllText(temp, json.ToJsonString(Indented) + Environment.NewLine));

    private static JsonArray Skipped(IEnumerable<SkippedImage> skipped)
    {
        var array = new JsonArray();
        foreach (var s in skipped)
        {
            array.Add(new JsonObject { ["path"] = s.Path, ["reason"] = s.Reason });
        }

        return array;
    }

    private static JsonArray PerClass(Evaluation evaluation)
    {
        var array = new JsonArray();
        foreach (var m in evaluation.PerClass)
        {
            array.Add(new JsonObject
            {
                ["class"] = m.Label,
                ["precision"] = N(m.Precision),
                ["recall"] = N(m.Recall),
                ["f1"] = N(m.F1),
                ["support"] = m.Support,
            });
        }

        return array;
    }

    private static JsonArray Matrix(int[,] matrix)
    {
        var rows = new JsonArray();
        for (var i = 0; i < matrix.GetLength(0); i++)
        {
            var row = new JsonArray();
            for (var j = 0; j < matrix.GetLength(1); j++)
            {
                row.Add(matrix[i, j]);
            }

            rows.Add(row);
        }

        return rows;
    }

    private static JsonArray Strings(IEnumerable<string> values) => new([.. values.Select(v => (JsonNode?)v)]);

    private static JsonValue? N(double value) => double.IsFinite(value) ? JsonValue.Create(Math.Round(value, 6)) : null;
}
