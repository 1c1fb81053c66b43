using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using TorchSharp;
using TransferLearning.Datasets;
using TransferLearning.Native;
using static TorchSharp.torch;

namespace TransferLearning.Backbones.Tfjs;

/// <summary>
/// Loads Keras models saved in the TensorFlow.js layers format (<c>model.json</c> + weight shards; tfjs-layers 1.x–4.x,
/// e.g. Teachable Machine image exports) as trainable TorchSharp backbones or whole classifiers.
/// </summary>
/// <remarks>
/// Supported: Sequential and functional models nested in any way; InputLayer, ZeroPadding2D, Conv2D, DepthwiseConv2D,
/// SeparableConv2D, BatchNormalization, ReLU, LeakyReLU, Activation, Softmax, Add, Subtract, Multiply, Average, Maximum,
/// Minimum, Concatenate, Global/Average/MaxPooling2D, Flatten, Reshape, Dense, Dropout, SpatialDropout2D, Rescaling;
/// float32, float16 and uint8/uint16-quantized weights. Keras's NHWC layout is converted to TorchSharp's NCHW.
/// </remarks>
public static partial class TfjsModel
{
    /// <summary>Loads a TF.js layers model as a backbone cut at its pooled feature vector; shards are read next to model.json.</summary>
    /// <param name="modelJsonPath">Path of <c>model.json</c>.</param>
    /// <param name="options">Feature layer, input spec and source overrides; null for defaults.</param>
    /// <returns>A trainable backbone mapping <c>[N, 3, H, W]</c> to <c>[N, FeatureSize]</c>.</returns>
    /// <exception cref="FileNotFoundException">model.json or a weight shard is missing.</exception>
    /// <exception cref="InvalidDataException">model.json is malformed or does not match its weights.</exception>
    /// <exception cref="NotSupportedException">The model uses a layer, activation or weight type the loader cannot run.</exception>
    public static Backbone Load(string modelJsonPath, TfjsLoadOptions? options = null) =>
        Load(modelJsonPath, LocalShardOpener(modelJsonPath), options);

    /// <summary>Loads a TF.js layers model as a backbone, opening weight shards (and metadata.json) through <paramref name="openShard"/>.</summary>
    /// <param name="modelJsonPath">Path of a local copy of <c>model.json</c>.</param>
    /// <param name="openShard">Opens a file by its path relative to model.json (e.g. <c>group1-shard1of2.bin</c>); used for downloads.</param>
    /// <param name="options">Feature layer, input spec and source overrides; null for defaults.</param>
    /// <returns>A trainable backbone mapping <c>[N, 3, H, W]</c> to <c>[N, FeatureSize]</c>.</returns>
    public static Backbone Load(string modelJsonPath, Func<string, Stream> openShard, TfjsLoadOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(modelJsonPath);
        ArgumentNullException.ThrowIfNull(openShard);
        TorchNativeLoader.EnsureLoaded();
        var model = Read(modelJsonPath, openShard);
        var output = ChooseFeatureOutput(model.Graph, options?.FeatureLayer, modelJsonPath);
        var inputSpec = options?.InputSpec ?? DefaultInputSpec(model, options?.InputSize);
        var (network, featureSize) = BuildFeatureNetwork(model.Graph, output, model.Weights, inputSpec, modelJsonPath);
        try
        {
            network.ModelJson = File.ReadAllBytes(modelJsonPath);
            return new Backbone(options?.Source ?? modelJsonPath, network, featureSize, inputSpec);
        }
        catch
        {
            network.Dispose();
            throw;
        }
    }

    /// <summary>Rebuilds a saved backbone's network from its model.json, with zero weights that the saved model overwrites.</summary>
    internal static TfjsNetwork Rebuild(byte[] modelJson, int output, bool globalPool, string source)
    {
        JsonObject root;
        try
        {
            root = JsonNode.Parse(modelJson) as JsonObject ?? throw new InvalidDataException($"{source}: the saved model.json is not a JSON object.");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{source}: the saved model.json is not valid JSON ({e.Message}).", e);
        }

        var topology = root["modelTopology"] as JsonObject ?? throw new InvalidDataException($"{source}: the saved model.json has no 'modelTopology'.");
        var manifest = root["weightsManifest"] as JsonArray ?? throw new InvalidDataException($"{source}: the saved model.json has no 'weightsManifest'.");
        var graph = TfjsGraph.Parse(topology, source);
        return new TfjsNetwork(graph, output, TfjsWeights.Placeholders(manifest, source), source, globalPoolOutput: globalPool) { ModelJson = modelJson };
    }

