using TorchSharp;
using TransferLearning.Backbones.Onnx.Export;
using TransferLearning.Native;
using static TorchSharp.torch;

namespace TransferLearning.Backbones.TorchVision;

/// <summary>
/// MobileNetV3 (small/large) as torchvision 0.14+ builds it, with torchvision's state-dict names. Written here because
/// TorchVision 0.107 for .NET uses ReLU6 inside the squeeze-excitation blocks where torchvision uses ReLU (different
/// whenever a squeeze activation exceeds 6) and ignores the class count and width multiplier.
/// </summary>
internal sealed class MobileNetV3 : nn.Module<Tensor, Tensor>
{
    private const double BnEps = 1e-3;
    private const double BnMomentum = 0.01;

    private readonly nn.Module<Tensor, Tensor> _features;
    private readonly nn.Module<Tensor, Tensor> _classifier;

    /// <summary>One row of torchvision's inverted-residual table (channels before width scaling).</summary>
    private readonly record struct Bneck(int In, int Kernel, int Expanded, int Out, bool SqueezeExcite, bool HardSwish, int Stride);

    private static readonly Bneck[] Large =
    [
        new(16, 3, 16, 16, false, false, 1),
        new(16, 3, 64, 24, false, false, 2),
        new(24, 3, 72, 24, false, false, 1),
        new(24, 5, 72, 40, true, false, 2),
        new(40, 5, 120, 40, true, false, 1),
        new(40, 5, 120, 40, true, false, 1),
        new(40, 3, 240, 80, false, true, 2),
        new(80, 3, 200, 80, false, true, 1),
        new(80, 3, 184, 80, false, true, 1),
        new(80, 3, 184, 80, false, true, 1),
        new(80, 3, 480, 112, true, true, 1),
        new(112, 3, 672, 112, true, true, 1),
        new(112, 5, 672, 160, true, true, 2),
        new(160, 5, 960, 160, true, true, 1),
        new(160, 5, 960, 160, true, true, 1),
    ];

    private static readonly Bneck[] Small =
    [
        new(16, 3, 16, 16, true, false, 2),
        new(16, 3, 72, 24, false, false, 2),
        new(24, 3, 88, 24, false, false, 1),
        new(24, 5, 96, 40, true, true, 2),
        new(40, 5, 240, 40, true, true, 1),
        new(40, 5, 240, 40, true, true, 1),
        new(40, 5, 120, 48, true, true, 1),
        new(48, 5, 144, 48, true, true, 1),
        new(48, 5, 288, 96, true, true, 2),
        new(96, 5, 576, 96, true, true, 1),
        new(96, 5, 576, 96, true, true, 1),
    ];

    private MobileNetV3(Bneck[] table, int lastChannel, long numClasses, double widthMult, double dropout)
        : base("MobileNetV3")
    {
        long Adjust(int channels) => TorchVisionLayers.MakeDivisible(channels * widthMult);

        var first = Adjust(table[0].In);
        var layers = new List<nn.Module<Tensor, Tensor>>
        {
            TorchVisionLayers.ConvNormAct(3, first, 3, 2, 1, BnEps, BnMomentum, () => nn.Hardswish()),
        };
        foreach (var row in table)
        {
            layers.Add(new InvertedResidual(Adjust(row.In), row.Kernel, Adjust(row.Expanded), Adjust(row.Out), row.SqueezeExcite, row.HardSwish, row.Stride));
        }

        var lastIn = Adjust(table[^1].Out);
        FeatureSize = 6 * lastIn;
        var last = Adjust(lastChannel);
        layers.Add(TorchVisionLayers.ConvNormAct(lastIn, FeatureSize, 1, 1, 1, BnEps, BnMomentum, () => nn.Hardswish()));
        _features = nn.Sequential(layers);
        _classifier = nn.Sequential(nn.Linear(FeatureSize, last), nn.Hardswish(), nn.Dropout(dropout), nn.Linear(last, numClasses));
        register_module("features", _features);
        register_module("classifier", _classifier);

        TorchVisionLayers.InitConvAndNorm(this);
        using var noGrad = torch.no_grad();
        foreach (var linear in modules().OfType<TorchSharp.Modules.Linear>())
        {
            nn.init.normal_(linear.weight, 0, 0.01);
            nn.init.zeros_(linear.bias);
        }
    }

    /// <summary>Length of the pooled feature vector (input of the classifier): 576 small, 960 large at width 1.</summary>
    public long FeatureSize { get; }

    /// <summary>torchvision's <c>mobilenet_v3_small</c>.</summary>
    public static MobileNetV3 SmallModel(long numClasses = 1000, double widthMult = 1.0) => new(Small, 1024, numClasses, widthMult, 0.2);

    /// <summary>torchvision's <c>mobilenet_v3_large</c>.</summary>
    public static MobileNetV3 LargeModel(long numClasses = 1000, double widthMult = 1.0) => new(Large, 1280, numClasses, widthMult, 0.2);

    public override Tensor forward(Tensor input)
    {
        using var features = _features.forward(input);
        using var pooled = features.mean([2, 3]);
        return _classifier.forward(pooled);
    }

    /// <summary>torchvision's MobileNetV3 <c>InvertedResidual</c>: child <c>block</c>.</summary>
    private sealed class InvertedResidual : nn.Module<Tensor, Tensor>, IOnnxExportable
    {
        private readonly nn.Module<Tensor, Tensor> _block;
        private readonly bool _residual;

        public InvertedResidual(long input, int kernel, long expanded, long output, bool squeezeExcite, bool hardSwish, int stride)
            : base(nameof(InvertedResidual))
        {
            _residual = stride == 1 && input == output;
            Func<nn.Module<Tensor, Tensor>> activation = hardSwish ? () => nn.Hardswish() : () => nn.ReLU();
            var layers = new List<nn.Module<Tensor, Tensor>>();
            if (expanded != input)
            {
                layers.Add(TorchVisionLayers.ConvNormAct(input, expanded, 1, 1, 1, BnEps, BnMomentum, activation));
            }

            layers.Add(TorchVisionLayers.ConvNormAct(expanded, expanded, kernel, stride, expanded, BnEps, BnMomentum, activation));
            if (squeezeExcite)
            {
                // torchvision: squeeze channels _make_divisible(expanded // 4, 8), ReLU inside, hard sigmoid gate.
                layers.Add(new SqueezeExcitation(expanded, TorchVisionLayers.MakeDivisible(expanded / 4), nn.ReLU(), nn.Hardsigmoid()));
            }

            layers.Add(TorchVisionLayers.ConvNormAct(expanded, output, 1, 1, 1, BnEps, BnMomentum, null));
            _block = nn.Sequential(layers);
            register_module("block", _block);
        }

        public override Tensor forward(Tensor input)
        {
            var result = _block.forward(input);
            return _residual ? result.add_(input, KeptScalars.One) : result;
        }

        public string Export(OnnxGraphBuilder builder, string input)
        {
            var x = new TorchModuleExporter(builder).Emit(_block, input, "block");
            return _residual ? builder.Node("Add", [x, input], "add") : x;
        }
    }
}
