using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using TransferLearning.Backbones;
using TransferLearning.Core.Tests.Onnx;
using TransferLearning.Datasets;
using TransferLearning.Models;
using static TorchSharp.torch;

namespace TransferLearning.Core.Tests.Int8;

public sealed class Int8ModelFileTests : IClassFixture<GeneratedImages>, IDisposable
{
    private readonly GeneratedImages _images;
    private readonly TempDir _dir = new();

    public Int8ModelFileTests(GeneratedImages images) => _images = images;

    public void Dispose() => _dir.Dispose();

    private static JsonNode Manifest(string path)
    {
        using var zip = ZipFile.OpenRead(path);
        using var stream = zip.GetEntry("manifest.json")!.Open();
        return JsonNode.Parse(stream)!;
    }

    [Fact]
    public void Load_EightBitModelOnSevenBitCpu_MovesActivationsToSevenBitsWithTheSameRanges()
    {
        var data = ImageFolder.Load(_images.Root).Split(0.7, seed: 1);
        var path = _dir.Combine("eight-bit.tlmodel");
        var files = data.Validation.Samples.Select(s => s.Path).ToList();
        Tensor saved;
        Dictionary<string, ActivationQuantization> eight;
        using (Int8Kernels.Force(Int8Kernels.EightBit))
        {
            var (model, _) = TransferLearner.From(Int8Tests.TinyOnnx()).Freeze().AddHead(data.Classes).WithInt8Backbone(8).WithSeed(3).Fit(data, 1);
            using (model)
            {
                eight = model.Backbone.Int8Parameters!.Activations.ToDictionary(kv => kv.Key, kv => kv.Value);
                Assert.Contains(eight.Values, a => a.Levels == Int8Kernels.EightBit);
                saved = Features(model, files);
                model.Save(path);
            }
        }

        var manifest = Manifest(path);
        Assert.Equal(4, (int)manifest["version"]!);
        Assert.Equal(ManifestSha256(path), ManifestHashEntry(path)); // version 4 carries the hashed manifest too
        Assert.Contains(manifest["backbone"]!["int8"]!.AsObject(), kv => kv.Value!.AsArray().Count == 3 && (int)kv.Value[2]! == Int8Kernels.EightBit);

        using (Int8Kernels.Force(Int8Kernels.SevenBit))
        {
            using var loaded = TrainedModel.Load(path);
            Assert.True(loaded.Backbone.IsInt8);
            var seven = loaded.Backbone.Int8Parameters!.Activations;
            Assert.All(seven.Values, a => Assert.Equal(Int8Kernels.SevenBit, a.Levels));
            foreach (var (name, q) in seven)
            {
                Assert.Equal(-eight[name].ZeroPoint * eight[name].Scale, -q.ZeroPoint * q.Scale, 2 * q.Scale); // same real range
            }

            var cosine = nn.functional.cosine_similarity(Features(loaded, files), saved, 1).min().item<float>();
            Assert.True(cosine >= 0.98f, $"cosine {cosine}");
        }

        saved.Dispose();
    }

    [Fact]
    public void Load_Version4FileWithoutManifestHash_ThrowsModified()
    {
        var data = ImageFolder.Load(_images.Root).Split(0.7, seed: 1);
        var path = _dir.Combine("eight-bit.tlmodel");
        using (Int8Kernels.Force(Int8Kernels.EightBit))
        {
            var (model, _) = TransferLearner.From(Int8Tests.TinyOnnx()).Freeze().AddHead(data.Classes).WithInt8Backbone(8).WithSeed(3).Fit(data, 1);
            using (model)
            {
                model.Save(path);
            }
        }

        Assert.Equal(4, (int)Manifest(path)["version"]!);
        using (var zip = ZipFile.Open(path, ZipArchiveMode.Update))
        {
            zip.GetEntry("manifest.sha256")!.Delete();
        }

        var e = Assert.Throws<ModelFileException>(() => TrainedModel.Load(path));

        Assert.Equal($"'{path}' has been modified or damaged: it is a version 4 model file but has no 'manifest.sha256' to check its manifest against.", e.Message);
    }

    [Fact]
    public void Save_SevenBitInt8OnnxModel_Version3UnlessEqualisationOrFloatConvsNeedVersion4()
    {
        var data = ImageFolder.Load(_images.Root).Split(0.7, seed: 1);
        var path = _dir.Combine("seven-bit.tlmodel");
        bool needsVersion4;
        using (Int8Kernels.Force(Int8Kernels.SevenBit))
        {
            var (model, _) = TransferLearner.From(Int8Tests.TinyOnnx()).Freeze().AddHead(data.Classes).WithInt8Backbone(8).WithSeed(3).Fit(data, 1);
            using (model)
            {
                // 7-bit levels alone are what version 3 readers (the previous release) understand.
                needsVersion4 = model.Backbone.Int8Parameters!.ChannelScales.Count > 0 || model.Backbone.Int8Parameters.FloatConvs.Count > 0;
                model.Save(path);
            }
        }

        Assert.Equal(needsVersion4 ? 4 : 3, (int)Manifest(path)["version"]!);
        Assert.Equal(ManifestSha256(path), ManifestHashEntry(path));
    }

    private static string ManifestSha256(string path)
    {
        using var zip = ZipFile.OpenRead(path);
        using var stream = zip.GetEntry("manifest.json")!.Open();
        using var bytes = new MemoryStream();
        stream.CopyTo(bytes);
        return Convert.ToHexStringLower(SHA256.HashData(bytes.ToArray()));
    }

    private static string? ManifestHashEntry(string path)
    {
        using var zip = ZipFile.OpenRead(path);
        if (zip.GetEntry("manifest.sha256") is not { } entry)
        {
            return null;
        }

        using var reader = new StreamReader(entry.Open(), Encoding.ASCII);
        return reader.ReadToEnd().Trim();
    }

    private static Tensor Features(TrainedModel model, IReadOnlyList<string> files)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var images = stack(files.Select(f => ImageTensor.FromFile(f, model.Backbone.InputSpec)).ToArray());
        return model.Backbone.Forward(images).MoveToOuterDisposeScope();
    }
}
