using TorchSharp;
using TransferLearning.Backbones;
using TransferLearning.Backbones.Onnx;
using static TransferLearning.Core.Tests.Onnx.OnnxModelBuilder;

namespace TransferLearning.Core.Tests.Onnx;

public class OnnxBackboneTrainingTests
{
    private static Backbone TinyBackbone()
    {
        var b = new OnnxModelBuilder(13, [1, 3, 8, 8]);
        var c1 = b.Node("Conv", ["x", b.Weight(4, 3, 3, 3), b.Weight(4)], Is("pads", 1, 1, 1, 1));
        var bn = b.Node("BatchNormalization", [c1, b.Positive(4), b.Weight(4), b.Weight(4), b.Positive(4)]);
        var r = b.Node("Relu", [bn]);
        var c2 = b.Node("Conv", [r, b.Weight(6, 4, 3, 3)], Is("strides", 2, 2));
        var gap = b.Node("GlobalAveragePool", [c2]);
        var f = b.Node("Flatten", [gap]);
        b.Output(b.Node("Softmax", [b.Node("Gemm", [f, b.Weight(3, 6), b.Weight(3)], I("transB", 1))]));
        var path = Path.Combine(Path.GetTempPath(), $"tl-tiny-{Guid.NewGuid():N}.onnx");
        File.WriteAllBytes(path, b.Bytes());
        try
        {
            return OnnxBackboneLoader.Load(path, "tiny.onnx", null, null);
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static float[] Snapshot(torch.nn.Module m) =>
        m.parameters().SelectMany(p => p.detach().flatten().data<float>().ToArray()).ToArray();

    private static void Step(Backbone backbone)
    {
        using var scope = torch.NewDisposeScope();
        var trainable = backbone.Module.parameters().Where(p => p.requires_grad).ToList();
        backbone.SetTrainingMode(true);
        var x = torch.randn(4, 3, 8, 8, generator: new torch.Generator(5));
        var loss = backbone.Forward(x).pow(2).sum();
        if (trainable.Count > 0)
        {
            using var opt = torch.optim.SGD(trainable, 0.1);
            opt.zero_grad();
            loss.backward();
            opt.step();
        }
    }

    [Fact]
    public void Load_ClassifierGraph_CutsBeforeGemmWithOneBlockPerWeightedNode()
    {
        using var backbone = TinyBackbone();
        Assert.Equal(6, backbone.FeatureSize);
        Assert.Equal(new[] { "conv_2", "batchnormalization_7", "conv_10" }, backbone.Blocks);
        Assert.Equal(8, backbone.InputSpec.Width);
    }

    [Fact]
    public void OptimizerStep_Unfrozen_ChangesWeightsAndBatchNormStatistics()
    {
        using var backbone = TinyBackbone();
        backbone.Unfreeze();
        var before = Snapshot(backbone.Module);
        var statsBefore = backbone.Module.buffers().SelectMany(t => t.data<float>().ToArray()).ToArray();
        Step(backbone);
        Assert.NotEqual(before, Snapshot(backbone.Module));
        Assert.NotEqual(statsBefore, backbone.Module.buffers().SelectMany(t => t.data<float>().ToArray()).ToArray());
    }

    [Fact]
    public void OptimizerStep_Frozen_ChangesNothing()
    {
        using var backbone = TinyBackbone();
        backbone.Freeze();
        var before = Snapshot(backbone.Module);
        var statsBefore = backbone.Module.buffers().SelectMany(t => t.data<float>().ToArray()).ToArray();
        Step(backbone);
        Assert.Equal(before, Snapshot(backbone.Module));
        Assert.Equal(statsBefore, backbone.Module.buffers().SelectMany(t => t.data<float>().ToArray()).ToArray());
    }

    [Fact]
    public void OptimizerStep_UnfreezeFromLastBlock_TrainsOnlyThatBlock()
    {
        using var backbone = TinyBackbone();
        backbone.Freeze();
        backbone.Unfreeze("conv_10");
        var named = backbone.Module.named_children().ToDictionary(c => c.name, c => Snapshot(c.module));
        Step(backbone);
        Assert.Equal(named["conv_2"], Snapshot(backbone.Module.named_children().First(c => c.name == "conv_2").module));
        Assert.NotEqual(named["conv_10"], Snapshot(backbone.Module.named_children().First(c => c.name == "conv_10").module));
    }

    [Fact]
    public void Load_FeatureNodeGiven_CutsThere()
    {
        var b = new OnnxModelBuilder(13, [1, 3, 8, 8]);
        var c1 = b.Node("Conv", ["x", b.Weight(4, 3, 3, 3)]);
        b.Output(b.Node("GlobalAveragePool", [b.Node("Relu", [c1])]));
        var path = Path.Combine(Path.GetTempPath(), $"tl-cut-{Guid.NewGuid():N}.onnx");
        File.WriteAllBytes(path, b.Bytes());
        try
        {
            using var backbone = OnnxBackboneLoader.Load(path, "cut.onnx", "conv_1", null);
            Assert.Equal(4 * 6 * 6, backbone.FeatureSize);
            var ex = Assert.Throws<ArgumentException>(() => OnnxBackboneLoader.Load(path, "cut.onnx", "nope", null));
            Assert.StartsWith($"The ONNX model '{path}' has no node or output named 'nope'.", ex.Message, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Forward_FrozenInEvalMode_FoldsConvBatchNormAndMatchesUnfolded()
    {
        using var backbone = TinyBackbone();
        using var scope = torch.NewDisposeScope();
        using var generator = new torch.Generator(9, torch.CPU);
        var x = torch.randn(2, 3, 8, 8, generator: generator);
        var conv = backbone.Module.named_children().Select(c => c.module).OfType<OnnxNodeModule>().First();
        backbone.SetTrainingMode(false);
        var unfolded = backbone.Forward(x); // trainable weights: BatchNormalization runs as its own op
        Assert.Null(conv.Folded);

        backbone.Freeze();
        backbone.SetTrainingMode(false);
        var folded = backbone.Forward(x);

        Assert.NotNull(conv.Folded);
        Assert.True(folded.allclose(unfolded, 1e-5, 1e-6));
        backbone.Unfreeze();
        backbone.Forward(x);
        Assert.Null(conv.Folded); // trainable again: the folded copy is dropped
    }
}