    /// <summary>The network up to <paramref name="output"/>, pooled per channel when that output is a feature map.</summary>
    private static (TfjsNetwork Network, int FeatureSize) BuildFeatureNetwork(
        TfjsGraph graph, int output, Dictionary<string, TfjsWeight> weights, InputSpec inputSpec, string source)
    {
        var network = new TfjsNetwork(graph, output, weights, source);
        try
        {
            var featureShape = ProbeOutputShape(network, graph, inputSpec);
            if (featureShape.Length == 4)
            {
                // A feature map (e.g. a base model saved without its top): average it per channel, as Keras's pooling="avg".
                network.Dispose();
                network = new TfjsNetwork(graph, output, weights, source, globalPoolOutput: true);
                featureShape = ProbeOutputShape(network, graph, inputSpec);
            }

            if (featureShape.Length != 2)
            {
                throw new NotSupportedException(
                    $"{source}: the chosen feature output has shape [{string.Join(", ", featureShape)}], not a vector per image. Set TfjsLoadOptions.FeatureLayer to a GlobalAveragePooling2D, Flatten or Dense layer.");
            }

            return (network, (int)featureShape[1]);
        }
        catch
        {
            network.Dispose();
            throw;
        }
    }

    /// <summary>Loads a whole TF.js layers classifier (e.g. a Teachable Machine export) with the labels from the metadata.json beside it.</summary>
    /// <param name="modelJsonPath">Path of <c>model.json</c>.</param>
    /// <param name="options">Input spec and source overrides (<see cref="TfjsLoadOptions.FeatureLayer"/> is ignored); null for defaults.</param>
    /// <returns>The full network and its labels; labels are <c>class_0</c>… when there is no metadata.json.</returns>
    public static TfjsClassifier LoadClassifier(string modelJsonPath, TfjsLoadOptions? options = null) =>
        LoadClassifier(modelJsonPath, LocalShardOpener(modelJsonPath), options);

    /// <summary>Loads a whole TF.js layers classifier, opening shards and metadata.json through <paramref name="openShard"/>.</summary>
    /// <param name="modelJsonPath">Path of a local copy of <c>model.json</c>.</param>
    /// <param name="openShard">Opens a file by its path relative to model.json.</param>
    /// <param name="options">Input spec and source overrides; null for defaults.</param>
    /// <returns>The full network and its labels.</returns>
    public static TfjsClassifier LoadClassifier(string modelJsonPath, Func<string, Stream> openShard, TfjsLoadOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(modelJsonPath);
        ArgumentNullException.ThrowIfNull(openShard);
        TorchNativeLoader.EnsureLoaded();
        var model = Read(modelJsonPath, openShard);
        var inputSpec = options?.InputSpec ?? DefaultInputSpec(model, options?.InputSize);
        var network = new TfjsNetwork(model.Graph, model.Graph.Output, model.Weights, modelJsonPath);
        try
        {
            var shape = ProbeOutputShape(network, model.Graph, inputSpec);
            if (shape.Length != 2)
            {
                throw new NotSupportedException($"{modelJsonPath}: the model outputs shape [{string.Join(", ", shape)}], not one score vector per image; it is not a classifier.");
            }

            var labels = model.Labels ?? Enumerable.Range(0, (int)shape[1]).Select(i => $"class_{i}").ToList();
            if (labels.Count != shape[1])
            {
                throw new InvalidDataException($"{modelJsonPath}: metadata.json lists {labels.Count} labels but the model has {shape[1]} outputs.");
            }

            return new TfjsClassifier(network, labels, inputSpec, options?.Source ?? modelJsonPath);
        }
        catch
        {
            network.Dispose();
            throw;
        }
    }

    /// <summary>Loads the network up to <paramref name="layer"/> (the model output when null), without choosing a feature cut.</summary>
    internal static TfjsNetwork LoadNetwork(string modelJsonPath, string? layer = null)
    {
        var model = Read(modelJsonPath, LocalShardOpener(modelJsonPath));
        var output = layer is null ? model.Graph.Output : ChooseFeatureOutput(model.Graph, layer, modelJsonPath);
        return new TfjsNetwork(model.Graph, output, model.Weights, modelJsonPath);
    }

    internal sealed record TfjsFile(TfjsGraph Graph, Dictionary<string, TfjsWeight> Weights, List<string>? Labels, bool IsTeachableMachine);

    internal static TfjsFile Read(string modelJsonPath, Func<string, Stream> openShard)
    {
        if (!File.Exists(modelJsonPath))
        {
            throw new FileNotFoundException($"The TF.js model file '{modelJsonPath}' does not exist. Give the path of a model.json saved by TensorFlow.js (layers format).", modelJsonPath);
        }

        JsonObject root;
        try
        {
            using var stream = File.OpenRead(modelJsonPath);
            root = JsonNode.Parse(stream) as JsonObject ?? throw ModelFormat.Error($"{modelJsonPath}: model.json is not a JSON object.");
        }
        catch (JsonException e)
        {
            throw ModelFormat.Error($"{modelJsonPath}: model.json is not valid JSON ({e.Message}).", e);
        }

        var format = (string?)root["format"];
        if (format is not null && format != "layers-model")
        {
            throw new NotSupportedException($"{modelJsonPath}: the model format is '{format}'; only TF.js layers models ('layers-model') can be loaded as trainable backbones.");
        }

        var topology = root["modelTopology"] as JsonObject
            ?? throw ModelFormat.Error($"{modelJsonPath}: model.json has no 'modelTopology' object.");
        var manifest = root["weightsManifest"] as JsonArray
            ?? throw ModelFormat.Error($"{modelJsonPath}: model.json has no 'weightsManifest' array.");
        var graph = TfjsGraph.Parse(topology, modelJsonPath);
        var weights = TfjsWeights.Read(manifest, openShard, modelJsonPath);
        var (labels, tm) = ReadMetadata(modelJsonPath, openShard);
        return new TfjsFile(graph, weights, labels, tm);
    }

