using TorchSharp.PyBridge;
using TransferLearning.Datasets;
using static TorchSharp.torch;

namespace TransferLearning.Backbones.TorchVision;

/// <summary>
/// A torchvision classifier cut at its pooled feature vector; its stages are the child modules (blocks). Stages run
/// through a <see cref="FoldingPlan"/> (a Conv2d stage followed by a BatchNorm2d stage, as ResNet's stem, runs folded
/// in inference mode).
/// </summary>
internal sealed partial class TorchVisionFeatureModule : nn.Module<Tensor, Tensor>, IBatchNormFolding, IRebuildableModule
{
    private readonly FoldingPlan _plan;
    private readonly nn.Module _owner;

    /// <summary>The torchvision architecture and width it was built as (saved models rebuild it from them); null when unknown.</summary>
    internal (string Name, double WidthMult)? Architecture { get; set; }

    /// <inheritdoc />
    public BackboneArchitecture? Describe(Backbone backbone) =>
        Architecture is { } a ? TorchVisionFormat.Describe(a.Name, a.WidthMult, backbone.FeatureSize) : null;

    public TorchVisionFeatureModule(nn.Module owner, IEnumerable<(string Name, nn.Module<Tensor, Tensor> Module)> stages)
        : base("TorchVisionFeatures")
    {
        _owner = owner;
        var modules = new List<nn.Module<Tensor, Tensor>>();
        foreach (var (name, module) in stages)
        {
            register_module(name, module);
            modules.Add(module);
        }

        _plan = new FoldingPlan(modules);
    }

    public IEnumerable<ConvBatchNorm> FoldingPairs => _plan.Pairs;

    public override Tensor forward(Tensor input)
    {
        var x = _plan.Forward(input);
        if (x.dim() == 4)
        {
            var pooled = x.mean([2, 3]);
            x.Dispose();
            return pooled;
        }

        var flat = x.flatten(1);
        x.Dispose();
        return flat;
    }

    protected override void Dispose(bool disposing)
    {
        base.Dispose(disposing);
        if (disposing)
        {
            _plan.Dispose();
            _owner.Dispose();
        }
    }
}

/// <summary>Builds torchvision architectures and loads PyTorch state dicts (.pth/.pt pickles or .safetensors) into them.</summary>
internal static class TorchVisionBackbones
{
    /// <summary>Architectures this loader builds (longest names first for file-name matching).</summary>
    internal static readonly string[] Architectures =
        ["efficientnet_b0", "mobilenet_v3_small", "mobilenet_v3_large", "mobilenet_v2", "resnet101", "resnet152", "resnet18", "resnet34", "resnet50"];

    /// <summary>Infers the architecture from a file name such as <c>resnet18-f37072fd.pth</c>; null when unknown.</summary>
    public static string? InferArchitecture(string fileName)
    {
        var name = Path.GetFileName(fileName).ToLowerInvariant().Replace('-', '_');
        return Architectures.FirstOrDefault(a => name.StartsWith(a, StringComparison.Ordinal)
            && (name.Length == a.Length || !char.IsAsciiLetterOrDigit(name[a.Length])));
    }

    /// <summary>Creates the full classifier (random weights) for an architecture.</summary>
    public static nn.Module<Tensor, Tensor> Create(string architecture, int numClasses = 1000, double widthMult = 1.0) => architecture switch
    {
        // Ours, not TorchVision .NET's: ResNet and MobileNetV2 to fold BatchNorm into the convolutions in inference mode;
        // TorchVision .NET has no EfficientNet, and its MobileNetV3 uses ReLU6 inside squeeze-excitation (torchvision:
        // ReLU) and ignores the class count and width.
        "resnet18" or "resnet34" or "resnet50" or "resnet101" or "resnet152" => ResNet.Create(architecture, numClasses),
        "mobilenet_v2" => new MobileNetV2(numClasses, widthMult),
        "mobilenet_v3_small" => MobileNetV3.SmallModel(numClasses, widthMult),
        "mobilenet_v3_large" => MobileNetV3.LargeModel(numClasses, widthMult),
        "efficientnet_b0" => EfficientNet.B0Model(numClasses),
        _ => throw new NotSupportedException(
            $"The torchvision architecture '{architecture}' is not supported. Supported: {string.Join(", ", Architectures.Order(StringComparer.Ordinal))}."),
    };

