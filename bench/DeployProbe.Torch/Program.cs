// The LibTorch side of `bench … deploy`: TrainedModel.Load(".tlmodel") and Predict, as a predicting app would.
// --threads N calls torch.set_num_threads(N) first; 0 keeps LibTorch's default.
using DeployProbe;
using TorchSharp;
using TransferLearning.Models;
using TransferLearning.Native;

return ProbeHarness.Run("torch", args, Load, () => torch.get_num_threads().ToString(System.Globalization.CultureInfo.InvariantCulture));

static IProbeModel Load(ProbeArgs o)
{
    TorchNativeLoader.EnsureLoaded();
    if (o.Threads > 0)
    {
        torch.set_num_threads(o.Threads);
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
