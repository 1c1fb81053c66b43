using TorchSharp;
using TransferLearning.Backbones.Tfjs;
using static TorchSharp.torch;

namespace TransferLearning.Core.Tests.Tfjs;

public sealed class TfjsModelTests : IDisposable
{
    private readonly string _temp = Directory.CreateTempSubdirectory("tfjs-tests-").FullName;

    public void Dispose() => Directory.Delete(_temp, recursive: true);

    [Fact]
    public void Unfreeze_SgdStep_ChangesWeights()
    {
        using var backbone = TfjsModel.Load(TfjsTestData.ModelJson("nested"));
        backbone.Unfreeze();
        backbone.SetTrainingMode(true);
        var before = backbone.Module.parameters().Select(p => p.detach().clone()).ToList();
        using var optimizer = optim.SGD(backbone.Module.parameters(), 0.1);
        using var x = randn(4, 3, 8, 8, generator: new Generator(7));
        using var y = backbone.Forward(x);
        using var loss = y.square().sum();
        loss.backward();
        optimizer.step();
        var after = backbone.Module.parameters().ToList();
        Assert.Equal(before.Count, after.Count);
        Assert.All(after, p => Assert.NotNull(p.grad));
        Assert.Contains(Enumerable.Range(0, after.Count), i => !before[i].allclose(after[i]));
        foreach (var t in before)
        {
            t.Dispose();
        }
    }

    [Fact]
    public void Freeze_Forward_NoGradientsAndBatchNormStatsUnchanged()
    {
        using var backbone = TfjsModel.Load(TfjsTestData.ModelJson("nested"));
        backbone.Freeze();
        backbone.SetTrainingMode(true);
        var stats = backbone.Module.buffers().Select(b => b.clone()).ToList();
        using var x = randn(4, 3, 8, 8, generator: new Generator(3));
        using var y = backbone.Forward(x);
        Assert.False(y.requires_grad);
        Assert.True(backbone.IsFrozen);
        var now = backbone.Module.buffers().ToList();
        Assert.Equal(2, now.Count);
        Assert.All(Enumerable.Range(0, now.Count), i => Assert.True(stats[i].allclose(now[i], 0, 0)));
    }

    [Fact]
    public void UnfreezeFromBlock_TrainingStep_UpdatesOnlyLaterBlocksAndRunningStats()
    {
        using var backbone = TfjsModel.Load(TfjsTestData.ModelJson("nested"));
        backbone.Unfreeze("n_seq_bn");
        backbone.SetTrainingMode(true);
        var conv = backbone.Module.named_children().First(c => c.name == "n_seq_conv").module;
        var bn = backbone.Module.named_children().First(c => c.name == "n_seq_bn").module;
        Assert.All(conv.parameters(), p => Assert.False(p.requires_grad));
        Assert.All(bn.parameters(), p => Assert.True(p.requires_grad));
        using var mean = bn.buffers().First().clone();
        using var x = randn(4, 3, 8, 8, generator: new Generator(5));
        using var y = backbone.Forward(x);
        using var loss = y.sum();
        loss.backward();
        Assert.All(conv.parameters(), p => Assert.Null(p.grad));
        Assert.All(bn.parameters(), p => Assert.NotNull(p.grad));
        Assert.False(mean.allclose(bn.buffers().First(), 0, 0)); // training-mode BatchNorm updates its moving mean
    }

    [Theory]
    [InlineData(5, 3, 2, 1, 1, 1)] // out 3: total = 2*2 + 3 - 5 = 2
    [InlineData(8, 3, 2, 1, 0, 1)] // out 4: total = 3*2 + 3 - 8 = 1 -> extra at the end
    [InlineData(7, 4, 1, 1, 1, 2)]
    [InlineData(9, 3, 1, 2, 2, 2)]
    [InlineData(4, 1, 2, 1, 0, 0)]
    public void SamePadding_TensorFlowRule_ExtraAtEnd(long input, long kernel, long stride, long dilation, long before, long after)
    {
        Assert.Equal((before, after), TfjsOps.SamePadding(input, kernel, stride, dilation));
    }

