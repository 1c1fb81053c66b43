using TorchSharp;
using TransferLearning.Backbones.Onnx.Export;
using TransferLearning.Native;
using static TorchSharp.torch;

namespace TransferLearning.Backbones.TorchVision;

/// <summary>
/// EfficientNet-B0 as torchvision 0.14+ builds it (TorchVision for .NET has none), with the same state-dict names
/// (<c>features.0.0.weight</c>, <c>features.1.0.block.1.fc1.weight</c>, …, <c>classifier.1.weight</c>), so torchvision's
/// published <c>efficientnet_b0_rwightman-*.pth</c> weights load strictly. BatchNorm uses PyTorch's defaults
/// (eps 1e-5, momentum 0.1) exactly as torchvision's B0 does (only B5–B7 and V2 change them).
/// </summary>
internal sealed class EfficientNet : nn.Module<Tensor, Tensor>
{
    private const double BnEps = 1e-5;
    private const double BnMomentum = 0.1;

    // expand ratio, kernel, stride, input channels, output channels, layers (torchvision's table for B0).
    private static readonly (int Expand, int Kernel, int Stride, int In, int Out, int Layers)[] B0 =
    [
        (1, 3, 1, 32, 16, 1),
        (6, 3, 2, 16, 24, 2),
        (6, 5, 2, 24, 40, 2),
        (6, 3, 2, 40, 80, 3),
        (6, 5, 1, 80, 112, 3),
        (6, 5, 2, 112, 192, 4),
        (6, 3, 1, 192, 320, 1),
    ];

    private readonly nn.Module<Tensor, Tensor> _features;
    private readonly nn.Module<Tensor, Tensor> _classifier;

    private EfficientNet(long numClasses, double dropout, double stochasticDepth)
        : base("EfficientNet")
    {
        var layers = new List<nn.Module<Tensor, Tensor>>
        {
            TorchVisionLayers.ConvNormAct(3, B0[0].In, 3, 2, 1, BnEps, BnMomentum, () => nn.SiLU()),
        };
        var totalBlocks = B0.Sum(s => s.Layers);
        var blockId = 0;
        foreach (var stage in B0)
        {
            var blocks = new List<nn.Module<Tensor, Tensor>>();
            for (var i = 0; i < stage.Layers; i++)
            {
                var input = i == 0 ? stage.In : stage.Out;
                var stride = i == 0 ? stage.Stride : 1;
                blocks.Add(new MBConv(input, stage.Out, stage.Expand, stage.Kernel, stride, stochasticDepth * blockId / totalBlocks));
                blockId++;
            }

            layers.Add(nn.Sequential(blocks));
        }

        var last = B0[^1].Out;
        layers.Add(TorchVisionLayers.ConvNormAct(last, 4 * last, 1, 1, 1, BnEps, BnMomentum, () => nn.SiLU()));
        _features = nn.Sequential(layers);
        _classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(4 * last, numClasses));
        register_module("features", _features);
        register_module("classifier", _classifier);

        TorchVisionLayers.InitConvAndNorm(this);
        using var noGrad = torch.no_grad();
        foreach (var linear in modules().OfType<TorchSharp.Modules.Linear>())
        {
            var range = 1.0 / Math.Sqrt(linear.out_features);
            nn.init.uniform_(linear.weight, -range, range);
            nn.init.zeros_(linear.bias);
        }
    }

    /// <summary>Number of features before the classifier.</summary>
    public const int FeatureSize = 1280;

    /// <summary>torchvision's <c>efficientnet_b0</c> (dropout 0.2, stochastic depth 0.2).</summary>
    public static EfficientNet B0Model(long numClasses = 1000) => new(numClasses, 0.2, 0.2);

    public override Tensor forward(Tensor input)
    {
        using var features = _features.forward(input);
        using var pooled = features.mean([2, 3]);
        return _classifier.forward(pooled);
    }

    /// <summary>Mobile inverted bottleneck with squeeze-excitation (torchvision's <c>MBConv</c>): child <c>block</c>.</summary>
    private sealed class MBConv : nn.Module<Tensor, Tensor>, IOnnxExportable
    {
        private readonly nn.Module<Tensor, Tensor> _block;
        private readonly bool _residual;
        private readonly double _dropProbability;

        public MBConv(long input, long output, int expandRatio, int kernel, int stride, double dropProbability)
            : base(nameof(MBConv))
        {
            _residual = stride == 1 && input == output;
            _dropProbability = dropProbability;
            var expanded = TorchVisionLayers.MakeDivisible(input * (double)expandRatio);
            var layers = new List<nn.Module<Tensor, Tensor>>();
            if (expanded != input)
            {
                layers.Add(TorchVisionLayers.ConvNormAct(input, expanded, 1, 1, 1, BnEps, BnMomentum, () => nn.SiLU()));
            }

            layers.Add(TorchVisionLayers.ConvNormAct(expanded, expanded, kernel, stride, expanded, BnEps, BnMomentum, () => nn.SiLU()));
            layers.Add(new SqueezeExcitation(expanded, Math.Max(1, input / 4), nn.SiLU(), nn.Sigmoid()));
            layers.Add(TorchVisionLayers.ConvNormAct(expanded, output, 1, 1, 1, BnEps, BnMomentum, null));
            _block = nn.Sequential(layers);
            register_module("block", _block);
        }

        public override Tensor forward(Tensor input)
        {
            var result = _block.forward(input);
            if (!_residual)
            {
                return result;
            }

            if (training && _dropProbability > 0)
            {
                // Stochastic depth ("row" mode): drop the whole residual branch per sample, rescale the survivors.
                var survival = 1.0 - _dropProbability;
                using var keep = torch.empty([result.shape[0], 1, 1, 1], result.dtype, result.device).bernoulli_(survival).div_(survival);
                result.mul_(keep);
            }

            return result.add_(input, KeptScalars.One);
        }

        /// <summary>Inference form: stochastic depth keeps every branch (identity), so the residual is a plain Add.</summary>
        public string Export(OnnxGraphBuilder builder, string input)
        {
            var x = new TorchModuleExporter(builder).Emit(_block, input, "block");
            return _residual ? builder.Node("Add", [x, input], "add") : x;
        }
    }
}
