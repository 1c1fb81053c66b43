// Benchmarks: each compares against a baseline measured in the same run and prints ratios.
// Usage: dotnet run -c Release --project bench/TransferLearning.Bench -- <benchmark> [options]
namespace TransferLearning.Bench;

internal static class Program
{
    private static readonly Dictionary<string, (string Help, Func<string[], Task<int>> Run)> Benchmarks = new(StringComparer.OrdinalIgnoreCase)
    {
        // Each benchmark registers one line here: ["name"] = ("what it measures", args => Xxx.RunAsync(args)),
        ["mlnet"] = ("ours vs ML.NET ResNet18 featurizer + LbfgsMaximumEntropy: same data, same split (--data DIR [--limit N] [--rounds N: the sides in turn N times, medians])", args => MlNetComparison.RunAsync(args)),
        ["fit"] = ("the reference recipe on a folder: frozen fit, optional fine-tune (val acc, time, memory)", args => FitBench.RunAsync(args)),
        ["feature-probe"] = ("experiment: linear heads on pooled layer3/layer4 ResNet18 features (--data DIR)", args => FeatureProbe.RunAsync(args)),
        ["forward"] = ("imported ONNX ResNet18 forward vs ONNX Runtime (img/s)", args => ForwardBench.RunAsync(args)),
        ["decode"] = ("decode+resize+normalise a photo folder: parallel ImageLoader vs single thread", args => DecodeBench.RunAsync(args)),
        ["torch-forward"] = ("torchvision arch (--arch resnet18|mobilenet_v2) frozen eval forward: ours vs PyTorch channels_last, same run (img/s, ratio)", args => TorchForwardBench.RunAsync(args)),
        ["conv1x1"] = ("ResNet-50's 1x1 convolutions on channels-last input: matrix product vs NCHW copy vs oneDNN (--modes matmul,nchw[,onednn])", args => Conv1x1Bench.RunAsync(args)),
        ["finetune-step"] = ("torchvision arch fine-tune train step (--arch resnet18 [--from all,layer4]): ours vs PyTorch, same run", args => FineTuneStepBench.RunAsync(args)),
        ["quality"] = ("recipes side by side (frozen, cached views, fine-tuning, TTA): val accuracy, time, peak memory (--data DIR --recipes \"a;b\")", args => QualityBench.RunAsync(args)),
        ["quality-run"] = ("one quality recipe in this process (used by quality)", args => QualityBench.RunOneAsync(args)),
        ["precision"] = ("one backbone in float, int8 and bf16 on real photos: images/s, calibration time, cosine to float (--model SOURCE --data DIR)", args => PrecisionBench.RunAsync(args)),
        ["latency"] = ("one prediction's latency with concurrent requests: LibTorch's default intra-op threads vs --threads 1 (--model FILE.tlmodel)", args => LatencyBench.RunAsync(args)),
        ["deploy"] = ("one flowers model deployed three ways, each a published app in its own process: LibTorch .tlmodel, inference package (ONNX Runtime), ML.NET ApplyOnnxModel, plus ML.NET's peer .zip; publish size, cold start, batch-1 latency, batch-32 img/s, peak RSS ([--model FILE.tlmodel] [--mlnet-model FILE.zip] [--data DIR] [--limit N])", args => DeployBench.RunAsync(args)),
        ["onednn-check"] = ("float convolutions (1x1, 3x3, stem, depthwise; NCHW and channels-last; forward and backward) vs float64 under this process's oneDNN cap", args => OneDnnCheck.RunAsync(args)),
        ["tfjs"] = ("TF.js layers model (Teachable Machine MobileNetV2) forward images/s vs TorchVision MobileNetV2 0.35", args => TfjsForwardBench.RunAsync(args)),
    };

    private static async Task<int> Main(string[] args)
    {
        if (args.Length == 0 || !Benchmarks.TryGetValue(args[0], out var bench))
        {
            Console.WriteLine("usage: TransferLearning.Bench <benchmark> [options]");
            foreach (var (name, (help, _)) in Benchmarks)
            {
                Console.WriteLine($"  {name,-12} {help}");
            }

            return args.Length == 0 ? 0 : 2;
        }

        return await bench.Run(args[1..]).ConfigureAwait(false);
    }
}
