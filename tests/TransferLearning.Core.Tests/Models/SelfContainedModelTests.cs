using System.IO.Compression;
using System.Text.Json.Nodes;
using Google.Protobuf;
using TransferLearning.Hub;
using TransferLearning.Core.Tests.Onnx;
using TransferLearning.Datasets;
using TransferLearning.Models;

namespace TransferLearning.Core.Tests.Models;

/// <summary>
/// A saved model loads with nothing but its file: each backbone family is trained from a temporary copy of its file,
/// the copy is deleted, and the loaded model must give identical probabilities.
/// </summary>
public sealed class SelfContainedModelTests : IClassFixture<GeneratedImages>, IDisposable
{
    private readonly GeneratedImages _images;
    private readonly TempDir _dir = new();

    public SelfContainedModelTests(GeneratedImages images) => _images = images;

    public void Dispose() => _dir.Dispose();

    private DatasetSplit Data => ImageFolder.Load(_images.Root).Split(0.7, seed: 1);

    private static IReadOnlyList<string> Files(DatasetSplit data) => [.. data.Validation.Samples.Select(s => s.Path)];

    /// <summary>Fits frozen (and optionally fine-tunes), saves, deletes the source folder, loads, and compares predictions.</summary>
    private void AssertStandsAlone(TransferLearner learner, string sourceFolder, bool fineTune, bool quantized = false, int? imageSize = null)
    {
        var data = Data;
        var path = _dir.Combine("model.tlmodel");
        learner.Freeze().AddHead(data.Classes).WithBatchSize(4).WithSeed(5);
        if (imageSize is { } size)
        {
            learner.WithImageSize(size);
        }

        if (quantized)
        {
            learner.WithInt8Backbone(8);
        }

        var (model, _) = learner.Fit(data, 2);
        using (model)
        {
            if (fineTune)
            {
                TransferLearner.From(model).Unfreeze().WithLearningRate(1e-3).WithBatchSize(4).Fit(data, 1);
                model.Backbone.Freeze(); // a loaded model is frozen: compare in the same mode (frozen ONNX runs BatchNorm folded)
            }

            var expected = model.Predict(Files(data));
            model.Save(path);
            Directory.Delete(sourceFolder, recursive: true);

            using var loaded = TrainedModel.Load(path);
            Assert.NotNull(loaded.Backbone.Architecture);
            Assert.Equal(model.Backbone.Blocks, loaded.Backbone.Blocks);
            Assert.Equal(model.Backbone.IsInt8, loaded.Backbone.IsInt8);
            var actual = loaded.Predict(Files(data));
            Assert.Equal(expected.Select(p => p.Probabilities.ToArray()), actual.Select(p => p.Probabilities.ToArray()));
        }
    }

    private string CopyToTemp(string sourceDirectory, string name)
    {
        var target = _dir.Combine(name);
        Directory.CreateDirectory(target);
        foreach (var file in Directory.GetFiles(sourceDirectory))
        {
            File.Copy(file, Path.Combine(target, Path.GetFileName(file)));
        }

        return target;
    }

