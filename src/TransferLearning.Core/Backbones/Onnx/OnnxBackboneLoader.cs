using TransferLearning.Datasets;
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
    public static OnnxModel Read(string path)
    {
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"The ONNX model file '{path}' does not exist.", path);
        }

        var bytes = File.ReadAllBytes(path);
        if (NotOnnx(bytes) is { } problem)
        {
            throw ModelFormat.Error($"'{path}' is not an ONNX model: {problem}.");
        }

        OnnxModel model;
        try
        {
            model = OnnxModel.Parse(bytes);
        }
        catch (Google.Protobuf.InvalidProtocolBufferException ex)
        {
            throw ModelFormat.Error($"'{path}' is not a valid ONNX model (protobuf parse failed: {ex.Message}).", ex);
        }

        if (model.Graph.Nodes.Count == 0 || model.Graph.Outputs.Count == 0)
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
    public static string FindFeatureOutput(OnnxGraph graph)
    {
        var producers = new Dictionary<string, OnnxNode>();
        foreach (var n in graph.Nodes)
        {
            foreach (var o in n.Outputs)
            {
                producers[o] = n;
            }
        }

        var initializers = graph.Initializers.Select(i => i.Name).ToHashSet();
        var output = graph.Outputs[0].Name;
        var current = output;
        for (var guard = 0; guard < 16 && producers.TryGetValue(current, out var node); guard++)
        {
            if (node.OpType is "Gemm" or "MatMul")
            {
                return node.Inputs[0];
            }

            if (!PassThroughOps.Contains(node.OpType))
            {
                break;
            }

            var data = node.Inputs.FirstOrDefault(i => i.Length > 0 && !initializers.Contains(i));
            if (data is null)
            {
                break;
            }

            current = data;
        }

        return output;
    }

    /// <summary>Loads an ONNX classification or feature model as a backbone.</summary>
    public static Backbone Load(string path, string source, string? featureNode, InputSpec? inputSpec) =>
        ReleasingParse(() => LoadCore(path, source, featureNode, inputSpec));

    /// <summary>Loads the preprocessing graph and the ResNet18 graph of ML.NET's DnnImageFeaturizer as one backbone.</summary>
    public static Backbone LoadResNet18(string preprocessPath, string resnetPath, string source, InputSpec? inputSpec) =>
        ReleasingParse(() => LoadResNet18Core(preprocessPath, resnetPath, source, inputSpec));

    /// <summary>
    /// Runs an import, then returns the parse's managed memory to the OS: parsing ResNet18 allocates ~0.7 GB of
    /// short-lived arrays (protobuf bytes, float copies) that the GC would otherwise keep committed for the whole run
    /// (fit bench, 100 images per class: peak 1043 MiB without this, 764 MiB with one full collection after loading).
    /// </summary>
    private static Backbone ReleasingParse(Func<Backbone> load)
    {
        var backbone = load();
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        return backbone;
    }

    private static Backbone LoadCore(string path, string source, string? featureNode, InputSpec? inputSpec)
    {
        var model = Read(path);
        var output = featureNode is null ? FindFeatureOutput(model.Graph) : ResolveNodeOutput(model.Graph, featureNode, path);
        var module = new OnnxGraphModule(model, Path.GetFileName(path), outputName: output) { FlattenOutput = true };
        try
        {
            var spec = inputSpec ?? DefaultSpec(module.InputShape);
            return new Backbone(source, module, FeatureSize(module, spec), spec);
        }
        catch
        {
            module.Dispose();
            throw;
        }
    }

    private static Backbone LoadResNet18Core(string preprocessPath, string resnetPath, string source, InputSpec? inputSpec)
    {
        var prep = Read(preprocessPath);
        var net = Read(resnetPath);
        var merged = Chain(prep, net, out var frozen);
        var module = new OnnxGraphModule(merged, Path.GetFileName(resnetPath), constantInitializers: frozen) { FlattenOutput = true };
        try
        {
            var spec = inputSpec ?? new InputSpec(224, 224, 0f, 255f, ChannelOrder.Rgb);
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
    internal static OnnxModel Chain(OnnxModel first, OnnxModel second, out HashSet<string> firstInitializers)
    {
        const string P1 = "pre_";
        var merged = new OnnxModel { IrVersion = Math.Max(first.IrVersion, second.IrVersion), Graph = new OnnxGraph { Name = second.Graph.Name } };
        merged.OpsetImports.Add(("", Math.Max(first.Opset, second.Opset)));
        var secondInput = second.Graph.Inputs.First(i => second.Graph.Initializers.All(t => t.Name != i.Name)).Name;
        var firstOutput = P1 + first.Graph.Outputs[0].Name;
        string Rename1(string n) => n.Length == 0 ? n : P1 + n;
        string Rename2(string n) => n == secondInput ? firstOutput : n;
        foreach (var n in first.Graph.Nodes)
        {
            var c = new OnnxNode { Name = Rename1(n.Name.Length > 0 ? n.Name : n.OpType), OpType = n.OpType, Domain = n.Domain };
            c.Inputs.AddRange(n.Inputs.Select(Rename1));
            c.Outputs.AddRange(n.Outputs.Select(Rename1));
            c.Attributes.AddRange(n.Attributes);
            merged.Graph.Nodes.Add(c);
        }

        foreach (var n in second.Graph.Nodes)
        {
            var c = new OnnxNode { Name = n.Name, OpType = n.OpType, Domain = n.Domain };
            c.Inputs.AddRange(n.Inputs.Select(Rename2));
            c.Outputs.AddRange(n.Outputs);
            c.Attributes.AddRange(n.Attributes);
            merged.Graph.Nodes.Add(c);
        }

        firstInitializers = [];
        foreach (var t in first.Graph.Initializers)
        {
            t.Name = Rename1(t.Name);
            firstInitializers.Add(t.Name);
            merged.Graph.Initializers.Add(t);
        }

        merged.Graph.Initializers.AddRange(second.Graph.Initializers);
        foreach (var i in first.Graph.Inputs)
        {
            merged.Graph.Inputs.Add(new OnnxValueInfo { Name = Rename1(i.Name), ElemType = i.ElemType, Shape = i.Shape });
        }

        merged.Graph.Outputs.AddRange(second.Graph.Outputs);
        return merged;
    }

    private static string ResolveNodeOutput(OnnxGraph graph, string featureNode, string path)
    {
        if (graph.Nodes.Any(n => n.Outputs.Contains(featureNode)))
        {
            return featureNode;
        }

        var byName = graph.Nodes.FirstOrDefault(n => n.Name == featureNode);
        if (byName is not null)
        {
            return byName.Outputs[0];
        }

        throw new ArgumentException(
            $"The ONNX model '{path}' has no node or output named '{featureNode}'. Node names include: " +
            $"{string.Join(", ", graph.Nodes.TakeLast(12).Select(n => $"{n.Name} ({n.OpType})"))}.", nameof(featureNode));
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
