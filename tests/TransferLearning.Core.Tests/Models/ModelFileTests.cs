using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;
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

    /// <summary>Replaces the text of one zip entry (the manifest) and returns the old text.</summary>
    private static string EditEntry(string path, string name, Func<string, string> edit)
    {
        using var zip = ZipFile.Open(path, ZipArchiveMode.Update);
        var entry = zip.GetEntry(name)!;
        string text;
        using (var reader = new StreamReader(entry.Open()))
        {
            text = reader.ReadToEnd();
        }

        entry.Delete();
        using var writer = new StreamWriter(zip.CreateEntry(name).Open());
        writer.Write(edit(text));
        return text;
    }

    [Fact]
    public void Load_ClassNamesReversedInManifest_ThrowsModified()
    {
        using var model = NewModel();
        var path = Path.Combine(_dir, "m.tlmodel");
        model.Save(path);
        EditEntry(path, "manifest.json", json => json.Replace("\"cat\"", "\"tmp\"").Replace("\"fox\"", "\"cat\"").Replace("\"tmp\"", "\"fox\""));

        var e = Assert.Throws<ModelFileException>(() => TrainedModel.Load(path, TinyLoad));

        Assert.Equal(
            $"'{path}' has been modified or damaged: its manifest (class names, input spec, head) does not match the SHA-256 in 'manifest.sha256'. " +
            "Use an unmodified copy, or save the model again from the program that trained it.",
            e.Message);
    }

    [Fact]
    public void Load_InputSpecEditedInManifest_ThrowsModified()
    {
        using var model = NewModel();
        var path = Path.Combine(_dir, "m.tlmodel");
        model.Save(path);
        EditEntry(path, "manifest.json", json => json.Replace("\"resize_mode\": \"center_crop\"", "\"resize_mode\": \"stretch\""));

        var e = Assert.Throws<ModelFileException>(() => TrainedModel.Load(path, TinyLoad));

        Assert.StartsWith($"'{path}' has been modified or damaged: its manifest (class names, input spec, head) does not match", e.Message);
    }

    [Fact]
    public void Load_ManifestHashRemoved_ThrowsModified()
    {
        using var model = NewModel();
        var path = Path.Combine(_dir, "m.tlmodel");
        model.Save(path);
        using (var zip = ZipFile.Open(path, ZipArchiveMode.Update))
        {
            zip.GetEntry("manifest.sha256")!.Delete();
        }

        var e = Assert.Throws<ModelFileException>(() => TrainedModel.Load(path, TinyLoad));

        Assert.Equal($"'{path}' has been modified or damaged: it is a version 3 model file but has no 'manifest.sha256' to check its manifest against.", e.Message);
    }

    [Fact]
    public void Load_Version2FileWithoutManifestHash_StillLoads()
    {
        // What the previous version wrote: version 1 or 2 and no manifest.sha256.
        using var model = NewModel();
        var path = Path.Combine(_dir, "m.tlmodel");
        model.Save(path);
        using (var zip = ZipFile.Open(path, ZipArchiveMode.Update))
        {
            zip.GetEntry("manifest.sha256")!.Delete();
        }

        EditEntry(path, "manifest.json", json => json.Replace("\"version\": 3", "\"version\": 1"));

        using var loaded = TrainedModel.Load(path, TinyLoad);

        Assert.Equal(model.Classes, loaded.Classes);
    }

    [Fact]
    public void Load_BackboneFixedInputSizeWrittenByEarlierVersion3Files_IgnoredAndLoads()
    {
        // Earlier version-3 files wrote the backbone's fixed_input_size beside its input spec, and nothing read it: a
        // backbone that records its architecture keeps that setting there (ONNX), the others are rebuilt from their source.
        using var model = NewModel();
        var path = Path.Combine(_dir, "m.tlmodel");
        model.Save(path);
        var edited = string.Empty;
        var written = EditEntry(path, "manifest.json", json => edited = json.Replace("\"backbone\": {", "\"backbone\": {\n    \"fixed_input_size\": true,", StringComparison.Ordinal));
        EditEntry(path, "manifest.sha256", _ => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(edited))));
        Assert.DoesNotContain("fixed_input_size", written, StringComparison.Ordinal);
        Assert.Contains("\"fixed_input_size\": true", edited, StringComparison.Ordinal);

        using var loaded = TrainedModel.Load(path, TinyLoad);

        Assert.Equal(model.Classes, loaded.Classes);
        Assert.Equal(model.InputSpec, loaded.InputSpec);
    }

    [Fact]
    public void Save_StaleTemporaryFilesOfThatModel_AreRemoved()
    {
        using var model = NewModel();
        var path = Path.Combine(_dir, "m.tlmodel");
        string[] stale = [Path.Combine(_dir, $".m.tlmodel.{Guid.NewGuid():N}.tmp"), Path.Combine(_dir, $".m.tlmodel.{Guid.NewGuid():N}.tmp")];
        string[] others = [Path.Combine(_dir, $".other.tlmodel.{Guid.NewGuid():N}.tmp"), Path.Combine(_dir, ".m.tlmodel.mine.tmp"), Path.Combine(_dir, "notes.txt")];
        foreach (var file in stale.Concat(others))
        {
            File.WriteAllBytes(file, new byte[1000]);
        }

        model.Save(path);

        Assert.Equal(others.Append(path).Order(StringComparer.Ordinal), Directory.GetFiles(_dir).Order(StringComparer.Ordinal));
    }

    [Fact]
    public void Save_TemporaryFileOfAnotherRunningSave_IsKept()
    {
        using var model = NewModel();
        var path = Path.Combine(_dir, "m.tlmodel");
        var inUse = Path.Combine(_dir, $".m.tlmodel.{Guid.NewGuid():N}.tmp");
        using (var writer = new FileStream(inUse, FileMode.CreateNew, FileAccess.Write, FileShare.None))
        {
            model.Save(path);

            Assert.True(File.Exists(inUse));
        }

        Assert.True(File.Exists(path));
    }

    [Fact]
    public void Save_TargetIsAFolder_ThrowsAndLeavesNoTemporaryFile()
    {
        using var model = NewModel();
        var path = Path.Combine(_dir, "m.tlmodel");
        Directory.CreateDirectory(path);

        Assert.ThrowsAny<IOException>(() => model.Save(path));

        Assert.Equal([path], Directory.GetFileSystemEntries(_dir));
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
