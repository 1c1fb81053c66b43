// The inference-package side of `bench … deploy`: ImageClassifier.Load(".onnx") and Predict on ONNX Runtime.
// --threads N sets IntraOpThreads = N and DecodeThreads = N (the server setting with 1); 0 keeps the defaults.
using System.Globalization;
using DeployProbe;
using TransferLearning.Inference;

var threads = 0;
return ProbeHarness.Run("onnx", args, Load, () => threads > 0 ? threads.ToString(CultureInfo.InvariantCulture) : "ort-default");

IProbeModel Load(ProbeArgs o)
{
    threads = o.Threads;
    var options = new ImageClassifierOptions();
    if (o.Threads > 0)
    {
        options.IntraOpThreads = o.Threads;
        options.DecodeThreads = o.Threads;
    }

    return new OnnxModel(ImageClassifier.Load(o.Model, options));
}

internal sealed class OnnxModel(ImageClassifier classifier) : IProbeModel
{
    public (string Label, float Probability) PredictOne(string path)
    {
        var p = classifier.Predict(path, topK: 1);
        return (p.Label, p.Probability);
    }

    public IReadOnlyList<(string Label, float Probability)> PredictMany(IReadOnlyList<string> paths, int batchSize) =>
        [.. classifier.Predict(paths, topK: 1, batchSize: batchSize).Select(p => (p.Label, p.Probability))];

    public void Dispose() => classifier.Dispose();
}
