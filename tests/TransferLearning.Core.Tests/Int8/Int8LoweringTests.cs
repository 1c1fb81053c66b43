using Onnx;
using TransferLearning.Backbones;
using TransferLearning.Backbones.Onnx;
using TransferLearning.Core.Tests.Onnx;
using TransferLearning.Datasets;
using static TorchSharp.torch;
using static TransferLearning.Core.Tests.Onnx.OnnxModelBuilder;

namespace TransferLearning.Core.Tests.Int8;

/// <summary>What the int8 lowering does with the operators MobileNet and EfficientNet graphs hold.</summary>
public sealed class Int8LoweringTests
{
    /// <summary>
    /// A MobileNet-like graph (opset 17, 3×32×32): zero Pad (0, 1) → Conv 3×3 s2 + BN + Clip(0, 6) → depthwise Conv + BN +
    /// Clip(0, 6) → Conv 1×1 + BN → Conv 1×1 + BN + HardSwish → squeeze-excitation (GlobalAveragePool → Conv 1×1 → Relu →
    /// Conv 1×1 → HardSigmoid → Mul) → Conv 1×1 + BN → Add (residual) → Conv 3×3 s2 with pads (0, 0, 1, 1) → Sigmoid·x
    /// (SiLU) → GlobalAveragePool → Flatten: 16 features.
    /// </summary>
    internal static ModelProto MobileNetLikeModel()
    {
        var b = new OnnxModelBuilder(17, [1, 3, 32, 32], seed: 4);
        string Bn(string x, long c) => b.Node("BatchNormalization", [x, b.Positive(c), b.Weight(c), b.Weight(c), b.Positive(c)], Fl("epsilon", 1e-3f));
        string Clip6(string x) => b.Node("Clip", [x, b.Floats([], 0f), b.Floats([], 6f)]);
        var padded = b.Node("Pad", ["x", b.Ints(0, 0, 0, 0, 0, 0, 1, 1)]);
        var stem = Clip6(Bn(b.Node("Conv", [padded, b.Weight(16, 3, 3, 3)], Is("kernel_shape", 3, 3), Is("strides", 2, 2)), 16));
        var depthwise = Clip6(Bn(b.Node("Conv", [stem, b.Weight(16, 1, 3, 3)], Is("kernel_shape", 3, 3), Is("pads", 1, 1, 1, 1), I("group", 16)), 16));
        var project = Bn(b.Node("Conv", [depthwise, b.Weight(8, 16, 1, 1)], Is("kernel_shape", 1, 1)), 8);
        var expand = b.Node("HardSwish", [Bn(b.Node("Conv", [project, b.Weight(16, 8, 1, 1)], Is("kernel_shape", 1, 1)), 16)]);
        var squeezed = b.Node("GlobalAveragePool", [expand]);
        var fc1 = b.Node("Relu", [b.Node("Conv", [squeezed, b.Weight(4, 16, 1, 1), b.Weight(4)], Is("kernel_shape", 1, 1))]);
        var gate = b.Node("HardSigmoid", [b.Node("Conv", [fc1, b.Weight(16, 4, 1, 1), b.Weight(16)], Is("kernel_shape", 1, 1))], Fl("alpha", 1f / 6), Fl("beta", 0.5f));
        var excited = b.Node("Mul", [expand, gate]);
        var residual = b.Node("Add", [Bn(b.Node("Conv", [excited, b.Weight(8, 16, 1, 1)], Is("kernel_shape", 1, 1)), 8), project]);
        var last = b.Node("Conv", [residual, b.Weight(16, 8, 3, 3), b.Weight(16)], Is("kernel_shape", 3, 3), Is("strides", 2, 2), Is("pads", 0, 0, 1, 1));
        var silu = b.Node("Mul", [last, b.Node("Sigmoid", [last])]);
        b.Output(b.Node("Flatten", [b.Node("GlobalAveragePool", [silu])], I("axis", 1)));
        return b.Model;
    }

