using TransferLearning.Backbones.Onnx.Export;

namespace TransferLearning.Backbones.TorchVision;

/// <summary>
/// ONNX export of the torchvision feature module: each stage through <see cref="TorchModuleExporter"/>, then the
/// global average pool. Every architecture is built in this folder (ResNet, MobileNetV2, MobileNetV3, EfficientNet),
/// so its blocks and folding containers implement <see cref="IOnnxExportable"/> themselves; convolutions and their
/// BatchNorms are written as Conv and BatchNormalization nodes whether or not they run folded.
/// </summary>
internal sealed partial class TorchVisionFeatureModule : IOnnxExportable
{
    /// <inheritdoc />
    public string Export(OnnxGraphBuilder builder, string input)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var exporter = new TorchModuleExporter(builder);
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
