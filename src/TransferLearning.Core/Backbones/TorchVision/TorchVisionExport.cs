using TorchSharp.Modules;
using TransferLearning.Backbones.Onnx.Export;
using static TorchSharp.torch;

namespace TransferLearning.Backbones.TorchVision;

/// <summary>
/// ONNX export of the torchvision feature module: each stage through <see cref="TorchModuleExporter"/>, then the
/// global average pool. TorchVision for .NET's own residual blocks (ResNet's BasicBlock and Bottleneck, MobileNetV2's
/// InvertedResidual) are private classes of that package, so they are recognised here by type name and written from
/// their child modules; the blocks written in this folder (MobileNetV3, EfficientNet, squeeze-excitation) implement
/// <see cref="IOnnxExportable"/> themselves.
/// </summary>
internal sealed partial class TorchVisionFeatureModule : IOnnxExportable
{
    /// <inheritdoc />
    public string Export(OnnxGraphBuilder builder, string input)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var exporter = new TorchModuleExporter(builder, TorchVisionExport.Block);
        var x = input;
        foreach (var (name, stage) in named_children())
        {
            x = exporter.Emit(stage, x, name);
        }

        // forward: the mean over H and W of the last stage's [N, C, H, W] output.
        var pooled = builder.Node("GlobalAveragePool", [x], "features_pool");
        return builder.Node("Flatten", [pooled], "features", OnnxGraphBuilder.Attr("axis", 1L));
    }
}

/// <summary>Writers for TorchVision for .NET's residual block types (matched by type name: the classes are private to that package).</summary>
internal static class TorchVisionExport
{
    /// <summary>Writes a TorchVision residual block, or returns null for any other module.</summary>
    public static string? Block(TorchModuleExporter exporter, nn.Module module, string input) => module.GetType().FullName switch
    {
        "TorchSharp.Modules.ResNet+BasicBlock" => ResNetBlock(exporter, module, input, ["conv1", "bn1", "relu1", "conv2", "bn2"]),
        "TorchSharp.Modules.ResNet+Bottleneck" => ResNetBlock(exporter, module, input, ["conv1", "bn1", "relu1", "conv2", "bn2", "relu2", "conv3", "bn3"]),
        "TorchSharp.Modules.MobileNetV2+InvertedResidual" => MobileNetV2Block(exporter, module, input),
        _ => null,
    };

    /// <summary>relu(main(x) + (downsample(x) or x)), the main path being the listed children in order.</summary>
    private static string ResNetBlock(TorchModuleExporter exporter, nn.Module block, string input, string[] mainPath)
    {
        var children = Children(block);
        var x = input;
        foreach (var name in mainPath)
        {
            x = exporter.Emit(Child(children, name, block), x, name);
        }

        var identity = children.TryGetValue("downsample", out var downsample) ? exporter.Emit(downsample, input, "downsample") : input;
        var sum = exporter.Builder.Node("Add", [x, identity], "add");
        return exporter.Builder.Node("Relu", [sum], "relu");
    }

    /// <summary>conv(x), plus x when the block keeps size and channels (stride 1, as many outputs as inputs).</summary>
    private static string MobileNetV2Block(TorchModuleExporter exporter, nn.Module block, string input)
    {
        var conv = Child(Children(block), "conv", block);
        var convs = ConvsInOrder(conv).ToList();
        if (convs.Count == 0)
        {
            throw new NotSupportedException("a TorchVision InvertedResidual block has no convolutions.");
        }

        var residual = convs.All(c => c.stride.All(s => s == 1)) && convs[0].in_channels == convs[^1].out_channels;
        var x = exporter.Emit(conv, input, "conv");
        return residual ? exporter.Builder.Node("Add", [input, x], "add") : x;
    }

    /// <summary>The Conv2d modules below <paramref name="module"/> in registration (forward) order.</summary>
    private static IEnumerable<Conv2d> ConvsInOrder(nn.Module module) =>
        module is Conv2d conv ? [conv] : module.named_children().SelectMany(c => ConvsInOrder(c.module));

    private static Dictionary<string, nn.Module> Children(nn.Module module) =>
        module.named_children().ToDictionary(c => c.name, c => c.module, StringComparer.Ordinal);

    private static nn.Module Child(Dictionary<string, nn.Module> children, string name, nn.Module block) =>
        children.TryGetValue(name, out var child) ? child : throw new NotSupportedException(
            $"TorchVision's {block.GetType().Name} has no child '{name}' (its children: {string.Join(", ", children.Keys)}); this TorchVision version's block layout is not known to the ONNX export.");
}
