using System.Diagnostics;
using System.Globalization;
using Microsoft.ML;
using TransferLearning.Datasets;

namespace TransferLearning.Bench;

/// <summary>
/// The ML.NET peer model of <c>bench … deploy</c>: ML.NET's own frozen-backbone route (the pipeline of
/// <see cref="MlNetComparison"/>: LoadImages → ResizeImages(224) → ExtractPixels → DnnFeaturizeImage(ResNet18) →
/// LbfgsMaximumEntropy), trained on the same training split as the LibTorch model and saved as one ML.NET model
/// (<c>.zip</c>) that maps an image path to <c>PredictedLabel</c> and <c>Score</c>.
/// </summary>
internal static class DeployMlNetPeer
{
    /// <summary>Trains the peer on <paramref name="split"/>'s training images and saves it to <paramref name="zipFile"/>.</summary>
    public static void Train(DatasetSplit split, string zipFile)
    {
        Console.WriteLine("training the ML.NET peer: LoadImages → ResizeImages(224) → ExtractPixels → DnnFeaturizeImage(ResNet18) → LbfgsMaximumEntropy …");
        var clock = Stopwatch.StartNew();
        var ml = new MLContext(seed: 42);
        var train = ml.Data.LoadFromEnumerable(split.Train.Samples.Select(s => new PeerImage { ImagePath = Path.GetFullPath(s.Path), Label = split.Classes[s.Label] }));
        var validation = ml.Data.LoadFromEnumerable(split.Validation.Samples.Select(s => new PeerImage { ImagePath = Path.GetFullPath(s.Path), Label = split.Classes[s.Label] }));

        var featurizer = ml.Transforms.LoadImages("ImageObject", imageFolder: string.Empty, inputColumnName: nameof(PeerImage.ImagePath))
            .Append(ml.Transforms.ResizeImages("ImageObject", imageWidth: 224, imageHeight: 224, inputColumnName: "ImageObject"))
            .Append(ml.Transforms.ExtractPixels("Pixels", "ImageObject"))
            .Append(ml.Transforms.DnnFeaturizeImage("Features", m => m.ModelSelector.ResNet18(ml, m.OutputColumn, m.InputColumn), "Pixels"))
            .Fit(train);

        // The trainer iterates over the features many times: featurize once into memory (as MlNetComparison does).
        var features = ml.Data.Cache(featurizer.Transform(train), nameof(PeerImage.Label), "Features");
        var labelKey = ml.Transforms.Conversion.MapValueToKey("LabelKey", nameof(PeerImage.Label)).Fit(features);
        var keyed = labelKey.Transform(features);
        var trainer = ml.MulticlassClassification.Trainers.LbfgsMaximumEntropy("LabelKey", "Features").Fit(keyed);
        var toLabel = ml.Transforms.Conversion.MapKeyToValue("PredictedLabel").Fit(trainer.Transform(keyed));

        // The saved model needs only ImagePath: the featurizer, the classifier and the key → class name mapping.
        var model = featurizer.Append(trainer).Append(toLabel);
        ml.Model.Save(model, train.Schema, zipFile);

        var predicted = ml.Data.CreateEnumerable<PeerPrediction>(model.Transform(validation), reuseRowObject: false).ToList();
        var accuracy = predicted.Count(p => p.Label == p.PredictedLabel) / (double)Math.Max(1, predicted.Count);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"ML.NET peer trained in {clock.Elapsed.TotalSeconds:F0} s; validation accuracy {accuracy:F4}; saved {zipFile} ({new FileInfo(zipFile).Length / (1024.0 * 1024.0):F1} MiB)"));
    }

    private sealed class PeerPrediction
    {
        public string Label { get; set; } = string.Empty;

        public string PredictedLabel { get; set; } = string.Empty;
    }

    private sealed class PeerImage
    {
        public string ImagePath { get; set; } = string.Empty;

        public string Label { get; set; } = string.Empty;
    }
}