    [Fact]
    public void KerasRelu_SlopeThresholdMax_FollowsKerasFormula()
    {
        using var x = tensor(new float[] { -2f, 0f, 0.5f, 1f, 2f, 7f });
        using var y = TfjsOps.KerasRelu(x, 6, 0.1, 1);
        Assert.Equal(new[] { -0.3f, -0.1f, -0.05f, 0f, 2f, 6f }, y.data<float>().ToArray().Select(v => MathF.Round(v, 5)));
    }

    [Fact]
    public void Load_UnknownLayerClass_FailsNamingLayerAndClass()
    {
        var path = CopyFixture("seq_flatten_old", json => json.Replace("\"Flatten\"", "\"Conv3DTranspose\"", StringComparison.Ordinal));
        var e = Assert.Throws<NotSupportedException>(() => TfjsModel.Load(path));
        Assert.StartsWith($"{path}: layer 's_flat' has class 'Conv3DTranspose', which the TF.js loader does not support.", e.Message);
    }

    [Fact]
    public void Load_MissingShard_FailsNamingShard()
    {
        var path = CopyFixture("nested", json => json);
        File.Delete(Path.Combine(_temp, "weights.bin"));
        var e = Assert.Throws<FileNotFoundException>(() => TfjsModel.Load(path));
        Assert.StartsWith($"{path}: the weights shard 'weights.bin' listed in the weightsManifest could not be opened", e.Message);
    }