    /// <summary>Cuts a torchvision classifier before its classifier head; takes ownership of <paramref name="model"/>.</summary>
    public static TorchVisionFeatureModule Cut(nn.Module<Tensor, Tensor> model)
    {
        var stages = new List<(string, nn.Module<Tensor, Tensor>)>();
        foreach (var (name, child) in model.named_children())
        {
            // The feature module pools globally after the last stage. A model's own avgpool is dropped wherever it sits:
            // TorchSharp registers MobileNetV3's avgpool before its features, and running it first pooled the image to 1×1.
            if (name is "fc" or "classifier" or "flatten" or "avgpool")
            {
                continue;
            }

            if (name == "features")
            {
                foreach (var (sub, subModule) in child.named_children())
                {
                    stages.Add(($"features_{sub}", (nn.Module<Tensor, Tensor>)subModule));
                }

                continue;
            }

            stages.Add((name, (nn.Module<Tensor, Tensor>)child));
        }

        return new TorchVisionFeatureModule(model, stages);
    }

    /// <summary>Loads a state dict file into an architecture and returns the cut backbone.</summary>
    public static Backbone Load(string path, string source, string? architecture, InputSpec? inputSpec, int numClasses = 1000, double widthMult = 1.0)
    {
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"The PyTorch weights file '{path}' does not exist.", path);
        }

        var arch = architecture?.Trim().ToLowerInvariant() ?? InferArchitecture(source) ?? InferArchitecture(path)
            ?? throw new ArgumentException(
                $"Cannot tell the architecture of '{Path.GetFileName(path)}' from its name; set BackboneLoadOptions.Architecture to one of: " +
                $"{string.Join(", ", Architectures.Order(StringComparer.Ordinal))}.", nameof(architecture));
        var model = Create(arch, numClasses, widthMult);
        try
        {
            if (path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase))
            {
                model.load_safetensors(path, strict: true);
            }
            else
            {
                model.load_py(path, strict: true);
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            model.Dispose();
            if (ex.Message.Contains("non-contiguous", StringComparison.Ordinal))
            {
                throw new InvalidDataException(
                    $"Could not load '{Path.GetFileName(path)}': it holds tensors that are views of shared or larger storages, which " +
                    "TorchSharp.PyBridge cannot read. Re-save it in PyTorch with " +
                    "torch.save({k: v.contiguous().clone() for k, v in state_dict.items()}, path), or save it as .safetensors.", ex);
            }

            throw new InvalidDataException(
                $"Could not load '{Path.GetFileName(path)}' as a torchvision {arch} state dict ({ex.Message}). " +
                "Give the right BackboneLoadOptions.Architecture, or a state dict (not a whole pickled model).", ex);
        }

        return Wrap(model, arch, widthMult, source, inputSpec);
    }

    /// <summary>A backbone of an architecture with torchvision's random initialisation (benchmarks, tests).</summary>
    public static Backbone CreateBackbone(string architecture, InputSpec? inputSpec = null, int numClasses = 1000, double widthMult = 1.0) =>
        Wrap(Create(architecture, numClasses, widthMult), architecture, widthMult, $"{architecture} (random weights)", inputSpec);

    /// <summary>Cuts <paramref name="model"/> (taking ownership) and wraps it as a backbone that records its architecture.</summary>
    private static Backbone Wrap(nn.Module<Tensor, Tensor> model, string arch, double widthMult, string source, InputSpec? inputSpec)
    {
        var module = Cut(model);
        try
        {
            var spec = inputSpec ?? InputSpec.ImageNet(224);
            module.Architecture = (arch, widthMult);
            return new Backbone(source, module, Onnx.OnnxBackboneLoader.FeatureSize(module, spec.WithSize(64, 64)), spec);
        }
        catch
        {
            module.Dispose();
            throw;
        }
    }
}