    private static string TinyOnnxFile(string folder)
    {
        Directory.CreateDirectory(folder);
        var path = Path.Combine(folder, "tiny.onnx");
        File.WriteAllBytes(path, Int8Tests.TinyOnnxModel().ToByteArray());
        return path;
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    public void Load_OnnxBackboneFileDeleted_SamePredictions(bool fineTune, bool quantized)
    {
        var folder = _dir.Combine("onnx-source");
        var file = TinyOnnxFile(folder);
        AssertStandsAlone(TransferLearner.From(file, new BackboneLoadOptions { InputSpec = new InputSpec(32, 32, 0f, 1f) }), folder, fineTune, quantized);
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    public void Load_TorchVisionCheckpointDeleted_SamePredictions(bool fineTune, bool quantized)
    {
        var folder = CopyToTemp(RepoPaths.TestData("torchvision"), "tv-source");
        var file = Path.Combine(folder, "mobilenet_v2_w025_c10.pth");
        var backbone = Backbones.TorchVision.TorchVisionBackbones.Load(file, file, "mobilenet_v2", null, numClasses: 10, widthMult: 0.25);
        AssertStandsAlone(TransferLearner.From(backbone), folder, fineTune, quantized, imageSize: 64);
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    public void Load_TfjsModelDeleted_SamePredictions(bool fineTune, bool quantized)
    {
        var folder = CopyToTemp(RepoPaths.TestData("tfjs", "bn_act"), "tfjs-source");
        AssertStandsAlone(TransferLearner.From(Path.Combine(folder, "model.json")), folder, fineTune, quantized);
    }

    [Fact]
    public void Load_OfflineResNet18Int8_RebuiltFromTheFileAlone()
    {
        var data = Data;
        var path = _dir.Combine("resnet18.tlmodel");
        var (model, _) = TransferLearner.From("resnet18").Freeze().AddHead(data.Classes).WithInt8Backbone(4).WithBatchSize(8).Fit(data, 1);
        using (model)
        {
            var expected = model.Predict(Files(data));
            model.Save(path);
            using (var zip = ZipFile.OpenRead(path))
            {
                Assert.Contains(zip.Entries, e => e.FullName == "architecture/backbone.onnx");
            }

            using var loaded = TrainedModel.Load(path);
            Assert.Equal("resnet18", loaded.Backbone.Source);
            Assert.True(loaded.Backbone.IsInt8);
            Assert.True(loaded.Backbone.FixedInputSize);
            Assert.Equal(expected.Select(p => p.Probabilities.ToArray()), loaded.Predict(Files(data)).Select(p => p.Probabilities.ToArray()));
        }
    }

    [Fact]
    public void Load_EarlierVersionFileWhoseSourceIsGone_SaysHowToResave()
    {
        using var model = ModelFileTests.NewModel();
        var path = _dir.Combine("old.tlmodel");
        model.Save(path); // a hand-built backbone records no architecture, as files of versions 1 and 2 did not
        Rewrite(path, manifest =>
        {
            manifest["version"] = 1;
            manifest["backbone"]!["source"] = _dir.Combine("gone.onnx");
        });

        var e = Assert.Throws<ModelFileException>(() => TrainedModel.Load(path));

        Assert.StartsWith($"'{path}' was saved by an earlier version (model file version 1) that records only where its backbone came from ('{_dir.Combine("gone.onnx")}'), and that source cannot be loaded here: ", e.Message, StringComparison.Ordinal);
        Assert.EndsWith("Load the model where that source is available and save it again: files saved now hold the backbone's architecture and load on their own.", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_CustomBackboneWhoseSourceIsGone_SaysItIsRebuiltFromItsSource()
    {
        using var model = ModelFileTests.NewModel();
        var path = _dir.Combine("custom.tlmodel");
        model.Save(path);

        var e = Assert.Throws<ModelFileException>(() => TrainedModel.Load(path));

        Assert.StartsWith($"'{path}' holds a backbone that cannot record its own architecture (a custom module), so it is rebuilt from where it came from ('{model.Backbone.Source}'), and that source cannot be loaded here: ", e.Message, StringComparison.Ordinal);
    }

    /// <summary>Edits manifest.json in place and drops manifest.sha256, as in files of versions 1 and 2 (written before it existed).</summary>
    private static void Rewrite(string path, Action<JsonNode> edit)
    {
        using var zip = ZipFile.Open(path, ZipArchiveMode.Update);
        zip.GetEntry("manifest.sha256")?.Delete();
        var entry = zip.GetEntry("manifest.json")!;
        JsonNode manifest;
        using (var stream = entry.Open())
        {
            manifest = JsonNode.Parse(stream)!;
        }

        edit(manifest);
        entry.Delete();
        using var writer = new StreamWriter(zip.CreateEntry("manifest.json").Open());
        writer.Write(manifest.ToJsonString());
    }
}