    [Fact]
    public void Load_TruncatedShard_FailsWithSizes()
    {
        var path = CopyFixture("nested", json => json);
        File.WriteAllBytes(Path.Combine(_temp, "weights.bin"), new byte[100]);
        var e = Assert.Throws<InvalidDataException>(() => TfjsModel.Load(path));
        Assert.Contains("the weight shards are too short", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_BadJson_FailsNamingFile()
    {
        var path = Path.Combine(_temp, "model.json");
        File.WriteAllText(path, "{ \"modelTopology\": [1, 2");
        var e = Assert.Throws<InvalidDataException>(() => TfjsModel.Load(path));
        Assert.StartsWith($"{path}: model.json is not valid JSON", e.Message);
    }

    [Fact]
    public void Load_SequentialWithNoLayers_RefusedAtLoad()
    {
        var path = Path.Combine(_temp, "model.json");
        File.WriteAllText(path, """
            {"format": "layers-model", "modelTopology": {"class_name": "Sequential", "config": {"name": "empty", "layers": [
              {"class_name": "InputLayer", "config": {"batch_input_shape": [null, 8, 8, 3], "dtype": "float32", "name": "in"}}]}},
             "weightsManifest": []}
            """);

        var e = Assert.Throws<InvalidDataException>(() => TfjsModel.Load(path));

        Assert.Equal($"{path}: the model has no layers (its topology holds nothing but the input), so it computes no features; export the whole Keras model.", e.Message);
    }

    [Fact]
    public void Load_GraphModel_RefusedWithFormat()
    {
        var path = Path.Combine(_temp, "model.json");
        File.WriteAllText(path, "{\"format\": \"graph-model\", \"modelTopology\": {}, \"weightsManifest\": []}");
        var e = Assert.Throws<NotSupportedException>(() => TfjsModel.Load(path));
        Assert.Equal($"{path}: the model format is 'graph-model'; only TF.js layers models ('layers-model') can be loaded as trainable backbones.", e.Message);
    }

    [Fact]
    public void Load_UnsupportedQuantization_Refused()
    {
        var path = CopyFixture("quantized_uint8", json => json.Replace("\"dtype\":\"uint8\"", "\"dtype\":\"int4\"", StringComparison.Ordinal));
        var e = Assert.Throws<NotSupportedException>(() => TfjsModel.Load(path));
        Assert.Equal($"{path}: weight 's_conv/kernel' is quantized as 'int4'; only uint8, uint16 and float16 quantization are supported. Re-export the model without quantization.", e.Message);
    }

    [Fact]
    public void Load_MissingWeight_FailsNamingLayerAndWeight()
    {
        var path = CopyFixture("seq_flatten_old", json => json.Replace("\"s_dense/bias\"", "\"other/bias\"", StringComparison.Ordinal));
        var e = Assert.Throws<InvalidDataException>(() => TfjsModel.Load(path, new TfjsLoadOptions { FeatureLayer = "s_dense" }));
        Assert.Equal($"{path}: layer 's_dense' (Dense) needs the weight 's_dense/bias', but the weightsManifest has no such entry.", e.Message);
    }

    [Fact]
    public void Load_UnknownFeatureLayer_ListsLayers()
    {
        var path = TfjsTestData.ModelJson("seq_flatten_old");
        var e = Assert.Throws<ArgumentException>(() => TfjsModel.Load(path, new TfjsLoadOptions { FeatureLayer = "nope" }));
        Assert.StartsWith($"{path}: the model has no layer named 'nope'. Its layers are: s_conv, s_flat, s_dense", e.Message);
    }

    [Fact]
    public void Load_ShardOpener_ReadsThroughCallback()
    {
        var dir = TfjsTestData.FixtureDir("seq_flatten_old");
        var opened = new List<string>();
        using var backbone = TfjsModel.Load(
            Path.Combine(dir, "model.json"),
            rel =>
            {
                opened.Add(rel);
                return File.OpenRead(Path.Combine(dir, rel));
            },
            new TfjsLoadOptions { Source = "https://example.invalid/model.json" });
        Assert.Contains("weights.bin", opened);
        Assert.Equal("https://example.invalid/model.json", backbone.Source);
        Assert.Equal(27, backbone.FeatureSize); // Flatten of the 3x3x3 conv output, before the Dense head
    }

    [Fact]
    public void LoadClassifier_MetadataLabels_Used()
    {
        var path = CopyFixture("nested", json => json);
        File.WriteAllText(Path.Combine(_temp, "metadata.json"), "{\"labels\": [\"cat\", \"dog\", \"bird\"]}");
        using var classifier = TfjsModel.LoadClassifier(path);
        Assert.Equal(["cat", "dog", "bird"], classifier.Labels);
        using var x = zeros(2, 3, 8, 8);
        using var y = classifier.Predict(x);
        Assert.Equal([2L, 3L], y.shape);
        Assert.True(y.sum(1).allclose(ones(2)));
    }

    [Fact]
    public void LoadClassifier_LabelCountMismatch_Fails()
    {
        var path = CopyFixture("nested", json => json);
        File.WriteAllText(Path.Combine(_temp, "metadata.json"), "{\"labels\": [\"cat\", \"dog\"]}");
        var e = Assert.Throws<InvalidDataException>(() => TfjsModel.LoadClassifier(path));
        Assert.Equal($"{path}: metadata.json lists 2 labels but the model has 3 outputs.", e.Message);
    }

    private string CopyFixture(string name, Func<string, string> edit)
    {
        var source = TfjsTestData.FixtureDir(name);
        File.WriteAllText(Path.Combine(_temp, "model.json"), edit(File.ReadAllText(Path.Combine(source, "model.json"))));
        File.Copy(Path.Combine(source, "weights.bin"), Path.Combine(_temp, "weights.bin"));
        return Path.Combine(_temp, "model.json");
    }
}

public sealed class TfjsWeightsTests
{
    [Fact]
    public void Read_MixedDtypesAcrossTwoShards_DecodesInManifestOrder()
    {
        // One group split over two shards: float32 [2], uint16-quantized [3], float16 [2], uint8-quantized [2].
        var bytes = new List<byte>();
        bytes.AddRange(BitConverter.GetBytes(1.5f));
        bytes.AddRange(BitConverter.GetBytes(-2.25f));
        foreach (ushort q in new ushort[] { 0, 1000, 65535 })
        {
            bytes.AddRange(BitConverter.GetBytes(q));
        }

        bytes.AddRange(BitConverter.GetBytes((Half)0.5f));
        bytes.AddRange(BitConverter.GetBytes((Half)(-3f)));
        bytes.Add(0);
        bytes.Add(255);
        var all = bytes.ToArray();
        var shards = new Dictionary<string, byte[]> { ["a.bin"] = all[..5], ["b.bin"] = all[5..] };
        var manifest = (System.Text.Json.Nodes.JsonArray)System.Text.Json.Nodes.JsonNode.Parse("""
            [{"paths": ["a.bin", "b.bin"], "weights": [
              {"name": "f", "shape": [2], "dtype": "float32"},
              {"name": "q16", "shape": [3], "dtype": "float32", "quantization": {"scale": 0.001, "min": -1, "dtype": "uint16"}},
              {"name": "h", "shape": [2, 1], "dtype": "float32", "quantization": {"dtype": "float16"}},
              {"name": "q8", "shape": [1, 2], "dtype": "float32", "quantization": {"scale": 0.5, "min": 2, "dtype": "uint8"}}]}]
            """)!;
        var weights = TfjsWeights.Read(manifest, p => new MemoryStream(shards[p]), "model.json");
        Assert.Equal([1.5f, -2.25f], weights["f"].Values);
        Assert.Equal([-1f, 0f, (float)((65535 * 0.001) - 1)], weights["q16"].Values);
        Assert.Equal([0.5f, -3f], weights["h"].Values);
        Assert.Equal([2L, 1L], weights["h"].Shape);
        Assert.Equal([2f, 129.5f], weights["q8"].Values);
    }
}

public sealed class TfjsModuleConversionTests
{
    [Fact]
    public void ModuleTo_Float64_ForwardUsesConvertedWeights()
    {
        using var backbone = TfjsModel.Load(TfjsTestData.ModelJson("nested"));
        backbone.SetTrainingMode(false);
        using var x32 = randn(2, 3, 8, 8, generator: new Generator(11));
        using var y32 = backbone.Forward(x32);
        backbone.Module.to(ScalarType.Float64);
        Assert.All(backbone.Module.parameters(), p => Assert.Equal(ScalarType.Float64, p.dtype));
        Assert.All(backbone.Module.buffers(), b => Assert.Equal(ScalarType.Float64, b.dtype));
        using var x64 = x32.to(ScalarType.Float64);
        using var y64 = backbone.Forward(x64);
        Assert.Equal(ScalarType.Float64, y64.dtype);
        Assert.True(y64.to(ScalarType.Float32).allclose(y32, 1e-5, 1e-6));
    }

    [Fact]
    public void ModuleSaveLoad_AfterTraining_RestoresWeightsAndRunningStats()
    {
        var file = Path.Combine(Path.GetTempPath(), $"tfjs-state-{Guid.NewGuid():N}.dat");
        try
        {
            using var trained = TfjsModel.Load(TfjsTestData.ModelJson("nested"));
            trained.Unfreeze();
            trained.SetTrainingMode(true);
            using (var optimizer = optim.SGD(trained.Module.parameters(), 0.5))
            using (var x = randn(4, 3, 8, 8, generator: new Generator(9)))
            using (var loss = trained.Forward(x).square().sum())
            {
                loss.backward();
                optimizer.step();
            }

            trained.SetTrainingMode(false);
            trained.Module.save(file);
            using var probe = randn(2, 3, 8, 8, generator: new Generator(10));
            using var expected = trained.Forward(probe);

            using var fresh = TfjsModel.Load(TfjsTestData.ModelJson("nested"));
            fresh.SetTrainingMode(false);
            using var before = fresh.Forward(probe);
            Assert.False(before.allclose(expected, 1e-4, 1e-5));
            fresh.Module.load(file);
            using var after = fresh.Forward(probe);
            Assert.True(after.allclose(expected, 1e-6, 1e-7));
        }
        finally
        {
            File.Delete(file);
        }
    }
}

public sealed class TfjsFeatureMapTests
{
    [Fact]
    public void Load_ModelEndingInFeatureMap_AveragesOverHeightAndWidth()
    {
        const string name = "conv_same_odd"; // output [2, 2, 2, 6] NHWC
        var input = TfjsTestData.ReadFloats(Path.Combine(TfjsTestData.FixtureDir(name), "input.bin"));
        var reference = TfjsTestData.ReadFloats(Path.Combine(TfjsTestData.FixtureDir(name), "output.bin"));
        var pooled = new float[2 * 6];
        for (var n = 0; n < 2; n++)
        {
            for (var p = 0; p < 4; p++)
            {
                for (var c = 0; c < 6; c++)
                {
                    pooled[(n * 6) + c] += reference[(((n * 4) + p) * 6) + c] / 4;
                }
            }
        }

        using var backbone = TfjsModel.Load(TfjsTestData.ModelJson(name));
        Assert.Equal(6, backbone.FeatureSize);
        backbone.SetTrainingMode(false);
        using var x = TfjsTestData.NchwFromNhwc(input, [2, 9, 11, 3]);
        using var y = backbone.Forward(x);
        Assert.Equal([2L, 6L], y.shape);
        TfjsTestData.AssertClose(pooled, TfjsTestData.KerasOrder(y));
    }
}
