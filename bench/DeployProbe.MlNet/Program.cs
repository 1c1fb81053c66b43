// The ML.NET sides of `bench … deploy`, both through a PredictionEngine for batch 1 and Transform over an IDataView for
// many images (ML.NET's image and ONNX transforms run one row at a time):
// - --model FILE.onnx: the exported .onnx in an ML.NET pipeline (LoadImages → ResizeImages(Fill, i.e. stretch, or
//   IsoCrop for center-crop) → ExtractPixels (planar RGB 0..255) → ApplyOnnxModel). --classes names the class list
//   (JSON array), --input-size the side, --resize the model's resize metadata; --threads N sets OnnxOptions'
//   IntraOpNumThreads and InterOpNumThreads.
// - --model FILE.zip: ML.NET's own peer model, saved by the bench (ResNet18 DnnFeaturizeImage + LbfgsMaximumEntropy,
//   trained by ML.NET on the same split), loaded with MLContext.Model.Load. Its ONNX sessions use ONNX Runtime's
//   default threads (a loaded model has no thread setting), so the bench runs it with --threads 0 only.
using System.Globalization;
using System.Text.Json;
using DeployProbe;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Transforms.Image;
using Microsoft.ML.Transforms.Onnx;

var model = Array.IndexOf(args, "--model") is var m and >= 0 && m + 1 < args.Length ? args[m + 1] : string.Empty;
var side = model.EndsWith(".zip", StringComparison.OrdinalIgnoreCase) ? "mlnet-peer" : "mlnet-onnx";
var threads = 0;
return ProbeHarness.Run(side, args, Load, () => threads > 0 ? threads.ToString(CultureInfo.InvariantCulture) : "ort-default");

IProbeModel Load(ProbeArgs o)
{
    threads = o.Threads;
    var ml = new MLContext();
    if (o.Model.EndsWith(".zip", StringComparison.OrdinalIgnoreCase))
    {
        if (o.Threads > 0)
        {
            throw new ArgumentException("a loaded ML.NET model has no thread setting: run the .zip side with --threads 0");
        }

        var peer = ml.Model.Load(o.Model, out _);
        return new PeerModel(ml, peer);
    }

    var classes = o.Classes is null ? null : JsonSerializer.Deserialize<string[]>(File.ReadAllText(o.Classes));
    var onnx = new OnnxOptions
    {
        ModelFile = o.Model,
        InputColumns = ["image"],
        OutputColumns = ["probabilities"],
        ShapeDictionary = new Dictionary<string, int[]> { ["image"] = [1, 3, o.InputSize, o.InputSize] },
    };
    if (o.Threads > 0)
    {
        onnx.IntraOpNumThreads = o.Threads;
        onnx.InterOpNumThreads = o.Threads;
    }

    var pipeline = ml.Transforms.LoadImages("Picture", imageFolder: string.Empty, inputColumnName: nameof(ImageRow.ImagePath))
        .Append(ml.Transforms.ResizeImages("Picture", o.InputSize, o.InputSize, "Picture",
            o.Resize == "center-crop" ? ImageResizingEstimator.ResizingKind.IsoCrop : ImageResizingEstimator.ResizingKind.Fill))
        .Append(ml.Transforms.ExtractPixels("image", "Picture", interleavePixelColors: false))
        .Append(ml.Transforms.ApplyOnnxModel(onnx));
    var model = pipeline.Fit(ml.Data.LoadFromEnumerable(Array.Empty<ImageRow>()));
    return new OnnxPipelineModel(ml, model, classes);
}

internal sealed class ImageRow
{
    public string ImagePath { get; set; } = string.Empty;
}

internal sealed class ScoreRow
{
    [ColumnName("probabilities")]
    public float[] Probabilities { get; set; } = [];
}

internal sealed class PeerRow
{
    public string PredictedLabel { get; set; } = string.Empty;

    public float[] Score { get; set; } = [];
}

/// <summary>The exported .onnx behind ApplyOnnxModel.</summary>
internal sealed class OnnxPipelineModel(MLContext ml, ITransformer model, string[]? classes) : IProbeModel
{
    private readonly PredictionEngine<ImageRow, ScoreRow> _engine = ml.Model.CreatePredictionEngine<ImageRow, ScoreRow>(model);

    public (string Label, float Probability) PredictOne(string path) => Top1(_engine.Predict(new ImageRow { ImagePath = path }).Probabilities);

    public IReadOnlyList<(string Label, float Probability)> PredictMany(IReadOnlyList<string> paths, int batchSize)
    {
        var rows = ml.Data.LoadFromEnumerable(paths.Select(p => new ImageRow { ImagePath = p }));
        return [.. ml.Data.CreateEnumerable<ScoreRow>(model.Transform(rows), reuseRowObject: false).Select(r => Top1(r.Probabilities))];
    }

    public void Dispose()
    {
        _engine.Dispose();
        (model as IDisposable)?.Dispose();
    }

    private (string Label, float Probability) Top1(float[] probabilities)
    {
        var best = 0;
        for (var i = 1; i < probabilities.Length; i++)
        {
            if (probabilities[i] > probabilities[best])
            {
                best = i;
            }
        }

        var label = classes is not null && best < classes.Length ? classes[best] : best.ToString(CultureInfo.InvariantCulture);
        return (label, probabilities[best]);
    }
}

/// <summary>ML.NET's own model (.zip): PredictedLabel and the largest Score.</summary>
internal sealed class PeerModel(MLContext ml, ITransformer model) : IProbeModel
{
    private readonly PredictionEngine<ImageRow, PeerRow> _engine = ml.Model.CreatePredictionEngine<ImageRow, PeerRow>(model);

    public (string Label, float Probability) PredictOne(string path) => Top1(_engine.Predict(new ImageRow { ImagePath = path }));

    public IReadOnlyList<(string Label, float Probability)> PredictMany(IReadOnlyList<string> paths, int batchSize)
    {
        var rows = ml.Data.LoadFromEnumerable(paths.Select(p => new ImageRow { ImagePath = p }));
        return [.. ml.Data.CreateEnumerable<PeerRow>(model.Transform(rows), reuseRowObject: false).Select(Top1)];
    }

    public void Dispose()
    {
        _engine.Dispose();
        (model as IDisposable)?.Dispose();
    }

    private static (string Label, float Probability) Top1(PeerRow row) => (row.PredictedLabel, row.Score.Length == 0 ? float.NaN : row.Score.Max());
}