    /// <summary>The weight shard paths (relative to model.json) that its weights manifest lists, in order.</summary>
    internal static IReadOnlyList<string> ShardPaths(string modelJsonPath)
    {
        try
        {
            using var stream = File.OpenRead(modelJsonPath);
            var manifest = (JsonNode.Parse(stream) as JsonObject)?["weightsManifest"] as JsonArray;
            return manifest?.OfType<JsonObject>().SelectMany(g => (g["paths"] as JsonArray ?? []).Select(p => (string?)p ?? string.Empty))
                .Where(p => p.Length > 0).Distinct(StringComparer.Ordinal).ToList() ?? [];
        }
        catch (JsonException e)
        {
            throw ModelFormat.Error($"{modelJsonPath}: model.json is not valid JSON ({e.Message}).", e);
        }
    }

    private static (List<string>? Labels, bool TeachableMachine) ReadMetadata(string modelJsonPath, Func<string, Stream> openShard)
    {
        Stream stream;
        try
        {
            stream = openShard("metadata.json");
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException or IOException or HttpRequestException)
        {
            return (null, false);
        }

        using (stream)
        {
            JsonObject? meta;
            try
            {
                meta = JsonNode.Parse(stream) as JsonObject;
            }
            catch (JsonException e)
            {
                throw new InvalidDataException($"{Path.Combine(Path.GetDirectoryName(modelJsonPath) ?? ".", "metadata.json")}: not valid JSON ({e.Message}).", e);
            }

            var labels = (meta?["labels"] as JsonArray)?.Select(l => (string?)l ?? string.Empty).ToList();
            var tm = meta?["tmVersion"] is not null || ((string?)meta?["packageName"])?.Contains("teachablemachine", StringComparison.OrdinalIgnoreCase) == true;
            return (labels, tm);
        }
    }

    private static Func<string, Stream> LocalShardOpener(string modelJsonPath)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(modelJsonPath);
        var directory = Path.GetDirectoryName(Path.GetFullPath(modelJsonPath)) ?? ".";
        return relative =>
        {
            var path = Path.Combine(directory, relative.Replace('/', Path.DirectorySeparatorChar));
            if (!File.Exists(path))
            {
                throw new FileNotFoundException($"'{path}' does not exist.", path);
            }

            return File.OpenRead(path);
        };
    }

    /// <summary>The value to cut at: a named layer, or the input of the trailing Dense head.</summary>
    internal static int ChooseFeatureOutput(TfjsGraph graph, string? layer, string source)
    {
        if (layer is not null)
        {
            if (graph.LayerOutputs.TryGetValue(layer, out var named))
            {
                return named;
            }

            throw new ArgumentException(
                $"{source}: the model has no layer named '{layer}'. Its layers are: {string.Join(", ", graph.AllNames.Distinct())}.", nameof(layer));
        }

        var byOutput = graph.Steps.ToDictionary(s => s.Output);
        var value = graph.Output;
        var cut = value;
        while (byOutput.TryGetValue(value, out var step) && step.Inputs.Length == 1 && IsHeadLayer(step.ClassName))
        {
            if (step.ClassName == "Dense")
            {
                cut = step.Inputs[0];
            }

            value = step.Inputs[0];
        }

        return cut;
    }

    private static bool IsHeadLayer(string className) =>
        className is "Dense" or "Dropout" or "Activation" or "Softmax" or "ReLU" or "LeakyReLU" or "BatchNormalization";

    private static InputSpec DefaultInputSpec(TfjsFile model, int? inputSize)
    {
        var shape = model.Graph.InputShape;
        var height = shape is { Length: 3 } && shape[0] is long h ? (int)h : inputSize ?? 224;
        var width = shape is { Length: 3 } && shape[1] is long w ? (int)w : inputSize ?? 224;
        var mobileNet = model.IsTeachableMachine || model.Graph.AllNames.Any(n => MobileNetNames().IsMatch(n));
        return mobileNet ? new InputSpec(width, height, -1f, 1f) : new InputSpec(width, height, 0f, 1f);
    }

    private static long[] ProbeOutputShape(TfjsNetwork network, TfjsGraph graph, InputSpec spec)
    {
        var channels = graph.InputShape is { Length: 3 } s && s[2] is long c ? c : 3;
        var wasTraining = network.training;
        network.eval();
        try
        {
            using var noGrad = torch.no_grad();
            using var probe = zeros(1, channels, spec.Height, spec.Width);
            using var output = network.forward(probe);
            return output.shape;
        }
        finally
        {
            network.train(wasTraining);
        }
    }

    [GeneratedRegex(@"^(Conv1|expanded_conv|block_\d+_(expand|depthwise|project)|conv_dw_\d+|conv_pw_\d+)|mobilenet", RegexOptions.IgnoreCase)]
    private static partial Regex MobileNetNames();
}
