using TransferLearning.Backbones;
using TransferLearning.Datasets;
using TransferLearning.Training;
using static TorchSharp.torch;

namespace TransferLearning.Core.Tests.Training;

/// <summary><see cref="TransferLearner.WithStandardizedFeatures"/>: the statistics, the fold into the head, and what a fit does with it.</summary>
public sealed class FeatureStandardizationTests : IClassFixture<GeneratedImages>
{
    private readonly DatasetSplit _data;

    public FeatureStandardizationTests(GeneratedImages images) => _data = ImageFolder.Load(images.Root).Split(0.7, seed: 42);

    [Fact]
    public void Apply_TrainingFeatures_ZeroMeanUnitVariance()
    {
        using var scope = NewDisposeScope();
        var generator = new Generator(3, CPU);
        var views = new[] { (rand([40, 6], generator: generator) * 100) + 7, (rand([20, 6], generator: generator) * 100) + 7 };
        using var standardization = FeatureStandardization.Of(views);

        foreach (var v in views)
        {
            standardization.Apply(v);
        }

        var all = cat(views, 0).to(float64);
        Assert.True(all.mean([0]).abs().max().item<double>() < 1e-5);
        Assert.True((all.var(0, unbiased: false) - 1).abs().max().item<double>() < 1e-4);
    }

    [Fact]
    public void Apply_FeatureConstantInTraining_OnlyCentredAndFinite()
    {
        using var scope = NewDisposeScope();
        var training = stack([full(10, 4f), arange(10, dtype: float32)], 1); // feature 0 is always 4
        using var standardization = FeatureStandardization.Of([training]);
        var later = tensor(new float[] { 6, 3 }).reshape(1, 2);

        standardization.Apply(later);

        Assert.Equal(1f, standardization.Scale[0].item<float>());
        Assert.Equal(2f, later[0, 0].item<float>());
        Assert.True(float.IsFinite(later[0, 1].item<float>()));
    }

    [Fact]
    public void FoldInto_HeadOnRawFeatures_SameLogitsAsOnStandardized()
    {
        using var scope = NewDisposeScope();
        var generator = new Generator(4, CPU);
        var features = (rand([30, 8], generator: generator) * 50) - 3;
        using var standardization = FeatureStandardization.Of([features]);
        var standardized = features.clone();
        standardization.Apply(standardized);
        var head = nn.Sequential(("dense0", nn.Linear(8, 5)), ("relu0", nn.ReLU()), ("logits", nn.Linear(5, 3)));
        var before = TestBackbones.Weights(head);
        var expected = head.forward(standardized).detach();

        standardization.FoldInto(head);
        var actual = head.forward(features).detach();
        standardization.UnfoldFrom(head);

        Onnx.OrtReference.AssertClose(expected.data<float>().ToArray(), actual.data<float>().ToArray(), 1e-4, "folded head");
        foreach (var (name, values) in TestBackbones.Weights(head))
        {
            Onnx.OrtReference.AssertClose(before[name], values, 1e-4, "unfolded " + name);
        }
    }

    [Fact]
    public void Fit_FeaturesScaledAndShifted_SameHistory()
    {
        var shift = Enumerable.Range(0, 8).Select(i => (float)(i * 40 - 100)).ToArray();
        var (plain, plainHistory) = Learner(scale: 1, shift: null).WithStandardizedFeatures().Fit(_data, 3);
        var (moved, movedHistory) = Learner(scale: 1000, shift).WithStandardizedFeatures().Fit(_data, 3);
        var (raw, rawHistory) = Learner(scale: 1000, shift).Fit(_data, 3);
        using (plain)
        using (moved)
        using (raw)
        {
            foreach (var key in new[] { History.Loss, History.ValLoss })
            {
                Onnx.OrtReference.AssertClose([.. plainHistory[key].Select(x => (float)x)], [.. movedHistory[key].Select(x => (float)x)], 1e-3, key);
            }

            // Without standardisation the same features train differently.
            Assert.True(Math.Abs(rawHistory[History.Loss][0] - plainHistory[History.Loss][0]) > 1e-2,
                $"raw {string.Join(" ", rawHistory[History.Loss])} / standardized {string.Join(" ", plainHistory[History.Loss])}");
        }
    }

