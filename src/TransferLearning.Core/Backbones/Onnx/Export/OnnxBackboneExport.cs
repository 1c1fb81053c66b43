using System.Reflection;
using Onnx;
using TransferLearning.Datasets;

namespace TransferLearning.Backbones.Onnx.Export;

/// <summary>
/// Writes a backbone as ONNX, on its own (a standalone feature model that <see cref="OnnxGraphModule"/> can import
/// again) or inside a larger graph. Every operator written is one the importer runs.
/// </summary>
internal static class OnnxBackboneExport
{
    /// <summary>Input of a standalone backbone model: the prepared batch <c>[N, 3, H, W]</c> (as the backbone's InputSpec says).</summary>
    public const string InputName = "input";

    /// <summary>Output of a standalone backbone model: features <c>[N, FeatureSize]</c>.</summary>
    public const string OutputName = "features";

    /// <summary>The library's informational version (written as producer version and metadata).</summary>
    public static string LibraryVersion { get; } =
        typeof(OnnxBackboneExport).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
        ?? typeof(OnnxBackboneExport).Assembly.GetName().Version?.ToString()
        ?? "0.0.0";

    /// <summary>Appends the backbone's nodes, reading <paramref name="input"/> (its shape recorded in the builder).</summary>
    /// <returns>The value holding the features <c>[N, FeatureSize]</c>.</returns>
    /// <exception cref="NotSupportedException">The backbone, or a layer in it, has no ONNX form; the message names it and says why.</exception>
    public static string Emit(OnnxGraphBuilder builder, Backbone backbone, string input)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(backbone);
        if (backbone.Module is not IOnnxExportable exportable)
        {
            throw new NotSupportedException(
                $"The backbone '{backbone.Source}' cannot be exported to ONNX: its network is a {TorchModuleExporter.Describe(backbone.Module)} wrapped by hand, " +
                "and only backbones loaded from ONNX files (such as 'resnet18'), torchvision checkpoints or TF.js layers models know their ONNX form.");
        }

        try
        {
            using var scope = builder.Scope("backbone");
            return exportable.Export(builder, input);
        }
        catch (NotSupportedException e)
        {
            throw new NotSupportedException($"The backbone '{backbone.Source}' cannot be exported to ONNX: {e.Message}", e);
        }
    }

    /// <summary>
    /// The backbone alone as an ONNX model (opset 17): input <see cref="InputName"/> float32 <c>[N, 3, H, W]</c>, prepared
    /// as <paramref name="spec"/> says (normalisation not included), output <see cref="OutputName"/> <c>[N, FeatureSize]</c>,
    /// with the backbone's current weights (float weights for an int8 backbone).
    /// </summary>
    /// <param name="backbone">The backbone.</param>
    /// <param name="spec">Input size to declare; default the backbone's <see cref="Backbone.InputSpec"/>.</param>
    public static ModelProto ToModel(Backbone backbone, InputSpec? spec = null)
    {
        ArgumentNullException.ThrowIfNull(backbone);
        spec ??= backbone.InputSpec;
        var builder = new OnnxGraphBuilder("backbone");
        var input = builder.AddInput(InputName, [-1, 3, spec.Height, spec.Width]);
        var features = Emit(builder, backbone, input);
        builder.AddOutput(features, OutputName, [-1, backbone.FeatureSize]);
        return builder.ToModel(
            "TransferLearning",
            LibraryVersion,
            $"Backbone '{backbone.Source}' exported by TransferLearning: input '{InputName}' float32 [N, 3, {spec.Height}, {spec.Width}] prepared as its InputSpec says, output '{OutputName}' [N, {backbone.FeatureSize}].",
            [new("source", backbone.Source), new("transferlearning_version", LibraryVersion)]);
    }
}
