using System.Globalization;
using System.Text.Json;
using Google.Protobuf;
using Onnx;
using TransferLearning.Backbones.Onnx.Export;
using TransferLearning.Datasets;

namespace TransferLearning.Models;

/// <summary>
/// Writes a trained model as one ONNX classifier (opset 17, IR 8): input <c>image</c> float32 <c>[N, 3, H, W]</c>, RGB,
/// 0..255, already resized; the input spec's normalisation (channel order, value range, mean/std) → the backbone →
/// the head → <c>probabilities</c> (softmax) and <c>logits</c>, both <c>[N, classes]</c>; metadata as documented on
/// <see cref="TrainedModel.ExportOnnx(string, OnnxExportOptions)"/>.
/// </summary>
internal static class OnnxExport
{
    public const string ImageInput = "image";
    public const string ProbabilitiesOutput = "probabilities";
    public const string LogitsOutput = "logits";

    public static ModelProto ToModel(TrainedModel model, OnnxExportOptions options)
    {
        var spec = model.InputSpec;
        var reserved = options.Metadata.Keys.Where(OnnxExportOptions.ReservedMetadataKeys.Contains).ToList();
        if (reserved.Count > 0)
        {
            throw new ArgumentException(
                $"OnnxExportOptions.Metadata sets {string.Join(", ", reserved.Select(k => $"'{k}'"))}, which the export writes itself.", nameof(options));
        }

        if (options.Metadata.Any(kv => string.IsNullOrEmpty(kv.Key) || kv.Value is null))
        {
            throw new ArgumentException("OnnxExportOptions.Metadata needs a non-empty key and a value (not null) in every entry.", nameof(options));
        }

        var builder = new OnnxGraphBuilder("transferlearning_classifier");
        long[] imageShape = [-1, 3, spec.Height, spec.Width];
        var image = builder.AddInput(ImageInput, imageShape);
        var prepared = Preprocess(builder, image, spec);
        builder.SetShape(prepared, imageShape);
        var features = OnnxBackboneExport.Emit(builder, model.Backbone, prepared);

        string logits;
        try
        {
            logits = new TorchModuleExporter(builder).Emit(model.Head, features, "head");
        }
        catch (NotSupportedException e)
        {
            throw new NotSupportedException($"The head cannot be exported to ONNX: {e.Message}", e);
        }

        var probabilities = builder.NewValueName(ProbabilitiesOutput);
        builder.NodeWithOutputs("Softmax", [logits], [probabilities], "softmax", [OnnxGraphBuilder.Attr("axis", 1L)]);
        long[] outputShape = [-1, model.Classes.Count];
        builder.AddOutput(probabilities, ProbabilitiesOutput, outputShape);
        if (options.IncludeLogits)
        {
            builder.AddOutput(logits, LogitsOutput, outputShape);
        }

        var version = OnnxBackboneExport.LibraryVersion;
        var resize = ResizeName(spec.ResizeMode);
        var metadata = new List<KeyValuePair<string, string>>
        {
            new("classes", JsonSerializer.Serialize(model.Classes)),
            new("input_size", JsonSerializer.Serialize(new[] { spec.Height, spec.Width })),
            new("resize", resize),
            new("source", model.Backbone.Source),
            new("transferlearning_version", version),
        };
        metadata.AddRange(options.Metadata);
        var doc = options.Description ?? string.Create(
            CultureInfo.InvariantCulture,
            $"Image classifier exported by TransferLearning {version} (backbone '{model.Backbone.Source}', {model.Classes.Count} classes). " +
            $"Input '{ImageInput}': float32 [N, 3, {spec.Height}, {spec.Width}], RGB, values 0..255, each image resized to {spec.Width}x{spec.Height} " +
            $"({(spec.ResizeMode == ResizeMode.CenterCrop ? "shorter side scaled, centre cropped" : "stretched")}); all normalisation happens inside the graph. " +
            $"Outputs '{ProbabilitiesOutput}' (softmax) and '{LogitsOutput}': float32 [N, classes], in the order of the 'classes' metadata.");
        return builder.ToModel("TransferLearning", version, doc, metadata);
    }

    /// <summary>Serialises the model, then writes it whole or not at all (<see cref="AtomicFile"/>).</summary>
    public static void Write(TrainedModel model, string path, OnnxExportOptions options)
    {
        var bytes = ToModel(model, options).ToByteArray(); // any failure happens before the file system is touched
        AtomicFile.Write(path, file => file.Write(bytes));
    }

    /// <summary>The <c>resize</c> metadata value: <c>stretch</c> or <c>center-crop</c>.</summary>
    public static string ResizeName(ResizeMode mode) => mode == ResizeMode.CenterCrop ? "center-crop" : "stretch";

    /// <summary>
    /// 0..255 RGB → the tensor the backbone expects: channels reordered for BGR, then per channel
    /// x·(range/255/std) + (min − mean)/std (the InputSpec formula; a step that changes nothing is left out).
    /// </summary>
    private static string Preprocess(OnnxGraphBuilder b, string image, InputSpec spec)
    {
        var x = image;
        if (spec.ChannelOrder == ChannelOrder.Bgr)
        {
            x = b.Node("Gather", [x, b.Int64s("bgr_order", [2, 1, 0])], "preprocess.to_bgr", OnnxGraphBuilder.Attr("axis", 1L));
        }

        var range = ((double)spec.RangeMax - spec.RangeMin) / 255.0;
        var scale = Enumerable.Range(0, 3).Select(c => (float)(range / spec.Std[c])).ToArray();
        var shift = Enumerable.Range(0, 3).Select(c => (float)((spec.RangeMin - (double)spec.Mean[c]) / spec.Std[c])).ToArray();
        if (scale.Any(s => s != 1f))
        {
            x = b.Node("Mul", [x, b.Initializer("preprocess.scale", scale, [1, 3, 1, 1])], "preprocess.scale");
        }

        if (shift.Any(s => s != 0f))
        {
            x = b.Node("Add", [x, b.Initializer("preprocess.shift", shift, [1, 3, 1, 1])], "preprocess.shift");
        }

        return x;
    }
}
