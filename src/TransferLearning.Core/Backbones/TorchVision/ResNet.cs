using TorchSharp.Modules;
using TorchSharp.Utils;
using TransferLearning.Backbones.Onnx.Export;
using TransferLearning.Native;
using static TorchSharp.torch;

namespace TransferLearning.Backbones.TorchVision;

/// <summary>
/// ResNet 18/34/50/101/152 as torchvision builds them (v1.5: the stride sits on the 3×3 convolution of a bottleneck),
/// with torchvision's state-dict names. Written here rather than taken from TorchVision for .NET so that every
/// convolution and its BatchNorm run as one folded convolution in inference mode (<see cref="ConvBatchNorm"/>) and
/// the ReLUs run in place.
/// </summary>
internal sealed class ResNet : nn.Module<Tensor, Tensor>, IBatchNormFolding
{
    private readonly FoldingPlan _plan;
    [ComponentName(Name = "fc")]
    private readonly nn.Module<Tensor, Tensor> _fc;

    private ResNet(bool bottleneck, int[] layers, long numClasses)
        : base("ResNet")
    {
        var expansion = bottleneck ? 4 : 1;
        var conv1 = nn.Conv2d(3, 64, 7, stride: 2, padding: 3, bias: false);
        var bn1 = nn.BatchNorm2d(64);
        var relu = nn.ReLU();
        var maxpool = nn.MaxPool2d(3, 2, 1);
        register_module("conv1", conv1);
        register_module("bn1", bn1);
        register_module("relu", relu);
        register_module("maxpool", maxpool);
        var stages = new List<nn.Module<Tensor, Tensor>> { conv1, bn1, relu, maxpool };
        long inplanes = 64;
        for (var i = 0; i < 4; i++)
        {
            var planes = 64L << i;
            var stride = i == 0 ? 1 : 2;
            var blocks = new List<nn.Module<Tensor, Tensor>>();
            for (var b = 0; b < layers[i]; b++)
            {
                var s = b == 0 ? stride : 1;
                var downsample = b == 0 && (s != 1 || inplanes != planes * expansion);
                blocks.Add(bottleneck ? new Bottleneck(inplanes, planes, s, downsample) : new BasicBlock(inplanes, planes, s, downsample));
                inplanes = planes * expansion;
            }

            var layer = new FoldingSequential([.. blocks]);
            register_module($"layer{i + 1}", layer);
            stages.Add(layer);
        }

        register_module("avgpool", nn.AdaptiveAvgPool2d(1));
        _fc = nn.Linear(512 * expansion, numClasses);
        register_module("fc", _fc);
        _plan = new FoldingPlan(stages);
        TorchVisionLayers.InitConvAndNorm(this);
    }

    public static ResNet Create(string architecture, long numClasses = 1000) => architecture switch
    {
        "resnet18" => new(false, [2, 2, 2, 2], numClasses),
        "resnet34" => new(false, [3, 4, 6, 3], numClasses),
        "resnet50" => new(true, [3, 4, 6, 3], numClasses),
        "resnet101" => new(true, [3, 4, 23, 3], numClasses),
        "resnet152" => new(true, [3, 8, 36, 3], numClasses),
        _ => throw new ArgumentException($"Not a ResNet: {architecture}.", nameof(architecture)),
    };

    public IEnumerable<ConvBatchNorm> FoldingPairs => _plan.Pairs;

    public override Tensor forward(Tensor input)
    {
        using var features = _plan.Forward(input);
        using var pooled = features.mean([2, 3]);
        return _fc.forward(pooled);
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _plan.Dispose();
        }

