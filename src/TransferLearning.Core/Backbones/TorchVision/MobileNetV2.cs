using TorchSharp.Utils;
using TransferLearning.Backbones.Onnx.Export;
using TransferLearning.Native;
using static TorchSharp.torch;

namespace TransferLearning.Backbones.TorchVision;

/// <summary>
/// MobileNetV2 as torchvision builds it, with torchvision's state-dict names (<c>features.1.conv.0.0.weight</c>, …,
/// <c>classifier.1.weight</c>). Written here rather than taken from TorchVision for .NET so that every convolution and
/// its BatchNorm run as one folded convolution in inference mode and the ReLU6s run in place (<see cref="FoldingSequential"/>).
/// </summary>
internal sealed class MobileNetV2 : nn.Module<Tensor, Tensor>
{
    private const double BnEps = 1e-5;
    private const double BnMomentum = 0.1;

    /// <summary>torchvision's table: expansion t, channels c, repeats n, first stride s.</summary>
    private static readonly (int T, int C, int N, int S)[] Settings =
        [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)];

    [ComponentName(Name = "features")]
    private readonly nn.Module<Tensor, Tensor> _features;
    [ComponentName(Name = "classifier")]
    private readonly nn.Module<Tensor, Tensor> _classifier;

    public MobileNetV2(long numClasses = 1000, double widthMult = 1.0)
        : base("MobileNetV2")
    {
        var input = TorchVisionLayers.MakeDivisible(32 * widthMult);
        var last = TorchVisionLayers.MakeDivisible(1280 * Math.Max(1.0, widthMult));
        var layers = new List<nn.Module<Tensor, Tensor>> { TorchVisionLayers.ConvNormAct(3, input, 3, 2, 1, BnEps, BnMomentum, Relu6) };
        foreach (var (t, c, n, s) in Settings)
        {
            var output = TorchVisionLayers.MakeDivisible(c * widthMult);
            for (var i = 0; i < n; i++)
            {
                layers.Add(new InvertedResidual(input, output, i == 0 ? s : 1, t));
                input = output;
            }
        }

        layers.Add(TorchVisionLayers.ConvNormAct(input, last, 1, 1, 1, BnEps, BnMomentum, Relu6));
        _features = new FoldingSequential([.. layers]);
        _classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, numClasses));
        register_module("features", _features);
        register_module("classifier", _classifier);

        TorchVisionLayers.InitConvAndNorm(this);
        using var noGrad = no_grad();
        foreach (var linear in modules().OfType<TorchSharp.Modules.Linear>())
        {
            nn.init.normal_(linear.weight, 0, 0.01);
            nn.init.zeros_(linear.bias);
        }
    }

    public override Tensor forward(Tensor input)
    {
        using var features = _features.forward(input);
        using var pooled = features.mean([2, 3]);
        return _classifier.forward(pooled);
    }

    private static nn.Module<Tensor, Tensor> Relu6() => nn.ReLU6();

    /// <summary>torchvision's <c>InvertedResidual</c>: child <c>conv</c> = [expand CNA], depthwise CNA, 1×1 conv, BatchNorm.</summary>
    private sealed class InvertedResidual : nn.Module<Tensor, Tensor>, IOnnxExportable
    {
        [ComponentName(Name = "conv")] // the child's registered name (TorchSharp would also register the field as "_conv")
        private readonly nn.Module<Tensor, Tensor> _conv;
        private readonly bool _residual;

        public InvertedResidual(long input, long output, long stride, int expandRatio)
            : base(nameof(InvertedResidual))
        {
            var hidden = (long)Math.Round(input * (double)expandRatio);
            _residual = stride == 1 && input == output;
            var layers = new List<nn.Module<Tensor, Tensor>>();
            if (expandRatio != 1)
            {
                layers.Add(TorchVisionLayers.ConvNormAct(input, hidden, 1, 1, 1, BnEps, BnMomentum, Relu6));
            }

            layers.Add(TorchVisionLayers.ConvNormAct(hidden, hidden, 3, stride, hidden, BnEps, BnMomentum, Relu6));
            layers.Add(nn.Conv2d(hidden, output, 1, bias: false));
            layers.Add(nn.BatchNorm2d(output, eps: BnEps, momentum: BnMomentum));
            _conv = new FoldingSequential([.. layers]);
            register_module("conv", _conv);
        }

        public override Tensor forward(Tensor input)
        {
            var y = _conv.forward(input);
            if (_residual)
            {
                y.add_(input, KeptScalars.One);
            }

            return y;
        }

        /// <inheritdoc />
        public string Export(OnnxGraphBuilder builder, string input)
        {
            var x = new TorchModuleExporter(builder).Emit(_conv, input, "conv");
            return _residual ? builder.Node("Add", [x, input], "add") : x;
        }
    }
}
