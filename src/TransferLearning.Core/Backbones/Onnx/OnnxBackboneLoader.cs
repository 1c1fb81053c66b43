using Onnx;
using TransferLearning.Datasets;
using TransferLearning.Hub;
using static TorchSharp.torch;

namespace TransferLearning.Backbones.Onnx;

/// <summary>Builds backbones from ONNX files.</summary>
internal static class OnnxBackboneLoader
{
    private static readonly HashSet<string> PassThroughOps = new(StringComparer.Ordinal)
    {
        "Softmax", "LogSoftmax", "Identity", "Dropout", "Flatten", "Reshape", "Squeeze", "Add", "Sigmoid",
    };

    /// <summary>
    /// Reads and parses an ONNX file with a clear error for missing or malformed files: an empty file, or one whose
    /// first bytes cannot begin an ONNX <c>ModelProto</c> (an HTML page, a zip, a pickle, text), is refused before the
    /// protobuf parser sees it; a parse failure or a model without a graph is refused after.
    /// </summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The file is not an ONNX model.</exception>
    public static ModelProto Read(string path)
    {
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"The ONNX model file '{path}' does not exist.", path);
        }

        ModelProto model;
        try
        {
            // Parsed from the file stream rather than from File.ReadAllBytes: no copy of the whole file is held while the
            // weights are copied out (ResNet18: ~65 MB lower peak RSS, same load time; a 1 MB stream buffer measured worse).
            using var stream = File.OpenRead(path);
            Span<byte> start = stackalloc byte[4];
            var read = stream.ReadAtLeast(start, start.Length, throwOnEndOfStream: false);
            if (NotOnnx(start[..read]) is { } problem)
            {
                throw ModelFormat.Error($"'{path}' is not an ONNX model: {problem}.");
            }

            stream.Position = 0;
            model = ModelProto.Parser.ParseFrom(stream);
        }
        catch (Google.Protobuf.InvalidProtocolBufferException ex)
        {
            throw ModelFormat.Error($"'{path}' is not a valid ONNX model (protobuf parse failed: {ex.Message}).", ex);
        }

        if (model.Graph is null || model.Graph.Node.Count == 0 || model.Graph.Output.Count == 0)
        {
            throw ModelFormat.Error($"'{path}' is not an ONNX model: it has no graph (no nodes or no outputs).");
        }

        return model;
    }

    /// <summary>
    /// Why <paramref name="bytes"/> cannot be an ONNX file, or null when they may be one: empty, or a first byte that is
    /// not the tag of a <c>ModelProto</c> field (ir_version, producer, domain, model_version, doc_string, graph,
    /// opset_import, metadata_props, training_info, functions) with its wire type. ONNX writers start with ir_version (0x08).
    /// </summary>
    internal static string? NotOnnx(ReadOnlySpan<byte> bytes)
    {
        if (bytes.IsEmpty)
        {
            return "the file is empty (0 bytes)";
        }

        var tag = bytes[0];
        var field = (tag & 0x7F) >> 3;
        var wire = tag & 7;
        var plausible = (tag & 0x80) == 0
            ? (field, wire) is (1, 0) or (5, 0) or (2 or 3 or 4 or 6 or 7 or 8 or 14, 2)
            : bytes.Length > 1 && (((bytes[1] << 4) | field) is 20 or 25) && wire == 2; // two-byte tags of fields 20 and 25
        if (plausible)
        {
            return null;
        }

        var start = Convert.ToHexString(bytes[..Math.Min(4, bytes.Length)]);
        var looksLike = bytes[0] == (byte)'<' ? " (it looks like an HTML or XML page)"
            : bytes.StartsWith("PK"u8) ? " (it looks like a zip archive, e.g. a PyTorch .pth file)"
            : bytes[0] == 0x80 ? " (it looks like a Python pickle, e.g. a PyTorch .pth file)"
            : bytes[0] == (byte)'{' ? " (it looks like JSON)"
            : string.Empty;
        return $"its first bytes ({start}) cannot start an ONNX protobuf{looksLike}";
    }

    /// <summary>
    /// The value to cut a classification model at: walks back from the output over Softmax/Flatten/bias-Add etc.
    /// and stops at the input of the final Gemm/MatMul. Without a classifier, the graph output.
    /// </summary>
    public static string FindFeatureOutput(GraphProto graph)
    {
        var producers = new Dictionary<string, NodeProto>();
        foreach (var n in graph.Node)
        {
            foreach (var o in n.Output)
            {
                producers[o] = n;
            }
        }

        var initializers = graph.Initializer.Select(i => i.Name).ToHashSet();
        var output = graph.Output[0].Name;
        var current = output;
        for (var guard = 0; guard < 16 && producers.TryGetValue(current, out var node); guard++)
        {
            if (node.OpType is "Gemm" or "MatMul")
            {
                return node.Input[0];
            }

            if (!PassThroughOps.Contains(node.OpType))
            {
                break;
            }

            var data = node.Input.FirstOrDefault(i => i.Length > 0 && !initializers.Contains(i));
            if (data is null)
            {
                break;
            }

            current = data;
        }

        return output;
    }

    /// <summary>Loads an ONNX classification or feature model as a backbone.</summary>
    public static Backbone Load(string path, string source, string? featureNode, InputSpec? inputSpec, BackboneFeatures features = BackboneFeatures.Pooled, bool mirrorAveraged = false) =>
        ReleasingParse(() => LoadCore(path, source, featureNode, inputSpec, features, mirrorAveraged));

    /// <summary>Loads the preprocessing graph and the ResNet18 graph of ML.NET's DnnImageFeaturizer as one backbone.</summary>
    public static Backbone LoadResNet18(string preprocessPath, string resnetPath, string source, InputSpec? inputSpec, BackboneFeatures features = BackboneFeatures.Pooled, bool mirrorAveraged = false) =>
        ReleasingParse(() => LoadResNet18Core(preprocessPath, resnetPath, source, inputSpec, features, mirrorAveraged));

    /// <summary>
    /// Makes <paramref name="model"/>'s single output the <see cref="BackboneFeatures.MultiStage"/> vector: the graph is
    /// run once on a zero image (cut at <paramref name="featureOutput"/>) to find its last feature map (the last 4-D value
    /// larger than 1 × 1) and the previous stage's map (the last 4-D value of a larger height and width); then
    /// GlobalAveragePool and GlobalMaxPool of each are concatenated, last stage first. The nodes are added to the graph,
    /// so a saved model and the ONNX export carry them.
    /// </summary>
    /// <returns>The name of the new output value ([N, 2 × (C_last + C_previous), 1, 1]).</returns>
    internal static string AddMultiStageOutput(ModelProto model, string featureOutput, string source, InputSpec? inputSpec, IReadOnlySet<string>? constants)
    {
        List<(string Name, long[] Shape)> maps;
        using (var probe = new OnnxGraphModule(model, source, outputName: featureOutput, constantInitializers: constants))
        {
            var spec = inputSpec ?? DefaultSpec(probe.InputShape);
            maps = probe.MapShapes(spec.Height, spec.Width);
        }

        var last = maps.LastOrDefault(m => m.Shape[2] * m.Shape[3] > 1);
        if (last.Name is null)
        {
            throw new NotSupportedException(
                $"Multi-stage features need feature maps larger than 1 × 1 before '{featureOutput}', and the ONNX model '{source}' has none. Load it with BackboneFeatures.Pooled.");
        }

        var previous = maps.LastOrDefault(m => m.Shape[2] > last.Shape[2] && m.Shape[3] > last.Shape[3]);
        if (previous.Name is null)
        {
            throw new NotSupportedException(
                $"Multi-stage features need a feature map of a larger resolution before '{last.Name}' ({last.Shape[2]} × {last.Shape[3]}), and the ONNX model '{source}' has none. Load it with BackboneFeatures.Pooled.");
        }

        const string Prefix = "multistage_";
        var pooled = new List<string>();
        foreach (var (map, stage) in new[] { (last.Name, "last"), (previous.Name, "previous") })
        {
            foreach (var op in new[] { "GlobalAveragePool", "GlobalMaxPool" })
            {
                var name = $"{Prefix}{stage}_{(op == "GlobalAveragePool" ? "avg" : "max")}";
                var node = new NodeProto { Name = name, OpType = op, Output = { name } };
                node.Input.Add(map);
                model.Graph.Node.Add(node);
                pooled.Add(name);
            }
        }

        const string Output = Prefix + "features";
        var concat = new NodeProto { Name = Output, OpType = "Concat", Output = { Output } };
        concat.Input.AddRange(pooled);
        concat.Attribute.Add(new AttributeProto { Name = "axis", Type = AttributeProto.Types.AttributeType.Int, I = 1 });
        model.Graph.Node.Add(concat);
        model.Graph.Output.Clear();
        model.Graph.Output.Add(new ValueInfoProto { Name = Output });
        return Output;
    }

    /// <summary>
    /// Makes <paramref name="model"/>'s single output the average of the features of each image and of its left-right
    /// mirror: the graph's image input and its mirror are stacked along the batch axis before the first node (Slice with
    /// step −1 from opset 10, a Gather over <paramref name="width"/> columns before), and the output
    /// <paramref name="featureOutput"/>, flattened to [2N, F], is folded back to [N, F] by a mean over the two halves
    /// (Transpose, Reshape [F, 2, N], ReduceMean, Transpose: no node needs N or F). The nodes are part of the graph, so
    /// a saved model and the ONNX export carry them.
    /// </summary>
    /// <returns>The new output's name, and whether the mirror only works at <paramref name="width"/>.</returns>
    internal static (string Output, bool WidthBound) AddMirrorAveraging(ModelProto model, string featureOutput, string source, long width)
    {
        var opset = model.DefaultOpset();
        if (opset < 5)
        {
            throw new NotSupportedException(
                $"Mirror-averaged features need ONNX opset 5 or later (Reshape with a shape input), and the ONNX model '{source}' uses opset {opset}. " +
                $"Load it with {nameof(BackboneLoadOptions)}.{nameof(BackboneLoadOptions.MirrorAveraged)} = false.");
        }

        var graph = model.Graph;
        var input = graph.DataInput().Name;
        const string Prefix = "mirror_";
        TensorProto Longs(string name, params long[] values)
        {
            var t = OnnxProtoExtensions.FromInt64s(Prefix + name, [values.Length], values);
            graph.Initializer.Add(t);
            return t;
        }

        NodeProto Node(string name, string op, params string[] inputs)
        {
            var node = new NodeProto { Name = Prefix + name, OpType = op, Output = { Prefix + name } };
            node.Input.AddRange(inputs);
            return node;
        }

        AttributeProto Int(string name, long value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };
        AttributeProto Ints(string name, params long[] values)
        {
            var a = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
            a.Ints.AddRange(values);
            return a;
        }

        NodeProto mirror;
        var widthBound = opset < 10;
        if (widthBound)
        {
            mirror = Node("image", "Gather", input, Longs("columns", [.. Enumerable.Range(0, (int)width).Select(c => width - 1 - c)]).Name);
            mirror.Attribute.Add(Int("axis", 3));
        }
        else
        {
            mirror = Node("image", "Slice", input, Longs("starts", -1).Name, Longs("ends", long.MinValue + 1).Name, Longs("axes", 3).Name, Longs("steps", -1).Name);
        }

        var pair = Node("pair", "Concat", input, mirror.Output[0]);
        pair.Attribute.Add(Int("axis", 0));
        foreach (var node in graph.Node)
        {
            for (var i = 0; i < node.Input.Count; i++)
            {
                if (node.Input[i] == input)
                {
                    node.Input[i] = pair.Output[0];
                }
            }
        }

        graph.Node.Insert(0, pair);
        graph.Node.Insert(0, mirror);

        var flat = Node("flat", "Flatten", featureOutput);
        flat.Attribute.Add(Int("axis", 1));
        var byFeature = Node("by_feature", "Transpose", flat.Output[0]);
        byFeature.Attribute.Add(Ints("perm", 1, 0));
        var halves = Node("halves", "Reshape", byFeature.Output[0], Longs("halves_shape", 0, 2, -1).Name);
        var mean = opset >= 18 ? Node("mean", "ReduceMean", halves.Output[0], Longs("mean_axes", 1).Name) : Node("mean", "ReduceMean", halves.Output[0]);
        if (opset < 18)
        {
            mean.Attribute.Add(Ints("axes", 1));
        }

        mean.Attribute.Add(Int("keepdims", 0));
        var output = Node("features", "Transpose", mean.Output[0]);
        output.Attribute.Add(Ints("perm", 1, 0));
        graph.Node.Add(flat);
        graph.Node.Add(byFeature);
        graph.Node.Add(halves);
        graph.Node.Add(mean);
        graph.Node.Add(output);
        graph.Output.Clear();
        graph.Output.Add(new ValueInfoProto { Name = output.Output[0] });
        return (output.Output[0], widthBound);
    }

    /// <summary>
    /// Runs an import, then returns the parse's managed memory to the OS: loading ResNet18 allocates ~0.35 GB of
    /// short-lived arrays (parsed weights, float copies) that the GC would otherwise keep committed for the whole run
    /// (fit bench, 100 images per class, with the earlier hand-written parser that allocated ~0.6 GB: peak 1043 MiB
    /// without this, 764 MiB with one full collection after loading).
    /// </summary>
    private static Backbone ReleasingParse(Func<Backbone> load)
    {
        var backbone = load();
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        return backbone;
    }

    private static Backbone LoadCore(string path, string source, string? featureNode, InputSpec? inputSpec, BackboneFeatures features, bool mirrorAveraged)
    {
        var model = Read(path);
        var output = featureNode is null ? FindFeatureOutput(model.Graph) : ResolveNodeOutput(model.Graph, featureNode, path);
        if (features == BackboneFeatures.MultiStage)
        {
            output = AddMultiStageOutput(model, output, Path.GetFileName(path), inputSpec, constants: null);
        }

        var widthBound = false;
        if (mirrorAveraged)
        {
            // Without Slice steps (opset < 10) the mirror is a Gather over this width, which ties the backbone to it.
            var width = inputSpec?.Width ?? DefaultSpec(model.Graph.DataInput().Shape()).Width;
            (output, widthBound) = AddMirrorAveraging(model, output, Path.GetFileName(path), width);
        }

        var module = new OnnxGraphModule(model, Path.GetFileName(path), outputName: output) { FlattenOutput = true };
        try
        {
            var spec = inputSpec ?? DefaultSpec(module.InputShape);
            return new Backbone(source, module, FeatureSize(module, spec), spec) { FixedInputSize = widthBound };
        }
        catch
        {
            module.Dispose();
            throw;
        }
    }

    private static Backbone LoadResNet18Core(string preprocessPath, string resnetPath, string source, InputSpec? inputSpec, BackboneFeatures features, bool mirrorAveraged)
    {
        var prep = Read(preprocessPath);
        var net = Read(resnetPath);
        var merged = Chain(prep, net, out var frozen);
        var spec = inputSpec ?? new InputSpec(224, 224, 0f, 255f, ChannelOrder.Rgb);
        if (features == BackboneFeatures.MultiStage)
        {
            AddMultiStageOutput(merged, merged.Graph.Output[0].Name, Path.GetFileName(resnetPath), spec, frozen);
        }

        if (mirrorAveraged)
        {
            AddMirrorAveraging(merged, merged.Graph.Output[0].Name, Path.GetFileName(resnetPath), spec.Width);
        }

        var module = new OnnxGraphModule(merged, Path.GetFileName(resnetPath), constantInitializers: frozen) { FlattenOutput = true };
        try
        {
            // The preprocessing subtracts a 224×224 mean image, so no other size fits.
            return new Backbone(source, module, FeatureSize(module, spec), spec) { FixedInputSize = true };
        }
        catch
        {
            module.Dispose();
            throw;
        }
    }

    /// <summary>Feeds the first model's output into the second model's input (names prefixed to stay unique).</summary>
    internal static ModelProto Chain(ModelProto first, ModelProto second, out HashSet<string> firstInitializers)
    {
        const string P1 = "pre_";
        var merged = new ModelProto { IrVersion = Math.Max(first.IrVersion, second.IrVersion), Graph = new GraphProto { Name = second.Graph.Name } };
        merged.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = Math.Max(first.DefaultOpset(), second.DefaultOpset()) });
        var secondInput = second.Graph.DataInput().Name;
        var firstOutput = P1 + first.Graph.Output[0].Name;
        string Rename1(string n) => n.Length == 0 ? n : P1 + n;
        string Rename2(string n) => n == secondInput ? firstOutput : n;
        foreach (var n in first.Graph.Node)
        {
            var c = new NodeProto { Name = Rename1(n.Name.Length > 0 ? n.Name : n.OpType), OpType = n.OpType, Domain = n.Domain };
            c.Input.AddRange(n.Input.Select(Rename1));
            c.Output.AddRange(n.Output.Select(Rename1));
            c.Attribute.AddRange(n.Attribute);
            merged.Graph.Node.Add(c);
        }

        foreach (var n in second.Graph.Node)
        {
            var c = new NodeProto { Name = n.Name, OpType = n.OpType, Domain = n.Domain };
            c.Input.AddRange(n.Input.Select(Rename2));
            c.Output.AddRange(n.Output);
            c.Attribute.AddRange(n.Attribute);
            merged.Graph.Node.Add(c);
        }

        firstInitializers = [];
        foreach (var t in first.Graph.Initializer)
        {
            t.Name = Rename1(t.Name);
            firstInitializers.Add(t.Name);
            merged.Graph.Initializer.Add(t);
        }

        merged.Graph.Initializer.AddRange(second.Graph.Initializer);
        foreach (var i in first.Graph.Input)
        {
            merged.Graph.Input.Add(new ValueInfoProto { Name = Rename1(i.Name), Type = i.Type });
        }

        merged.Graph.Output.AddRange(second.Graph.Output);
        return merged;
    }

    private static string ResolveNodeOutput(GraphProto graph, string featureNode, string path)
    {
        if (graph.Node.Any(n => n.Output.Contains(featureNode)))
        {
            return featureNode;
        }

        var byName = graph.Node.FirstOrDefault(n => n.Name == featureNode);
        if (byName is not null)
        {
            return byName.Output[0];
        }

        throw new ArgumentException(
            $"The ONNX model '{path}' has no node or output named '{featureNode}'. Node names include: " +
            $"{string.Join(", ", graph.Node.TakeLast(12).Select(n => $"{n.Name} ({n.OpType})"))}.", nameof(featureNode));
    }

    private static InputSpec DefaultSpec(IReadOnlyList<long>? shape)
    {
        var h = shape is { Count: 4 } && shape[2] > 0 ? (int)shape[2] : 224;
        var w = shape is { Count: 4 } && shape[3] > 0 ? (int)shape[3] : 224;
        return InputSpec.ImageNet(224).WithSize(w, h);
    }

    /// <summary>Runs one zero image through the module to learn the feature length.</summary>
    internal static int FeatureSize(nn.Module<Tensor, Tensor> module, InputSpec spec)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var wasTraining = module.training;
        module.eval();
        var features = module.forward(zeros(1, 3, spec.Height, spec.Width));
        if (wasTraining)
        {
            module.train();
        }

        if (features.dim() != 2)
        {
            throw new InvalidDataException($"The feature output has shape [{string.Join(", ", features.shape)}]; expected [N, features].");
        }

        return (int)features.shape[1];
    }
}
