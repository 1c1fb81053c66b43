using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using TransferLearning.Backbones;
using TransferLearning.Datasets;
using TransferLearning.Models;
using TransferLearning.Training;
using TransferLearning.Core.Tests.Training;
using static TorchSharp.torch;

namespace TransferLearning.Core.Tests.Learner;

public sealed class TransferLearnerTests : IClassFixture<GeneratedImages>, IDisposable
{
    private readonly GeneratedImages _images;
    private readonly DatasetSplit _data;
    private readonly string _scratch = Directory.CreateTempSubdirectory("tl-learner-").FullName;

    public TransferLearnerTests(GeneratedImages images)
    {
        _images = images;
        _data = ImageFolder.Load(images.Root).Split(0.7, seed: 42);
    }

    public void Dispose() => Directory.Delete(_scratch, recursive: true);

    private static TransferLearner Tiny(Action<CountingModule>? onCount = null)
    {
        var learner = TestBackbones.TinyLearner(out var counter);
        onCount?.Invoke(counter);
        return learner;
    }

    [Fact]
    public void Fit_FrozenTinyBackbone_DeconstructsIntoModelAndHistory()
    {
        var (model, history) = Tiny().Freeze().AddHead(_data.Classes).Fit(_data, epochs: 3);
        using (model)
        {
            Assert.Equal(3, history.Count);
            Assert.Same(model.History, history);
            Assert.Equal(["blue", "red"], model.Classes);
            Assert.All(history.Epochs, e => Assert.True(e.BackboneFrozen));
            Assert.False(double.IsNaN(history[History.ValAccuracy][^1]));
        }
    }

    [Fact]
    public void Fit_FrozenWithoutAugmentation_BackboneRunsOncePerImage()
    {
        CountingModule counter = null!;
        var (model, _) = Tiny(c => counter = c).Freeze().AddHead(_data.Classes).Fit(_data, epochs: 4);
        using (model)
        {
            Assert.Equal(_data.Train.Count + _data.Validation.Count, counter.Images);
        }
    }

    [Fact]
    public void Fit_WithAugmentation_BackboneRunsEveryEpoch()
    {
        CountingModule counter = null!;
        var (model, _) = Tiny(c => counter = c).Freeze().AddHead(_data.Classes)
            .WithAugmentation(new Augmentation { HorizontalFlip = true }).Fit(_data, epochs: 2);
        using (model)
        {
            Assert.Equal(2 * (_data.Train.Count + _data.Validation.Count), counter.Images);
        }
    }

    [Fact]
    public void Fit_SameSeedTwice_SameHistory()
    {
        var (a, ha) = Tiny().Freeze().AddHead(_data.Classes).WithSeed(3).Fit(_data, 2);
        var (b, hb) = Tiny().Freeze().AddHead(_data.Classes).WithSeed(3).Fit(_data, 2);
        using (a)
        using (b)
        {
            Assert.Equal(ha[History.Loss], hb[History.Loss]);
            Assert.Equal(ha[History.ValLoss], hb[History.ValLoss]);
        }
    }

    [Fact]
    public void Fit_BeforeAddHead_ThrowsExplaining()
    {
        using var learner = Tiny().Freeze();
        var e = Assert.Throws<InvalidOperationException>(() => learner.Fit(_data, 1));
        Assert.Equal("Call AddHead(classes) before Fit: the model has no classification head.", e.Message);
    }