    /// <summary>A backbone running <see cref="MobileNetLikeModel"/> (3×32×32 in 0..1 → 16 features).</summary>
    internal static Backbone MobileNetLike() =>
        new("test:mobilenet-like", new OnnxGraphModule(MobileNetLikeModel(), "mobilenet-like.onnx") { FlattenOutput = true }, 16, new InputSpec(32, 32, 0f, 1f));

    private static Tensor Images(int count, ulong seed)
    {
        using var generator = new Generator(seed, CPU);
        return rand([count, 3, 32, 32], generator: generator);
    }

    [Theory]
    [InlineData(Int8Kernels.SevenBit)]
    [InlineData(Int8Kernels.EightBit)]
    public void QuantizeInt8_MobileNetLikeOperators_RunsConvolutionsInInt8AndTheRestInFloat(int levels)
    {
        using var range = Int8Kernels.Force(levels);
        using var backbone = MobileNetLike();
        backbone.Freeze();
        backbone.SetTrainingMode(false);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var images = Images(16, 5);
        var reference = backbone.Forward(images);

        backbone.QuantizeInt8([Images(16, 1), Images(16, 2)]);
        var int8 = backbone.Forward(images);

        var graph = (OnnxGraphModule)backbone.Module;
        var parameters = backbone.Int8Parameters!;
        Assert.Equal(8, graph.ConvCount);
        Assert.Equal(6, graph.Int8ConvCount + parameters.FloatConvs.Count); // all but the two squeeze-excitation convolutions (1×1 maps)
        Assert.True(graph.Int8ConvCount >= 1);
        Assert.Contains(parameters.Activations.Keys, k => k.StartsWith("hardswish", StringComparison.Ordinal)); // HardSwish runs quantized
        Assert.DoesNotContain(parameters.Activations.Keys, k => k.StartsWith("globalaveragepool", StringComparison.Ordinal));
        var cosine = nn.functional.cosine_similarity(int8, reference, 1).min().item<float>();
        Assert.True(cosine >= 0.98f, $"cosine similarity {cosine}");
        Assert.True(((int8 - reference).norm() / reference.norm()).item<float>() > 1e-6f); // quantized, not float
    }

    [Fact]
    public void QuantizeInt8_ClipAfterConvolution_FusedAsReluSixWithZeroPointZero()
    {
        using var backbone = MobileNetLike();
        backbone.Freeze();
        backbone.QuantizeInt8([Images(8, 1)]);

        var clipped = backbone.Int8Parameters!.Activations.Where(kv => kv.Key.StartsWith("clip", StringComparison.Ordinal)).ToList();
        Assert.Equal(2, clipped.Count);
        Assert.All(clipped, kv => Assert.Equal(0, kv.Value.ZeroPoint)); // below 0 saturates to 0: the Clip's lower bound
        Assert.All(clipped, kv => Assert.True(kv.Value.Scale * kv.Value.Levels <= 6.0001, $"{kv.Key}: range up to {kv.Value.Scale * kv.Value.Levels}"));
    }

    /// <summary>
    /// ML.NET's ResNet18 preprocessing in small (opset 9, 3×16×16 in 0..255): Split into channels → Concat as B, R, G (a
    /// rotation, which unlike ML.NET's B, G, R is not its own inverse) → Sub a mean image → Conv 3×3 s2 + BN + Relu → Conv 3×3 + BN + Relu → GlobalAveragePool → Flatten: 8 features.
    /// </summary>
    internal static ModelProto MeanImageModel()
    {
        var b = new OnnxModelBuilder(9, [1, 3, 16, 16], seed: 7);
        var (r, g, bl) = b.NodeN("Split", ["x"], 3, I("axis", 1), Is("split", 1, 1, 1)) is [var x0, var x1, var x2] ? (x0, x1, x2) : default;
        var brg = b.Node("Concat", [bl, r, g], I("axis", 1));
        var mean = b.Floats([1, 3, 16, 16], [.. Enumerable.Range(0, 3 * 16 * 16).Select(i => 100f + (i / 256 * 10f) + (i % 16))]);
        var shifted = b.Node("Sub", [brg, mean]);
        string Bn(string x, long c) => b.Node("BatchNormalization", [x, b.Positive(c), b.Weight(c), b.Weight(c), b.Positive(c)], Fl("epsilon", 1e-5f));
        var c1 = b.Node("Relu", [Bn(b.Node("Conv", [shifted, b.Weight(8, 3, 3, 3)], Is("kernel_shape", 3, 3), Is("strides", 2, 2), Is("pads", 1, 1, 1, 1)), 8)]);
        var c2 = b.Node("Relu", [Bn(b.Node("Conv", [c1, b.Weight(8, 8, 3, 3)], Is("kernel_shape", 3, 3), Is("pads", 1, 1, 1, 1)), 8)]);
        b.Output(b.Node("Flatten", [b.Node("GlobalAveragePool", [c2])], I("axis", 1)));
        return b.Model;
    }

