using System.Globalization;
using System.Text.Json.Nodes;

namespace TransferLearning.Backbones.Tfjs;

/// <summary>One call of a primitive Keras layer: reads values <see cref="Inputs"/>, writes value <see cref="Output"/>.</summary>
internal sealed record TfjsStep(string Name, string ClassName, JsonObject Config, int[] Inputs, int Output);

/// <summary>
/// A Keras topology (Sequential / functional Model, nested in any way) flattened into primitive layer calls in
/// topological order. Value 0 is the network input.
/// </summary>
internal sealed class TfjsGraph
{
    /// <summary>Layer classes the loader can run.</summary>
    internal static readonly string[] SupportedClasses =
    [
        "InputLayer", "ZeroPadding2D", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "BatchNormalization", "ReLU", "LeakyReLU",
        "Activation", "Softmax", "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate",
        "GlobalAveragePooling2D", "GlobalMaxPooling2D", "AveragePooling2D", "MaxPooling2D", "Flatten", "Reshape", "Dense",
        "Dropout", "SpatialDropout2D", "Rescaling",
    ];

    private static readonly HashSet<string> Containers = new(["Sequential", "Model", "Functional"], StringComparer.Ordinal);

    private readonly string _source;
    private readonly bool _tfjsNodeNumbering;
    private int _nextValue = 1;

    private TfjsGraph(string source, bool tfjsNodeNumbering)
    {
        _source = source;
        _tfjsNodeNumbering = tfjsNodeNumbering;
    }

    /// <summary>Primitive layer calls in execution order.</summary>
    public List<TfjsStep> Steps { get; } = [];

    /// <summary>The value each layer or container name produced last (for choosing a feature layer by name).</summary>
    public Dictionary<string, int> LayerOutputs { get; } = new(StringComparer.Ordinal);

    /// <summary>The value the whole model outputs.</summary>
    public int Output { get; private set; }

    /// <summary>Keras input shape without the batch dimension (NHWC), when the model declares one.</summary>
    public long?[]? InputShape { get; private set; }

    /// <summary>Names of every layer and container seen.</summary>
    public List<string> AllNames { get; } = [];

    /// <summary>Parses a <c>modelTopology</c> object (or its <c>model_config</c>).</summary>
    public static TfjsGraph Parse(JsonObject topology, string source)
    {
        var kerasVersion = (string?)topology["keras_version"] ?? string.Empty;
        var root = topology["model_config"] as JsonObject ?? topology;
        var className = (string?)root["class_name"]
            ?? throw new InvalidDataException($"{source}: modelTopology has no 'class_name'; this is not a Keras layers model (a TF.js graph model cannot be loaded as layers).");
        if (!Containers.Contains(className))
        {
            throw new NotSupportedException($"{source}: the top-level model class is '{className}'; expected Sequential, Model or Functional.");
        }

        var graph = new TfjsGraph(source, kerasVersion.StartsWith("tfjs", StringComparison.Ordinal) || kerasVersion.Length == 0);
        var outputs = graph.Container(className, root["config"], [0]);
        if (outputs.Count != 1)
        {
            throw new NotSupportedException($"{source}: the model has {outputs.Count} outputs; only single-output models are supported.");
        }

        graph.Output = outputs[0];
        if (graph.Steps.Count == 0)
        {
            throw new InvalidDataException(
                $"{source}: the model has no layers (its topology holds nothing but the input), so it computes no features; export the whole Keras model.");
        }

        return graph;
    }

    private List<int> Container(string className, JsonNode? config, List<int> inputs) =>
        className == "Sequential" ? Sequential(config, inputs) : Functional(config, inputs);

