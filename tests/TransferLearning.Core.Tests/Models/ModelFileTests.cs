using System.IO.Compression;
using TransferLearning.Datasets;
using TransferLearning.Heads;
using TransferLearning.Models;
using TransferLearning.Training;
using static TorchSharp.torch;

namespace TransferLearning.Core.Tests.Models;

public sealed class ModelFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("tl-modelfile-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static readonly ModelLoadOptions TinyLoad = new() { BackboneFactory = _ => TestBackbones.Tiny(seed: 99) };

    internal static TrainedModel NewModel(HeadOptions? head = null)
    {
        var backbone = TestBackbones.Tiny();
        backbone.Unfreeze();
        manual_seed(11);
        head ??= new HeadOptions { HiddenUnits = [6], Dropout = 0.2 };
        var module = HeadFactory.Create(8, 3, head);
        var history = new History([new EpochMetrics(1, 1.0, 0.5, 1.1, 0.4, 1e-3, 2.0, true)]);
        // Make the backbone's BatchNorm statistics non-trivial, as after fine-tuning.
        using (var scope = NewDisposeScope())
        {
            backbone.SetTrainingMode(true);
            backbone.Forward(rand(4, 3, 32, 32) * 3);
        }

        return new TrainedModel(backbone, module, ["cat", "dog", "fox"], backbone.InputSpec.WithResizeMode(ResizeMode.CenterCrop), head, history, CPU);
    }

    [Fact]
    public void SaveLoad_RoundTrip_SamePredictionsClassesSpecAndHistory()
    {
        using var model = NewModel();
        var path = Path.Combine(_dir, "m.tlmodel");
        manual_seed(1);
        using var images = rand(5, 3, 32, 32);
        using var expected = model.PredictProbabilities(images);

        model.Save(path);
        using var loaded = TrainedModel.Load(path, TinyLoad);

        using var actual = loaded.PredictProbabilities(images);
        Assert.True(actual.equal(expected).all().item<bool>(), "predictions must be identical");
        Assert.Equal(model.Classes, loaded.Classes);
        Assert.Equal(model.InputSpec, loaded.InputSpec);
        Assert.Equal(model.History.Epochs, loaded.History.Epochs);
        Assert.Equal(TestBackbones.TinySource, loaded.Backbone.Source);
        Assert.Equal(model.HeadOptions.HiddenUnits, loaded.HeadOptions.HiddenUnits);
    }

    [Fact]
    public void Save_OverExistingFile_ReplacesItAndLeavesNoTemporaryFiles()
    {
        using var model = NewModel();
        var path = Path.Combine(_dir, "m.tlmodel");
        File.WriteAllText(path, "old");

        model.Save(path);

        Assert.Equal([path], Directory.GetFiles(_dir));
        using var loaded = TrainedModel.Load(path, TinyLoad);
        Assert.Equal(3, loaded.Classes.Count);
    }

    [Fact]
    public void Load_TruncatedFile_ThrowsModelFileException()
    {
        using var model = NewModel();
        var path = Path.Combine(_dir, "m.tlmodel");
        model.Save(path);
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);

        var e = Assert.Throws<ModelFileException>(() => TrainedModel.Load(path, TinyLoad));
        Assert.StartsWith($"'{path}' is truncated or is not a TransferLearning model file", e.Message);
    }

    [Fact]
    public void Load_TamperedWeights_ThrowsNamingTheEntry()
    {
        using var model = NewModel();
        var path = Path.Combine(_dir, "m.tlmodel");
        model.Save(path);
        using (var zip = ZipFile.Open(path, ZipArchiveMode.Update))
        {
            var entry = zip.GetEntry("head.bin")!;
            byte[] bytes;
            using (var s = entry.Open())
            using (var m = new MemoryStream())
            {
                s.CopyTo(m);
                bytes = m.ToArray();
            }

            bytes[^1] ^= 0x55;
            entry.Delete();
            using var w = zip.CreateEntry("head.bin").Open();
            w.Write(bytes);
        }

        var e = Assert.Throws<ModelFileException>(() => TrainedModel.Load(path, TinyLoad));
        Assert.Equal($"'{path}' has been modified or damaged: the SHA-256 of 'head.bin' does not match its manifest.", e.Message);
    }

    [Fact]
    public void Load_ForeignZip_ThrowsNotAModelFile()
    {
        var path = Path.Combine(_dir, "foreign.zip");
        using (var zip = ZipFile.Open(path, ZipArchiveMode.Create))
        {
            using var w = new StreamWriter(zip.CreateEntry("readme.txt").Open());
            w.Write("hello");
        }

        var e = Assert.Throws<ModelFileException>(() => TrainedModel.Load(path, TinyLoad));
        Assert.Equal($"'{path}' is not a TransferLearning model file: it has no 'manifest.json'.", e.Message);
    }

    [Fact]
    public void Load_TextFile_ThrowsModelFileException()
    {
        var path = Path.Combine(_dir, "notes.tlmodel");
        File.WriteAllText(path, "not a model");
        var e = Assert.Throws<ModelFileException>(() => TrainedModel.Load(path, TinyLoad));
        Assert.Contains("is truncated or is not a TransferLearning model file", e.Message);
    }

    [Fact]
    public void Load_MissingFile_ThrowsFileNotFound()
    {
        var path = Path.Combine(_dir, "none.tlmodel");
        var e = Assert.Throws<FileNotFoundException>(() => TrainedModel.Load(path, TinyLoad));
        Assert.Equal($"Model file '{path}' does not exist.", e.Message);
    }

    [Fact]
    public void Load_BackboneWithOtherFeatureSize_ThrowsExplaining()
    {
        using var model = NewModel();
        var path = Path.Combine(_dir, "m.tlmodel");
        model.Save(path);
        var wrong = new ModelLoadOptions
        {
            BackboneFactory = _ => new TransferLearning.Backbones.Backbone("x", nn.Sequential(("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten())), 3, new InputSpec(32, 32)),
        };

        var e = Assert.Throws<ModelFileException>(() => TrainedModel.Load(path, wrong));
        Assert.Equal($"'{path}' was trained on a backbone with 8 features, but 'test:tiny' now gives 3.", e.Message);
    }
}
