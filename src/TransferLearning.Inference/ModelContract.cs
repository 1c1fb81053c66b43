using System.Globalization;
using System.Text.Json;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using TransferLearning.Datasets;

namespace TransferLearning.Inference;

/// <summary>
/// What an exported classifier must look like (the contract <c>TrainedModel.ExportOnnx</c> writes), read and checked
/// from a loaded session: input <c>image</c> float32 [N, 3, H, W] (RGB, 0..255, resized), output <c>probabilities</c>
/// float32 [N, classes], and the metadata <c>classes</c>, <c>input_size</c> and <c>resize</c>. Every problem is
/// collected, so one exception names all that is missing or wrong. A batch dimension fixed at 1 (common in models
/// made elsewhere) is accepted and limits batches to one image (<see cref="MaxBatch"/>).
/// </summary>
internal sealed record ModelContract(
    IReadOnlyList<string> Classes,
    int Height,
    int Width,
    ResizeMode ResizeMode,
    int MaxBatch,
    string? Source,
    string? LibraryVersion,
    IReadOnlyDictionary<string, string> Metadata)
{
    public const string InputName = "image";
    public const string ProbabilitiesName = "probabilities";
    public const string LogitsName = "logits";
    public const string ClassesKey = "classes";
    public const string InputSizeKey = "input_size";
    public const string ResizeKey = "resize";
    public const string SourceKey = "source";
    public const string VersionKey = "transferlearning_version";
    public const string Stretch = "stretch";
    public const string CenterCrop = "center-crop";

    /// <summary>Reads the contract of a loaded model.</summary>
    /// <exception cref="InvalidModelException">Something is missing or wrong; the message lists every problem.</exception>
    public static ModelContract Read(InferenceSession session, string modelName)
    {
        var problems = new List<string>();
        var metadata = new SortedDictionary<string, string>(session.ModelMetadata.CustomMetadataMap, StringComparer.Ordinal);

        var inputDims = CheckInput(session.InputMetadata, problems);
        var classDim = CheckOutput(session.OutputMetadata, problems);

        var missing = new[] { ClassesKey, InputSizeKey, ResizeKey }.Where(k => !metadata.ContainsKey(k)).ToList();
        if (missing.Count > 0)
        {
            problems.Add($"its metadata_props lack {Quoted(missing)} (it has {(metadata.Count == 0 ? "none" : Quoted(metadata.Keys))})");
        }

        var classes = metadata.TryGetValue(ClassesKey, out var classesJson) ? ParseClasses(classesJson, problems) : null;
        var size = metadata.TryGetValue(InputSizeKey, out var sizeJson) ? ParseSize(sizeJson, problems) : null;
        ResizeMode? resize = null;
        if (metadata.TryGetValue(ResizeKey, out var resizeText))
        {
            resize = resizeText switch
            {
                Stretch => ResizeMode.Stretch,
                CenterCrop => ResizeMode.CenterCrop,
                _ => null,
            };
            if (resize is null)
            {
                problems.Add($"metadata 'resize' is '{Shorten(resizeText)}'; expected \"{Stretch}\" or \"{CenterCrop}\"");
            }
        }

        if (size is { } s && inputDims is { } d && ((d[2] > 0 && d[2] != s.Height) || (d[3] > 0 && d[3] != s.Width)))
        {
            problems.Add($"metadata 'input_size' is [{s.Height}, {s.Width}] ([H, W]) but input '{InputName}' is {Shape(d)}");
        }

        if (classes is not null && classDim > 0 && classDim != classes.Count)
        {
            problems.Add($"metadata 'classes' names {classes.Count} classes but output '{ProbabilitiesName}' has {classDim}");
        }

        if (problems.Count > 0 || classes is null || size is null || resize is null)
        {
            throw new InvalidModelException(modelName,
                "it does not follow the contract of an exported TransferLearning classifier: " + string.Join("; ", problems), null);
        }

        return new ModelContract(
            classes,
            size.Value.Height,
            size.Value.Width,
            resize.Value,
            inputDims?[0] == 1 ? 1 : int.MaxValue,
            metadata.GetValueOrDefault(SourceKey),
            metadata.GetValueOrDefault(VersionKey),
            metadata.AsReadOnly());
    }

    /// <summary>Checks input <c>image</c> (float32, rank 4, 3 channels) and that it is the only input; returns its dimensions.</summary>
    private static int[]? CheckInput(IReadOnlyDictionary<string, NodeMetadata> inputs, List<string> problems)
    {
        int[]? dims = null;
        if (!inputs.TryGetValue(InputName, out var image))
        {
            problems.Add($"it has no input named '{InputName}' (its inputs: {Quoted(inputs.Keys)})");
        }
        else if (!image.IsTensor || image.ElementDataType != TensorElementType.Float || image.Dimensions.Length != 4 || image.Dimensions[1] != 3)
        {
            problems.Add($"input '{InputName}' must be a float32 tensor [N, 3, H, W]; it is {Describe(image)}");
        }
        else if (image.Dimensions[0] > 1)
        {
            problems.Add($"input '{InputName}' must have a dynamic batch dimension N (or 1); it is {Describe(image)}");
        }
        else
        {
            dims = image.Dimensions;
        }

        var others = inputs.Keys.Where(k => k != InputName).ToList();
        if (others.Count > 0 && inputs.ContainsKey(InputName))
        {
            problems.Add($"it has inputs besides '{InputName}' ({Quoted(others)}), which a classifier is not given");
        }

        return dims;
    }

    /// <summary>Checks output <c>probabilities</c> (float32, rank 2); returns its class dimension (-1 when symbolic).</summary>
    private static int CheckOutput(IReadOnlyDictionary<string, NodeMetadata> outputs, List<string> problems)
    {
        if (!outputs.TryGetValue(ProbabilitiesName, out var probabilities))
        {
            problems.Add($"it has no output named '{ProbabilitiesName}' (its outputs: {Quoted(outputs.Keys)})");
            return -1;
        }

        if (!probabilities.IsTensor || probabilities.ElementDataType != TensorElementType.Float || probabilities.Dimensions.Length != 2)
        {
            problems.Add($"output '{ProbabilitiesName}' must be a float32 tensor [N, classes]; it is {Describe(probabilities)}");
            return -1;
        }

        return probabilities.Dimensions[1];
    }

    private static List<string>? ParseClasses(string json, List<string> problems)
    {
        List<string?>? names = null;
        try
        {
            names = JsonSerializer.Deserialize<List<string?>>(json);
        }
        catch (JsonException)
        {
        }

        if (names is null || names.Count == 0 || names.Any(n => n is null))
        {
            problems.Add($"metadata 'classes' must be a JSON array of at least one class name; it is '{Shorten(json)}'");
            return null;
        }

        return names!;
    }

    private static (int Height, int Width)? ParseSize(string json, List<string> problems)
    {
        int[]? size = null;
        try
        {
            size = JsonSerializer.Deserialize<int[]>(json);
        }
        catch (JsonException)
        {
        }

        if (size is not [> 0, > 0])
        {
            problems.Add($"metadata 'input_size' must be a JSON array [H, W] of two positive integers; it is '{Shorten(json)}'");
            return null;
        }

        return (size[0], size[1]);
    }

    private static string Describe(NodeMetadata node)
    {
        if (!node.IsTensor)
        {
            return $"a {node.OnnxValueType}";
        }

        var type = node.ElementDataType switch
        {
            TensorElementType.Float => "float32",
            TensorElementType.Double => "float64",
            TensorElementType.Float16 => "float16",
            var other => other.ToString().ToLowerInvariant(),
        };
        return $"{type} {Shape(node.Dimensions, node.SymbolicDimensions)}";
    }

    private static string Shape(int[] dims, string[]? symbolic = null) =>
        "[" + string.Join(", ", dims.Select((d, i) => d >= 0 ? d.ToString(CultureInfo.InvariantCulture)
            : symbolic is not null && i < symbolic.Length && !string.IsNullOrEmpty(symbolic[i]) ? symbolic[i] : "N")) + "]";

    private static string Quoted(IEnumerable<string> names)
    {
        var list = names.Select(n => $"'{n}'").ToList();
        return list.Count == 0 ? "none" : string.Join(", ", list);
    }

    private static string Shorten(string text) => text.Length <= 80 ? text : text[..77] + "...";
}