    [Fact]
    public void Fit_HeadClassesDifferFromData_ThrowsListingBoth()
    {
        using var learner = Tiny().AddHead(["a", "b", "c"]);
        var e = Assert.Throws<ArgumentException>(() => learner.Fit(_data, 1));
        Assert.Equal("The head was built for 3 classes (a, b, c) but the data has 2 (blue, red). Pass the data's classes to AddHead. (Parameter 'data')", e.Message);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-2)]
    public void Fit_EpochsNotPositive_Throws(int epochs)
    {
        using var learner = Tiny().AddHead(_data.Classes);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => learner.Fit(_data, epochs));
        Assert.Equal("epochs", e.ParamName);
    }

    [Fact]
    public void Fit_Twice_SecondCallThrows()
    {
        var learner = Tiny().Freeze().AddHead(_data.Classes);
        using var model = learner.Fit(_data, 1).Model;
        var e = Assert.Throws<InvalidOperationException>(() => learner.Fit(_data, 1));
        Assert.Equal(
            "This TransferLearner was already used by Fit; start a new one with TransferLearner.From(...), or TransferLearner.From(model) to keep training the model.",
            e.Message);
        Assert.Throws<InvalidOperationException>(() => learner.Freeze());
    }

    [Fact]
    public void Fit_ImageSizeOnFixedSizeBackbone_ThrowsNamingSizes()
    {
        using var learner = TransferLearner.From(TestBackbones.Tiny(fixedSize: true)).AddHead(_data.Classes).WithImageSize(64);
        var e = Assert.Throws<InvalidOperationException>(() => learner.Fit(_data, 1));
        Assert.Equal(
            "The backbone 'test:tiny' only accepts 32×32 images, not 64×64. Remove the image size setting or choose a backbone that accepts other sizes.",
            e.Message);
    }

    [Fact]
    public void Fit_EmptyTrainingData_ThrowsExplaining()
    {
        var empty = new DatasetSplit(new ImageDataset(_data.Classes, []), _data.Validation);
        using var learner = Tiny().AddHead(_data.Classes);
        var e = Assert.Throws<ArgumentException>(() => learner.Fit(empty, 1));
        Assert.StartsWith("The training data is empty", e.Message);
    }

    [Fact]
    public void Unfreeze_ContinuedModelWithoutFit_ModelUnchanged()
    {
        var (model, _) = Tiny().Freeze().AddHead(_data.Classes).Fit(_data, 1);
        using (model)
        {
            using (TransferLearner.From(model).Unfreeze())
            {
                Assert.True(model.Backbone.IsFrozen); // nothing happens before Fit
            }

            Assert.True(model.Backbone.IsFrozen);
            Assert.All(model.Backbone.Module.parameters(), p => Assert.False(p.requires_grad));
        }
    }

    [Fact]
    public void Fit_UnknownClassWeight_ThrowsAndLearnerStaysUsable()
    {
        using var learner = Tiny().Freeze().AddHead(_data.Classes).WithClassWeights(new Dictionary<string, double> { ["green"] = 2 });

        var e = Assert.Throws<ArgumentException>(() => learner.Fit(_data, 1));
        Assert.Equal("Class weights name unknown classes: green. Classes: blue, red.", e.Message);

        var (model, history) = learner.WithClassWeights(new Dictionary<string, double> { ["red"] = 2 }).Fit(_data, 1);
        using (model)
        {
            Assert.Equal(1, history.Count);
        }
    }

    [Fact]
    public void Fit_BackboneFailsDuringTraining_NewHeadDisposedAndLearnerStillOwnsBackbone()
    {
        // On a thread of its own, so that the live-tensor count (kept per thread) sees only this scenario.
        long liveBefore = 0, liveAfter = 0;
        Exception? failure = null, second = null;
        TransferLearner? learner = null;
        var thread = new Thread(() =>
        {
            CountingModule counter = null!;
            learner = Tiny(c => counter = c).Freeze().AddHead(_data.Classes);
            counter.FailAfterImages = 4;
            liveBefore = TorchSharp.DisposeScopeManager.Statistics.ThreadTotalLiveCount;
            failure = Record.Exception(() => learner.Fit(_data, 2));
            liveAfter = TorchSharp.DisposeScopeManager.Statistics.ThreadTotalLiveCount;
            second = Record.Exception(() => learner.Fit(_data, 1));
        });
        thread.Start();
        thread.Join();

        Assert.Equal("test backbone failure", Assert.IsType<InvalidOperationException>(failure).Message);
        Assert.Equal(liveBefore, liveAfter); // the head made by Fit is gone
        Assert.StartsWith("This TransferLearner was already used by Fit", Assert.IsType<InvalidOperationException>(second).Message, StringComparison.Ordinal);
        learner!.Dispose();
        Assert.Throws<ObjectDisposedException>(() => learner.Backbone.Freeze()); // the learner freed the backbone
    }

    [Fact]
    public void AddHead_Twice_Throws()
    {
        using var learner = Tiny().AddHead(_data.Classes);
        var e = Assert.Throws<InvalidOperationException>(() => learner.AddHead(_data.Classes));
        Assert.Equal("AddHead was already called; a learner has one head.", e.Message);
    }

    [Fact]
    public void Unfreeze_UnknownBlock_ThrowsListingBlocks()
    {
        using var learner = Tiny();
        var e = Assert.Throws<ArgumentException>(() => learner.Unfreeze("layer9"));
        Assert.StartsWith("The backbone has no block named 'layer9'. Its blocks are: ", e.Message);
    }

    [Fact]
    public void OnDevice_CudaWithoutGpu_ThrowsAtFit()
    {
        if (cuda.is_available())
        {
            return; // the error path only exists without a GPU
        }

        using var learner = Tiny().AddHead(_data.Classes).OnDevice("cuda");
        var e = Assert.Throws<InvalidOperationException>(() => learner.Fit(_data, 1));
        Assert.StartsWith("Device 'cuda' was requested but CUDA is not available", e.Message);
    }

    [Fact]
    public void FineTune_AfterFrozenFit_SameModelHistoryContinuesBackboneChanges()
    {
        var (model, history) = Tiny().Freeze().AddHead(_data.Classes).Fit(_data, 2);
        using (model)
        {
            var before = TestBackbones.Weights(model.Backbone.Module);
            var (tuned, continued) = TransferLearner.From(model).Unfreeze().WithLearningRate(1e-3).WithBatchSize(4).Fit(_data, 2);

            Assert.Same(model, tuned);
            Assert.Equal(4, continued.Count);
            Assert.Equal([1, 2, 3, 4], continued.Epochs.Select(e => e.Epoch));
            Assert.Equal([true, true, false, false], continued.Epochs.Select(e => e.BackboneFrozen));
            Assert.NotEqual(before["inner.stem.weight"], TestBackbones.Weights(model.Backbone.Module)["inner.stem.weight"]);
        }
    }

    [Fact]
    public void Predict_FileStreamAndImage_SameProbabilities()
    {
        var (model, _) = Tiny().Freeze().AddHead(_data.Classes).Fit(_data, 2);
        using (model)
        {
            var file = _data.Validation.Samples[0].Path;
            var fromFile = model.Predict(file, topK: 2);
            using var stream = File.OpenRead(file);
            var fromStream = model.Predict(stream);
            using var image = Image.Load<Rgb24>(file);
            var fromImage = model.Predict(image);
            var batch = model.Predict([file, _data.Validation.Samples[1].Path]);

            Assert.Equal(fromFile.Probabilities, fromStream.Probabilities);
            Assert.Equal(fromFile.Probabilities, fromImage.Probabilities);
            Assert.Equal(fromFile.Probabilities, batch[0].Probabilities, (a, b) => Math.Abs(a - b) < 1e-6); // batched convolution may round differently
            Assert.Equal(file, fromFile.Source);
            Assert.Equal(2, fromFile.Top.Count);
            Assert.Equal(1f, fromFile.Probabilities.Sum(), 4);
            Assert.Equal(fromFile.Label, fromFile.Top[0].Label);
        }
    }

    [Fact]
    public void Evaluate_ValidationData_MatchesLastValidationMetrics()
    {
        var (model, history) = Tiny().Freeze().AddHead(_data.Classes).Fit(_data, 3);
        using (model)
        {
            var evaluation = model.Evaluate(_data.Validation);
            Assert.Equal(_data.Validation.Count, evaluation.Count);
            Assert.Equal(history[History.ValAccuracy][^1], evaluation.Accuracy, 6);
            Assert.Equal(history[History.ValLoss][^1], evaluation.Loss, 4);
            Assert.Equal(_data.Validation.Count, evaluation.PerClass.Sum(c => c.Support));
        }
    }

    [Fact]
    public void Evaluate_DataWithUnknownClass_ThrowsListingIt()
    {
        var (model, _) = Tiny().Freeze().AddHead(_data.Classes).Fit(_data, 1);
        using (model)
        {
            var other = new ImageDataset(["blue", "green"], [new ImageSample(_data.Validation.Samples[0].Path, 0)]);
            var e = Assert.Throws<ArgumentException>(() => model.Evaluate(other));
            Assert.StartsWith("The data has classes the model does not know: green.", e.Message);
        }
    }

    [Fact]
    public void SaveLoad_AfterFit_PredictsExactlyTheSame()
    {
        var (model, _) = Tiny().Freeze().AddHead(_data.Classes).Fit(_data, 2);
        using (model)
        {
            var path = Path.Combine(_scratch, "tiny.tlmodel");
            model.Save(path);
            var load = new ModelLoadOptions
            {
                BackboneFactory = _ => { var t = TestBackbones.Tiny(seed: 5); return new Backbone(t.Source, new CountingModule(t.Module), 8, t.InputSpec); },
            };
            using var loaded = TrainedModel.Load(path, load);

            foreach (var sample in _data.Validation.Samples)
            {
                Assert.Equal(model.Predict(sample.Path).Probabilities, loaded.Predict(sample.Path).Probabilities);
            }
        }
    }

    [Fact]
    public async Task FitAsync_CancelledDuringTraining_ThrowsAndReportsProgress()
    {
        using var cts = new CancellationTokenSource();
        var phases = new List<TrainingPhase>();
        var progress = new SyncProgress<TrainingProgress>(p =>
        {
            phases.Add(p.Phase);
            if (p.Phase == TrainingPhase.EpochEnd)
            {
                cts.Cancel();
            }
        });

        using var learner = Tiny().Freeze().AddHead(_data.Classes);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => learner.FitAsync(_data, 50, progress, cts.Token));

        Assert.Contains(TrainingPhase.Featurizing, phases);
        Assert.Contains(TrainingPhase.Training, phases);
        Assert.Equal(1, phases.Count(p => p == TrainingPhase.EpochEnd));
    }
}