    /// <summary>The same network with an Identity between the Concat and the Sub, so int8 has to run the reordering as written.</summary>
    private static ModelProto WithIdentityAfterConcat(ModelProto model)
    {
        var copy = model.Clone();
        var concat = copy.Graph.Node.Single(n => n.OpType == "Concat");
        copy.Graph.Node.Single(n => n.OpType == "Sub").Input[0] = "reordered_copy";
        copy.Graph.Node.Insert(copy.Graph.Node.IndexOf(concat) + 1, new NodeProto { OpType = "Identity", Name = "copy", Input = { concat.Output[0] }, Output = { "reordered_copy" } });
        return copy;
    }

    [Theory]
    [InlineData(Int8Kernels.SevenBit, false)]
    [InlineData(Int8Kernels.EightBit, false)]
    [InlineData(Int8Kernels.EightBit, true)]
    public void QuantizeInt8_ChannelReorderAndMeanImageBeforeFirstConv_SameFeaturesAsRunningTheReorder(int levels, bool meanIsConstant)
    {
        using var range = Int8Kernels.Force(levels);
        var model = MeanImageModel();
        IReadOnlySet<string>? constants = meanIsConstant ? new HashSet<string> { model.Graph.Node.Single(n => n.OpType == "Sub").Input[1] } : null;
        using var stem = new Backbone("test:mean-image", new OnnxGraphModule(model, "mean-image.onnx", constantInitializers: constants) { FlattenOutput = true }, 8, new InputSpec(16, 16, 0f, 255f));
        using var plain = new Backbone("test:mean-image-copied", new OnnxGraphModule(WithIdentityAfterConcat(model), "mean-image-copied.onnx", constantInitializers: constants) { FlattenOutput = true }, 8, new InputSpec(16, 16, 0f, 255f));
        stem.Freeze();
        stem.SetTrainingMode(false);
        plain.Freeze();
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        using var generator = new Generator(3, CPU);
        var images = rand([6, 3, 16, 16], generator: generator) * 255;
        var reference = stem.Forward(images);

        stem.QuantizeInt8([images]);
        plain.EnableInt8(stem.Int8Parameters!);
        var reordered = stem.Forward(images);
        var asWritten = plain.Forward(images);

        Assert.True(((OnnxGraphModule)stem.Module).Int8StemReordered);
        Assert.False(((OnnxGraphModule)plain.Module).Int8StemReordered);
        Assert.Equal(2, ((OnnxGraphModule)stem.Module).Int8ConvCount);
        Assert.Equal(0, (reordered - asWritten).abs().max().item<float>()); // integer sums: the reordering changes nothing
        var cosine = nn.functional.cosine_similarity(reordered, reference, 1).min().item<float>();
        Assert.True(cosine >= 0.99f, $"cosine similarity {cosine}");
    }

    [Fact]
    public void EnableInt8_ParametersOfAnotherNetwork_ThrowsSayingSo()
    {
        using var backbone = MobileNetLike();
        backbone.Freeze();
        var foreign = new Int8Parameters(new Dictionary<string, ActivationQuantization> { ["conv_999_out0"] = new(0.1, 0) }, new Dictionary<string, float[]>(), new HashSet<string>());

        var e = Assert.Throws<InvalidDataException>(() => backbone.EnableInt8(foreign));

        Assert.Equal("None of the 1 int8 activation scales names a value this graph runs in int8 (e.g. 'conv_999_out0'): they were calibrated for another network.", e.Message);
    }
}