    private List<int> Sequential(JsonNode? config, List<int> inputs)
    {
        var layers = config as JsonArray ?? config?["layers"] as JsonArray
            ?? throw new InvalidDataException($"{_source}: a Sequential config has no 'layers' list.");
        var name = config is JsonObject o ? (string?)o["name"] : null;
        if (inputs.Count != 1)
        {
            throw new NotSupportedException($"{_source}: Sequential '{name}' is called with {inputs.Count} inputs; it takes one.");
        }

        var current = inputs;
        foreach (var entry in layers)
        {
            var (cls, layerName, cfg) = Describe(entry);
            RecordInputShape(cfg);
            if (cls == "InputLayer")
            {
                AllNames.Add(layerName);
                continue;
            }

            current = Apply(cls, layerName, cfg, current);
        }

        if (name is not null)
        {
            LayerOutputs[name] = current[0];
            AllNames.Add(name);
        }

        return current;
    }

    private List<int> Functional(JsonNode? config, List<int> inputs)
    {
        var name = (string?)config?["name"] ?? "model";
        var layers = config?["layers"] as JsonArray ?? throw new InvalidDataException($"{_source}: model '{name}' config has no 'layers' list.");
        var inputLayers = config?["input_layers"] as JsonArray ?? throw new InvalidDataException($"{_source}: model '{name}' config has no 'input_layers'.");
        var outputLayers = config?["output_layers"] as JsonArray ?? throw new InvalidDataException($"{_source}: model '{name}' config has no 'output_layers'.");
        if (inputLayers.Count == 3 && inputLayers[0] is JsonValue)
        {
            inputLayers = [inputLayers.DeepClone()];
        }

        if (outputLayers.Count == 3 && outputLayers[0] is JsonValue)
        {
            outputLayers = [outputLayers.DeepClone()];
        }

        if (inputLayers.Count != inputs.Count)
        {
            throw new NotSupportedException($"{_source}: model '{name}' has {inputLayers.Count} inputs but is called with {inputs.Count}; only single-input models are supported.");
        }

        var calls = new Dictionary<string, List<List<int>>>(StringComparer.Ordinal);
        var nodeCounts = new Dictionary<string, int>(StringComparer.Ordinal);
        var containerNames = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < inputLayers.Count; i++)
        {
            var inputName = (string?)inputLayers[i]?[0] ?? throw new InvalidDataException($"{_source}: model '{name}' has a malformed input_layers entry.");
            calls[inputName] = [[inputs[i]]];
        }

        var pending = new List<(string Cls, string Name, JsonObject Cfg, JsonArray Nodes)>();
        foreach (var entry in layers)
        {
            var (cls, layerName, cfg) = Describe(entry);
            AllNames.Add(layerName);
            if (cls == "InputLayer")
            {
                RecordInputShape(cfg);
                nodeCounts[layerName] = 1;
                continue;
            }

            var nodes = entry!["inbound_nodes"] as JsonArray ?? [];
            if (nodes.Any(n => n is JsonObject))
            {
                throw new NotSupportedException($"{_source}: layer '{layerName}' uses the Keras 3 inbound_nodes format; convert the model with tensorflowjs_converter from a Keras 2 (tf.keras) model.");
            }

            nodeCounts[layerName] = nodes.Count;
            if (Containers.Contains(cls))
            {
                containerNames.Add(layerName);
            }

            pending.Add((cls, layerName, cfg, nodes));
        }

        var done = pending.Select(_ => 0).ToArray();
        bool progress;
        do
        {
            progress = false;
            for (var p = 0; p < pending.Count; p++)
            {
                var (cls, layerName, cfg, nodes) = pending[p];
                while (done[p] < nodes.Count)
                {
                    var refs = nodes[done[p]] as JsonArray ?? [];
                    var args = new List<int>();
                    foreach (var r in refs)
                    {
                        if (TryResolve(r as JsonArray, calls, nodeCounts, containerNames, out var value))
                        {
                            args.Add(value);
                        }
                        else
                        {
                            break;
                        }
                    }

                    if (args.Count != refs.Count)
                    {
                        break;
                    }

                    if (!calls.TryGetValue(layerName, out var list))
                    {
                        calls[layerName] = list = [];
                    }

                    list.Add(Apply(cls, layerName, cfg, args));
                    done[p]++;
                    progress = true;
                }
            }
        }
        while (progress);