    [Fact]
    public void Fit_Standardized_ModelOnRawImagesMatchesTheFitsValidation()
    {
        var result = Learner(scale: 1000, shift: null).WithStandardizedFeatures().Fit(_data, 3);
        using var model = result.Model;

        var evaluation = model.Evaluate(_data.Validation);

        Assert.Equal(result.ValidationEvaluation!.Accuracy, evaluation.Accuracy);
        Assert.Equal(result.ValidationEvaluation.Loss, evaluation.Loss, 1e-4);
        Assert.Equal(result.History[History.ValLoss][^1], evaluation.Loss, 1e-4);
    }

    [Fact]
    public void Fit_ContinuedModelWithStandardization_HeadKeepsWhatItComputed()
    {
        var (model, _) = Learner(scale: 1000, shift: null).Fit(_data, 2);
        using (model)
        {
            var before = TestBackbones.Weights(model.Head);

            TransferLearner.From(model).Freeze().WithStandardizedFeatures().WithLearningRate(1e-12).Fit(_data, 1);

            foreach (var (name, values) in TestBackbones.Weights(model.Head))
            {
                Onnx.OrtReference.AssertClose(before[name], values, 1e-3, name);
            }
        }
    }

    [Fact]
    public void Fit_StandardizedWithTrainableBackbone_ThrowsWithWhatToDo()
    {
        using var learner = Learner(scale: 1, shift: null).Unfreeze().WithStandardizedFeatures();

        var e = Assert.Throws<InvalidOperationException>(() => learner.Fit(_data, 1));

        Assert.Equal(
            "WithStandardizedFeatures() needs cached features: freeze the backbone, keep the feature cache on and use no augmentation " +
            "other than cached views, or remove WithStandardizedFeatures().",
            e.Message);
    }

    [Fact]
    public void FineTune_Standardized_HeadPhaseStandardizesAndBackbonePhaseRuns()
    {
        var result = Learner(scale: 1000, shift: null).WithStandardizedFeatures().FineTune(_data, epochs: 1, freezeEpochs: 1);
        using var model = result.Model;

        Assert.Equal(2, result.History.Epochs.Count);
        Assert.Equal(result.ValidationEvaluation!.Accuracy, model.Evaluate(_data.Validation).Accuracy);
    }

    /// <summary>The tiny test backbone with its features multiplied by <paramref name="scale"/> and shifted per feature, head added, frozen.</summary>
    private TransferLearner Learner(float scale, float[]? shift)
    {
        var tiny = TestBackbones.Tiny();
        var backbone = new Backbone(TestBackbones.TinySource, new AffineFeatures(tiny.Module, scale, shift ?? new float[8]), 8, tiny.InputSpec);
        return TransferLearner.From(backbone).WithLearningRate(0.05).WithBatchSize(4).AddHead(_data.Classes).Freeze();
    }

    /// <summary>An inner module's output times a scale plus a per-feature shift.</summary>
    private sealed class AffineFeatures : nn.Module<Tensor, Tensor>
    {
#pragma warning disable IDE1006 // TorchSharp names the submodule after this field.
        private readonly nn.Module<Tensor, Tensor> inner;
#pragma warning restore IDE1006
        private readonly float _scale;
        private readonly float[] _shift;

        public AffineFeatures(nn.Module<Tensor, Tensor> inner, float scale, float[] shift)
            : base("affine")
        {
            this.inner = inner;
            _scale = scale;
            _shift = shift;
            RegisterComponents();
        }

        public override Tensor forward(Tensor input)
        {
            using var shift = tensor(_shift).to(input.device);
            return (inner.forward(input) * _scale) + shift;
        }
    }
}
