using Onnx;
using TransferLearning.Backbones;
using TransferLearning.Backbones.Onnx;
using TransferLearning.Datasets;
using TransferLearning.Models;
using static TorchSharp.torch;
using static TransferLearning.Core.Tests.Onnx.OnnxModelBuilder;

namespace TransferLearning.Core.Tests.Onnx;

public sealed class Int8Tests
{
    private const string Source = "test:tiny-onnx";

    /// <summary>
    /// A small ResNet-like ONNX graph: Conv(pads 1,1,0,0 as CNTK writes)+BN+Relu → MaxPool → Conv+BN → Add(residual)
    /// → Relu → GlobalAveragePool → Flatten: 8 features from 3×32×32 images in 0..1.
    /// </summary>
    internal static Backbone TinyOnnx(int seed = 11)
    {
        var module = new OnnxGraphModule(TinyOnnxModel(seed), "tiny.onnx") { FlattenOutput = true };
        return new Backbone(Source, module, 8, new InputSpec(32, 32, 0f, 1f));
    }

    /// <summary>The graph of <see cref="TinyOnnx"/>.</summary>
    internal static ModelProto TinyOnnxModel(int seed = 11)
    {
        var b = new OnnxModelBuilder(9, [1, 3, 32, 32], seed);
        var c1 = b.Node("Conv", ["x", b.Weight(8, 3, 3, 3), b.Weight(8)], Is("kernel_shape", 3, 3), Is("strides", 2, 2), Is("pads", 1, 1, 0, 0));
        var n1 = b.Node("BatchNormalization", [c1, b.Positive(8), b.Weight(8), b.Weight(8), b.Positive(8)], Fl("epsilon", 1e-5f));
        var r1 = b.Node("Relu", [n1]);
        var m = b.Node("MaxPool", [r1], Is("kernel_shape", 3, 3), Is("strides", 2, 2), Is("pads", 1, 1, 1, 1));
        var c2 = b.Node("Conv", [m, b.Weight(8, 8, 3, 3)], Is("kernel_shape", 3, 3), Is("pads", 1, 1, 1, 1));
        var n2 = b.Node("BatchNormalization", [c2, b.Positive(8), b.Weight(8), b.Weight(8), b.Positive(8)], Fl("epsilon", 1e-5f));
        var sum = b.Node("Add", [n2, m]);
        var r2 = b.Node("Relu", [sum]);
        var pooled = b.Node("GlobalAveragePool", [r2]);
        b.Output(b.Node("Flatten", [pooled], I("axis", 1)));
        return ModelProto.Parser.ParseFrom(b.Bytes());
    }

    private static Tensor Images(int count, ulong seed)
    {
        using var generator = new Generator(seed, CPU);
        return rand([count, 3, 32, 32], generator: generator);
    }

    [Fact]
    public void QuantizeInt8_FrozenOnnxBackbone_RunsConvolutionsInInt8CloseToFloat()
    {
        using var backbone = TinyOnnx();
        backbone.Freeze();
        backbone.SetTrainingMode(false);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var images = Images(16, 5);
        var reference = backbone.Forward(images);

        backbone.QuantizeInt8([Images(16, 1), Images(16, 2)]);
        var int8 = backbone.Forward(images);

        Assert.True(backbone.IsInt8);
        Assert.Equal(2, ((OnnxGraphModule)backbone.Module).Int8ConvCount);
        Assert.Equal(reference.shape, int8.shape);
        var relative = ((int8 - reference).norm() / reference.norm()).item<float>();
        Assert.InRange(relative, 1e-6f, 0.1f); // quantized (not bit-equal), yet close
        var cosine = nn.functional.cosine_similarity(int8, reference, 1).min().item<float>();
        Assert.True(cosine > 0.99f, $"cosine similarity {cosine}");
    }

    [Fact]
    public void Unfreeze_Int8Backbone_ReturnsToFloat()
    {
        using var backbone = TinyOnnx();
        backbone.Freeze();
        backbone.SetTrainingMode(false);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var images = Images(4, 5);
        var reference = backbone.Forward(images).data<float>().ToArray();
        backbone.QuantizeInt8([Images(8, 1)]);

        backbone.Unfreeze();
        backbone.Freeze();
        backbone.SetTrainingMode(false);

        Assert.False(backbone.IsInt8);
        Assert.Equal(reference, backbone.Forward(images).data<float>().ToArray());
    }