        for (var p = 0; p < pending.Count; p++)
        {
            if (done[p] < pending[p].Nodes.Count)
            {
                throw new InvalidDataException(
                    $"{_source}: model '{name}': the inputs of layer '{pending[p].Name}' ({pending[p].Nodes[done[p]]?.ToJsonString()}) are not produced by any layer of the model.");
            }
        }

        var outputs = new List<int>();
        foreach (var o in outputLayers)
        {
            if (!TryResolve(o as JsonArray, calls, nodeCounts, containerNames, out var value))
            {
                throw new InvalidDataException($"{_source}: model '{name}': output {o?.ToJsonString()} is not produced by any layer.");
            }

            outputs.Add(value);
        }

        LayerOutputs[name] = outputs[^1];
        AllNames.Add(name);
        return outputs;
    }

    private bool TryResolve(JsonArray? reference, Dictionary<string, List<List<int>>> calls, Dictionary<string, int> nodeCounts, HashSet<string> containers, out int value)
    {
        value = 0;
        if (reference is null || reference.Count < 1)
        {
            throw new InvalidDataException($"{_source}: malformed layer reference {reference?.ToJsonString()}.");
        }

        var name = (string?)reference[0] ?? string.Empty;
        var node = reference.Count > 1 ? (int)reference[1]! : 0;
        var tensor = reference.Count > 2 ? (int)reference[2]! : 0;
        if (!calls.TryGetValue(name, out var list))
        {
            if (!nodeCounts.ContainsKey(name))
            {
                throw new InvalidDataException($"{_source}: a layer input refers to '{name}', which is not a layer of the same model.");
            }

            return false;
        }

        var total = nodeCounts.GetValueOrDefault(name, 1);
        if (total <= 1)
        {
            node = 0;
        }
        else if (containers.Contains(name) && _tfjsNodeNumbering && node >= 1)
        {
            // tfjs-layers numbers a nested model's calls from 1 (node 0 is the model's own internal node).
            node--;
        }

        if (node >= list.Count)
        {
            return false;
        }

        var outputs = list[node];
        if (tensor >= outputs.Count)
        {
            throw new InvalidDataException($"{_source}: a layer input refers to output {tensor} of '{name}', which has {outputs.Count} output(s).");
        }

        value = outputs[tensor];
        return true;
    }

    private List<int> Apply(string cls, string name, JsonObject cfg, List<int> inputs)
    {
        if (Containers.Contains(cls))
        {
            return Container(cls, cfg, inputs);
        }

        if (!SupportedClasses.Contains(cls))
        {
            throw new NotSupportedException(
                $"{_source}: layer '{name}' has class '{cls}', which the TF.js loader does not support. Supported layer classes: {string.Join(", ", SupportedClasses)}.");
        }

        if ((string?)cfg["data_format"] == "channels_first")
        {
            throw new NotSupportedException($"{_source}: layer '{name}' ({cls}) uses data_format 'channels_first'; only channels_last models are supported.");
        }

        var value = _nextValue++;
        Steps.Add(new TfjsStep(name, cls, cfg, [.. inputs], value));
        LayerOutputs[name] = value;
        AllNames.Add(name);
        return [value];
    }

    private (string Cls, string Name, JsonObject Cfg) Describe(JsonNode? entry)
    {
        var cls = (string?)entry?["class_name"] ?? throw new InvalidDataException($"{_source}: a layer entry has no 'class_name': {Truncate(entry?.ToJsonString())}.");
        var cfg = entry!["config"] as JsonObject ?? [];
        var name = (string?)cfg["name"] ?? (string?)entry["name"] ?? cls.ToLowerInvariant() + "_" + _nextValue.ToString(CultureInfo.InvariantCulture);
        return (cls, name, cfg);
    }

    private void RecordInputShape(JsonObject cfg)
    {
        if (InputShape is not null)
        {
            return;
        }

        if ((cfg["batch_input_shape"] ?? cfg["batch_shape"]) is JsonArray shape && shape.Count > 1)
        {
            InputShape = shape.Skip(1).Select(d => d is null ? (long?)null : (long)d).ToArray();
        }
    }

    private static string Truncate(string? s) => s is null ? "null" : s.Length > 200 ? s[..200] + "…" : s;
}
