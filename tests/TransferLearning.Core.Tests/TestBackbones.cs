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

    /// <summary>A learner on <see cref="Tiny"/> wrapped in a <see cref="CountingModule"/>: learning rate 0.05, batches of 4.</summary>
    public static TransferLearner TinyLearner(out CountingModule counter)
    {
        var inner = Tiny();
        counter = new CountingModule(inner.Module);
        return TransferLearner.From(new Backbone(TinySource, counter, 8, inner.InputSpec)).WithLearningRate(0.05).WithBatchSize(4);
    }

    /// <summary>Snapshot of every parameter and buffer, for before/after comparisons.</summary>
    public static Dictionary<string, float[]> Weights(nn.Module module) =>
        module.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().cpu().to(ScalarType.Float32).data<float>().ToArray());
}

/// <summary>Wraps a module and counts the images it sees.</summary>
internal sealed class CountingModule : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006 // TorchSharp names the submodule after this field.
    private readonly nn.Module<Tensor, Tensor> inner;
#pragma warning restore IDE1006

    public CountingModule(nn.Module<Tensor, Tensor> inner)
        : base("counting")
    {
        this.inner = inner;
        RegisterComponents();
    }

    public long Images { get; private set; }

    /// <summary>The batch size of every forward call, in order.</summary>
    public List<long> BatchSizes { get; } = [];

    /// <summary>When set, forward throws once this many images have been seen.</summary>
    public long? FailAfterImages { get; set; }

    public override Tensor forward(Tensor input)
    {
        if (Images >= FailAfterImages)
        {
            throw new InvalidOperationException("test backbone failure");
        }

        Images += input.shape[0];
        BatchSizes.Add(input.shape[0]);
        return inner.forward(input);
    }
}