        base.Dispose(disposing);
    }

    /// <summary>ONNX for a block's end: relu(y + (downsample(input) or input)).</summary>
    /// <summary>A block's end in place: <paramref name="y"/> plus the input (through the downsample when there is one), then ReLU.</summary>
    private static Tensor AddResidual(Tensor y, Tensor input, FoldingSequential? downsample)
    {
        if (downsample is null)
        {
            y.add_(input, KeptScalars.One);
        }
        else
        {
            using var identity = downsample.forward(input);
            y.add_(identity, KeptScalars.One);
        }

        y.relu_();
        return y;
    }

    private static string Residual(TorchModuleExporter exporter, string y, string input, FoldingSequential? downsample)
    {
        var identity = downsample is null ? input : exporter.Emit(downsample, input, "downsample");
        var sum = exporter.Builder.Node("Add", [y, identity], "add");
        return exporter.Builder.Node("Relu", [sum], "relu");
    }

    private static Conv2d Conv(long input, long output, long kernel, long stride) =>
        nn.Conv2d(input, output, kernel, stride: stride, padding: (kernel - 1) / 2, bias: false);

    /// <summary>Children <c>conv1 bn1 conv2 bn2 [downsample.0 downsample.1]</c>.</summary>
    private sealed class BasicBlock : nn.Module<Tensor, Tensor>, IBatchNormFolding, IOnnxExportable
    {
        private readonly ConvBatchNorm _first;
        private readonly ConvBatchNorm _second;
        [ComponentName(Name = "downsample")] // the child's registered name (TorchSharp would also register the field as "_downsample")
        private readonly FoldingSequential? _downsample;

        public BasicBlock(long inplanes, long planes, long stride, bool downsample)
            : base(nameof(BasicBlock))
        {
            var conv1 = Conv(inplanes, planes, 3, stride);
            var bn1 = nn.BatchNorm2d(planes);
            var conv2 = Conv(planes, planes, 3, 1);
            var bn2 = nn.BatchNorm2d(planes);
            register_module("conv1", conv1);
            register_module("bn1", bn1);
            register_module("conv2", conv2);
            register_module("bn2", bn2);
            _first = new ConvBatchNorm(conv1, bn1, stride, 1, 1, 1, bn1.eps);
            _second = new ConvBatchNorm(conv2, bn2, 1, 1, 1, 1, bn2.eps);
            if (downsample)
            {
                _downsample = new FoldingSequential(Conv(inplanes, planes, 1, stride), nn.BatchNorm2d(planes));
                register_module("downsample", _downsample);
            }
        }

        public IEnumerable<ConvBatchNorm> FoldingPairs => [_first, _second];

        /// <inheritdoc />
        public string Export(OnnxGraphBuilder builder, string input)
        {
            var exporter = new TorchModuleExporter(builder);
            var a = builder.Node("Relu", [_first.Export(exporter, input, "conv1", "bn1")], "relu1");
            var y = _second.Export(exporter, a, "conv2", "bn2");
            return Residual(exporter, y, input, _downsample);
        }

        public override Tensor forward(Tensor input)
        {
            Tensor y;
            using (var a = _first.Forward(input))
            {
                a.relu_();
                y = _second.Forward(a);
            }

            return AddResidual(y, input, _downsample);
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                _first.Dispose();
                _second.Dispose();
            }

            base.Dispose(disposing);
        }
    }

    /// <summary>Children <c>conv1 bn1 conv2 bn2 conv3 bn3 [downsample.0 downsample.1]</c>; stride on <c>conv2</c>.</summary>
    private sealed class Bottleneck : nn.Module<Tensor, Tensor>, IBatchNormFolding, IOnnxExportable
    {
        private readonly ConvBatchNorm _first;
        private readonly ConvBatchNorm _second;
        private readonly ConvBatchNorm _third;
        [ComponentName(Name = "downsample")] // the child's registered name (TorchSharp would also register the field as "_downsample")
        private readonly FoldingSequential? _downsample;

        public Bottleneck(long inplanes, long planes, long stride, bool downsample)
            : base(nameof(Bottleneck))
        {
            var conv1 = Conv(inplanes, planes, 1, 1);
            var bn1 = nn.BatchNorm2d(planes);
            var conv2 = Conv(planes, planes, 3, stride);
            var bn2 = nn.BatchNorm2d(planes);
            var conv3 = Conv(planes, planes * 4, 1, 1);
            var bn3 = nn.BatchNorm2d(planes * 4);
            register_module("conv1", conv1);
            register_module("bn1", bn1);
            register_module("conv2", conv2);
            register_module("bn2", bn2);
            register_module("conv3", conv3);
            register_module("bn3", bn3);
            _first = new ConvBatchNorm(conv1, bn1, 1, 0, 1, 1, bn1.eps);
            _second = new ConvBatchNorm(conv2, bn2, stride, 1, 1, 1, bn2.eps);
            _third = new ConvBatchNorm(conv3, bn3, 1, 0, 1, 1, bn3.eps);
            if (downsample)
            {
                _downsample = new FoldingSequential(Conv(inplanes, planes * 4, 1, stride), nn.BatchNorm2d(planes * 4));
                register_module("downsample", _downsample);
            }
        }

        public IEnumerable<ConvBatchNorm> FoldingPairs => [_first, _second, _third];

        /// <inheritdoc />
        public string Export(OnnxGraphBuilder builder, string input)
        {
            var exporter = new TorchModuleExporter(builder);
            var a = builder.Node("Relu", [_first.Export(exporter, input, "conv1", "bn1")], "relu1");
            var b = builder.Node("Relu", [_second.Export(exporter, a, "conv2", "bn2")], "relu2");
            var y = _third.Export(exporter, b, "conv3", "bn3");
            return Residual(exporter, y, input, _downsample);
        }

        public override Tensor forward(Tensor input)
        {
            Tensor y;
            using (var a = _first.Forward(input))
            {
                a.relu_();
                using var b = _second.Forward(a);
                b.relu_();
                y = _third.Forward(b);
            }

            return AddResidual(y, input, _downsample);
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                _first.Dispose();
                _second.Dispose();
                _third.Dispose();
            }

            base.Dispose(disposing);
        }
    }
}
