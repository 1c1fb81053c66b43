// The LibTorch side of `bench … deploy`: TrainedModel.Load(".tlmodel") and Predict, as a predicting app would.
// --threads N sets TorchThreads.IntraOp = N before the model is loaded (the server setting with 1); 0 keeps LibTorch's
// default.
using DeployProbe;
using TransferLearning.Models;
using TransferLearning.Native;

return ProbeHarness.Run("torch", args, Load, () => TorchThreads.IntraOp.ToString(System.Globalization.CultureInfo.InvariantCulture));

static IProbeModel Load(ProbeArgs o)
{
    if (o.Threads > 0)
    {
        TorchThreads.IntraOp = o.Threads;
    }

    return new TorchModel(TrainedModel.Load(o.Model));
}

internal sealed class TorchModel(TrainedModel model) : IProbeModel
{
    public (string Label, float Probability) PredictOne(string path)
    {
        var p = model.Predict(path, topK: 1);
        return (p.Label, p.Probability);
    }

    public IReadOnlyList<(string Label, float Probability)> PredictMany(IReadOnlyList<string> paths, int batchSize) =>
        [.. model.Predict(paths, topK: 1, batchSize: batchSize).Select(p => (p.Label, p.Probability))];

    public void Dispose() => model.Dispose();
}