    [Fact]
    public void QuantizeInt8_UnfrozenBackbone_ThrowsAskingToFreeze()
    {
        using var backbone = TinyOnnx();
        var ex = Assert.Throws<InvalidOperationException>(() => backbone.QuantizeInt8([Images(2, 1)]));
        Assert.Equal("Int8 inference needs a frozen backbone: call Freeze() first ('test:tiny-onnx' has trainable weights).", ex.Message);
    }

    [Fact]
    public void QuantizeInt8_NoCalibrationBatches_ThrowsNamingTheArgument()
    {
        using var backbone = TinyOnnx();
        backbone.Freeze();
        var ex = Assert.Throws<ArgumentException>(() => backbone.QuantizeInt8([]));
        Assert.StartsWith("Calibration needs at least one batch of images.", ex.Message, StringComparison.Ordinal);
        Assert.False(backbone.IsInt8);
    }

    [Fact]
    public void QuantizeInt8_NonOnnxBackbone_ThrowsNotSupported()
    {
        using var backbone = TestBackbones.Tiny();
        backbone.Freeze();
        var ex = Assert.Throws<NotSupportedException>(() => backbone.QuantizeInt8([Images(2, 1)]));
        Assert.Equal("Int8 inference is available for backbones imported from ONNX (such as 'resnet18'); 'test:tiny' is a Sequential.", ex.Message);
        Assert.False(backbone.SupportsInt8);
    }

    [Fact]
    public void WithInt8Backbone_NonOnnxBackbone_ThrowsWhenAdded()
    {
        using var learner = TransferLearner.From(TestBackbones.Tiny());
        var ex = Assert.Throws<NotSupportedException>(() => learner.WithInt8Backbone());
        Assert.Equal("Int8 inference is available for backbones imported from ONNX (such as 'resnet18'); 'test:tiny' is not one.", ex.Message);
    }

    [Fact]
    public void CalibrationSamples_ClassSortedTrainingSet_TakesEveryClassEvenly()
    {
        var samples = Enumerable.Range(0, 300).Select(i => new ImageSample($"img{i:D3}.jpg", i / 100)).ToList();

        var picked = TransferLearning.Training.FitRun.CalibrationSamples(samples, 30).ToList();

        Assert.Equal(30, picked.Distinct().Count());
        Assert.Equal([10, 10, 10], picked.GroupBy(p => p.Label).Select(g => g.Count()));
        Assert.Equal("img000.jpg", picked[0].Path);
        Assert.Equal("img290.jpg", picked[^1].Path);
        Assert.Equal(samples.Take(3), TransferLearning.Training.FitRun.CalibrationSamples(samples.Take(3).ToList(), 3));
    }

    [Fact]
    public void Fit_Int8WithUnfrozenBackbone_ThrowsAskingToFreeze()
    {
        using var images = new GeneratedImages();
        var split = ImageFolder.Load(images.Root).Split(0.7, seed: 1);
        using var learner = TransferLearner.From(TinyOnnx()).Unfreeze().AddHead(split.Classes).WithInt8Backbone();
        var ex = Assert.Throws<InvalidOperationException>(() => learner.Fit(split, 1));
        Assert.Equal("Int8Backbone needs a frozen backbone: call Freeze() before Fit (fine-tuning trains unfrozen layers in float).", ex.Message);
    }

    [Fact]
    public void Fit_Int8Backbone_SavedModelReloadsInInt8WithSamePredictions()
    {
        using var images = new GeneratedImages();
        var split = ImageFolder.Load(images.Root).Split(0.7, seed: 1);
        var path = Path.Combine(images.Root, "int8.tlm");
        var files = split.Validation.Samples.Select(s => s.Path).ToList();

        using var learner = TransferLearner.From(TinyOnnx()).Freeze().AddHead(split.Classes).WithInt8Backbone().WithSeed(3);
        var (model, history) = learner.Fit(split, 3);
        Assert.True(model.Backbone.IsInt8);
        Assert.Equal(3, history.Epochs.Count);
        var before = model.Predict(files);
        model.Save(path);

        using var loaded = TrainedModel.Load(path);
        Assert.True(loaded.Backbone.IsInt8);
        var after = loaded.Predict(files);
        Assert.Equal(before.Select(p => p.Probabilities.ToArray()), after.Select(p => p.Probabilities.ToArray()));

        // Fine-tuning from it trains in float, once Fit runs (Unfreeze alone changes nothing).
        using (var tuner = TransferLearner.From(loaded).Unfreeze())
        {
            Assert.True(loaded.Backbone.IsInt8);
            tuner.WithLearningRate(1e-4).Fit(split, 1);
        }

        Assert.False(loaded.Backbone.IsInt8);
        Assert.False(loaded.Backbone.IsFrozen);
        model.Dispose();
    }
}
