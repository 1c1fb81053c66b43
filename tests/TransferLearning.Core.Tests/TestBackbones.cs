using TransferLearning.Backbones;
using TransferLearning.Datasets;
using static TorchSharp.torch;

namespace TransferLearning.Core.Tests;

/// <summary>Tiny generated networks that stand in for pretrained backbones in fast tests.</summary>
internal static class TestBackbones
{
    public const string TinySource = "test:tiny";

    /// <summary>conv(3→8, stride 2) → BatchNorm → ReLU → conv(8→8) → BatchNorm → ReLU → global average pool → flatten: 8 features.</summary>
    public static Backbone Tiny(int seed = 7, int size = 32, bool fixedSize = false)
    {
        var module = nn.Sequential(
            ("stem", nn.Conv2d(3, 8, 3, stride: 2, padding: 1)),
            ("stem_bn", nn.BatchNorm2d(8)),
            ("stem_relu", nn.ReLU()),
            ("block1", nn.Conv2d(8, 8, 3, padding: 1)),
            ("block1_bn", nn.BatchNorm2d(8)),
            ("block1_relu", nn.ReLU()),
            ("pool", nn.AdaptiveAvgPool2d(1)),
            ("flatten", nn.Flatten()));

        // Tests run in parallel and share the global generator: draw the conv weights from a private one.
        using var generator = new Generator((ulong)seed, CPU);
        using (no_grad())
        {
            foreach (var (name, p) in module.named_parameters().Where(p => !p.name.Contains("_bn", StringComparison.Ordinal)))
            {
                using var values = rand(p.shape, generator: generator);
                p.copy_(values.mul_(0.6).sub_(0.3)); // nn.init.uniform_ ignores its generator in TorchSharp 0.107
            }
        }

        return new Backbone(TinySource, module, 8, new InputSpec(size, size, 0f, 1f)) { FixedInputSize = fixedSize };
    }

    /// <summary>Snapshot of every parameter and buffer, for before/after comparisons.</summary>
    public static Dictionary<string, float[]> Weights(nn.Module module) =>
        module.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().cpu().to(ScalarType.Float32).data<float>().ToArray());
}
