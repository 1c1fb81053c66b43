using System.Diagnostics;
using System.Text.Json.Nodes;
using TransferLearning.Backbones.Tfjs;
using TransferLearning.Datasets;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace TransferLearning.Core.Tests.Tfjs;

/// <summary>Outputs of the C# TF.js loader against TensorFlow.js 4.22.0 (tools/tfjs/make-fixtures.js).</summary>
[Trait("Category", "Parity")]
public sealed class TfjsParityTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData("conv_same_odd")]
    [InlineData("conv_same_even")]
    [InlineData("depthwise")]
    [InlineData("bn_act")]
    [InlineData("merge_reshape")]
    [InlineData("nested")]
    [InlineData("reused_layers")]
    [InlineData("views")]
    [InlineData("seq_flatten_old")]
    [InlineData("quantized_uint8")]
    public void LoadNetwork_Fixture_MatchesTfjsOutput(string name)
    {
        var meta = TfjsTestData.Meta(name);
        var input = TfjsTestData.ReadFloats(Path.Combine(TfjsTestData.FixtureDir(name), "input.bin"));
        var reference = TfjsTestData.ReadFloats(Path.Combine(TfjsTestData.FixtureDir(name), "output.bin"));
        using var network = TfjsModel.LoadNetwork(TfjsTestData.ModelJson(name));
        network.eval();
        using var noGrad = no_grad();
        using var x = TfjsTestData.NchwFromNhwc(input, TfjsTestData.Shape(meta, "inputShape"));
        using var y = network.forward(x);
        var expectedShape = TfjsTestData.Shape(meta, "outputShape");
        Assert.Equal(expectedShape.Length, y.dim());
        var diff = TfjsTestData.AssertClose(reference, TfjsTestData.KerasOrder(y));
        output.WriteLine($"{name}: max |diff| {diff:G4}, max |ref| {reference.Max(Math.Abs):G4}");
    }

    [Fact]
    public void LoadNetwork_TrainingMode_BatchNormUsesBatchStatisticsLikeTfjs()
    {
        const string name = "nested";
        var input = TfjsTestData.ReadFloats(Path.Combine(TfjsTestData.FixtureDir(name), "input.bin"));
        var reference = TfjsTestData.ReadFloats(Path.Combine(TfjsTestData.FixtureDir(name), "train-output.bin"));
        var inference = TfjsTestData.ReadFloats(Path.Combine(TfjsTestData.FixtureDir(name), "output.bin"));
        using var network = TfjsModel.LoadNetwork(TfjsTestData.ModelJson(name));
        network.train();
        using var x = TfjsTestData.NchwFromNhwc(input, TfjsTestData.Shape(TfjsTestData.Meta(name), "inputShape"));
        using var y = network.forward(x);
        Assert.True(y.requires_grad);
        var actual = TfjsTestData.KerasOrder(y.detach());
        TfjsTestData.AssertClose(reference, actual);
        Assert.Contains(Enumerable.Range(0, actual.Length), i => Math.Abs(actual[i] - inference[i]) > 1e-3);
    }

    [Fact]
    public void LoadNetwork_KerasPythonStyleTopology_MatchesTfjsOutput()
    {
        // The nested fixture rewritten as tensorflowjs_converter writes a tf.keras model: topology under model_config,
        // a Keras 2 version, nested-model calls numbered from 0, an InputLayer in each Sequential, and weight names
        // prefixed with their model's name.
        var dir = Directory.CreateTempSubdirectory("tfjs-keras-").FullName;
        try
        {
            var root = (JsonObject)JsonNode.Parse(File.ReadAllText(TfjsTestData.ModelJson("nested")))!;
            var topology = (JsonObject)root["modelTopology"]!;
            root["modelTopology"] = new JsonObject
            {
                ["keras_version"] = "2.15.0",
                ["backend"] = "tensorflow",
                ["model_config"] = topology.DeepClone(),
            };
            var json = root.ToJsonString()
                .Replace("[\"n_inner_seq\",1,0,{}]", "[\"n_inner_seq\",0,0,{}]", StringComparison.Ordinal)
                .Replace("{\"class_name\":\"Sequential\",\"config\":{\"name\":\"n_head\",\"layers\":[", "{\"class_name\":\"Sequential\",\"config\":{\"name\":\"n_head\",\"layers\":[{\"class_name\":\"InputLayer\",\"config\":{\"batch_input_shape\":[null,4],\"name\":\"n_head_in\"}},", StringComparison.Ordinal)
                .Replace("\"name\":\"n_seq_", "\"name\":\"n_base/n_seq_", StringComparison.Ordinal);
            Assert.Contains("n_head_in", json, StringComparison.Ordinal);
            Assert.Contains("[\"n_inner_seq\",0,0,{}]", json, StringComparison.Ordinal);
            File.WriteAllText(Path.Combine(dir, "model.json"), json.Replace("\"name\":\"n_base/n_seq_conv\",\"trainable\"", "\"name\":\"n_seq_conv\",\"trainable\"", StringComparison.Ordinal)
                .Replace("\"name\":\"n_base/n_seq_bn\",\"trainable\"", "\"name\":\"n_seq_bn\",\"trainable\"", StringComparison.Ordinal)
                .Replace("\"name\":\"n_base/n_seq_relu\",\"trainable\"", "\"name\":\"n_seq_relu\",\"trainable\"", StringComparison.Ordinal));
            File.Copy(Path.Combine(TfjsTestData.FixtureDir("nested"), "weights.bin"), Path.Combine(dir, "weights.bin"));
            Assert.Contains("n_base/n_seq_bn/moving_mean", File.ReadAllText(Path.Combine(dir, "model.json")), StringComparison.Ordinal);

            var input = TfjsTestData.ReadFloats(Path.Combine(TfjsTestData.FixtureDir("nested"), "input.bin"));
            var reference = TfjsTestData.ReadFloats(Path.Combine(TfjsTestData.FixtureDir("nested"), "output.bin"));
            using var network = TfjsModel.LoadNetwork(Path.Combine(dir, "model.json"));
            network.eval();
            using var noGrad = no_grad();
            using var x = TfjsTestData.NchwFromNhwc(input, [2, 8, 8, 3]);
            using var y = network.forward(x);
            TfjsTestData.AssertClose(reference, TfjsTestData.KerasOrder(y));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Load_InputSpecOverride_Used()
    {
        var spec = InputSpec.ImageNet(8);
        using var backbone = TfjsModel.Load(TfjsTestData.ModelJson("nested"), new TfjsLoadOptions { InputSpec = spec });
        Assert.Equal(spec, backbone.InputSpec);
    }

    [Fact]
    public void Load_FeatureLayerNamed_MatchesTfjsIntermediateOutput()
    {
        const string name = "merge_reshape";
        var meta = TfjsTestData.Meta(name);
        var input = TfjsTestData.ReadFloats(Path.Combine(TfjsTestData.FixtureDir(name), "input.bin"));
        var reference = TfjsTestData.ReadFloats(Path.Combine(TfjsTestData.FixtureDir(name), "features.bin"));
        using var backbone = TfjsModel.Load(TfjsTestData.ModelJson(name), new TfjsLoadOptions { FeatureLayer = "m_cat_out" });
        Assert.Equal((int)TfjsTestData.Shape(meta, "featureShape")[1], backbone.FeatureSize);
        backbone.SetTrainingMode(false);
        using var noGrad = no_grad();
        using var x = TfjsTestData.NchwFromNhwc(input, TfjsTestData.Shape(meta, "inputShape"));
        using var y = backbone.Forward(x);
        TfjsTestData.AssertClose(reference, TfjsTestData.KerasOrder(y));
    }

    [Fact]
    public void Load_NoFeatureLayer_CutsBeforeFinalDenseHead()
    {
        // merge_reshape ends in Concatenate -> Dense(softmax): the cut is the Concatenate output, same as naming it.
        using var auto = TfjsModel.Load(TfjsTestData.ModelJson("merge_reshape"));
        Assert.Equal(TfjsTestData.Shape(TfjsTestData.Meta("merge_reshape"), "featureShape")[1], auto.FeatureSize);
        Assert.DoesNotContain("m_head", auto.Blocks);

        // nested: Sequential[Sequential[Model, GAP], Sequential[Dense, Dense]] -> the 4-d GAP output.
        using var nested = TfjsModel.Load(TfjsTestData.ModelJson("nested"));
        Assert.Equal(4, nested.FeatureSize);
        Assert.Equal(["n_seq_conv", "n_seq_bn", "n_skip"], nested.Blocks);
        Assert.Equal(new InputSpec(8, 8, 0f, 1f), nested.InputSpec);
    }

    [Fact]
    [Trait("Category", "RealData")]
    public void Load_TeachableMachineMobileNetV2_FeaturesMatchTfjs()
    {
        var dir = TfjsTestData.TeachableMachineDir;

        var reference = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "TestData", "tfjs", "teachable-machine-reference.json")))!;
        using var backbone = TfjsModel.Load(Path.Combine(dir, "model.json"));
        Assert.Equal(1280, backbone.FeatureSize);
        Assert.Equal(InputSpec.MinusOneToOne(224), backbone.InputSpec);
        Assert.Equal("Conv1", backbone.Blocks[0]);
        Assert.Equal("Conv_1_bn", backbone.Blocks[^1]);
        Assert.Equal(104, backbone.Blocks.Count); // 52 conv/depthwise + 52 BatchNorm; the Dense head is dropped.
        backbone.SetTrainingMode(false);
        using var noGrad = no_grad();
        foreach (var (key, formula) in Inputs())
        {
            var expected = ((JsonArray)reference["inputs"]![key]!["features"]!).Select(v => (float)v!).ToArray();
            using var x = TfjsTestData.NchwFromNhwc(Enumerable.Range(0, 224 * 224 * 3).Select(formula).ToArray(), [1, 224, 224, 3]);
            var sw = Stopwatch.StartNew();
            using var y = backbone.Forward(x);
            sw.Stop();
            var actual = TfjsTestData.KerasOrder(y);
            var diff = TfjsTestData.AssertClose(expected, actual);
            output.WriteLine($"TM {key}: max |diff| {diff:G4} vs TF.js (max |ref| {expected.Max():G6}); first: {string.Join(", ", actual.Take(10).Select(v => v.ToString("G8", System.Globalization.CultureInfo.InvariantCulture)))}; forward {sw.ElapsedMilliseconds} ms");
        }
    }

    [Fact]
    [Trait("Category", "RealData")]
    public void LoadClassifier_TeachableMachine_LabelsAndProbabilitiesMatchTfjs()
    {
        var dir = TfjsTestData.TeachableMachineDir;

        var reference = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "TestData", "tfjs", "teachable-machine-reference.json")))!;
        using var classifier = TfjsModel.LoadClassifier(Path.Combine(dir, "model.json"));
        Assert.Equal(["one", "two", "nothing", "three", "four", "five", "six", "seven", "eight", "nine"], classifier.Labels);
        Assert.Equal(InputSpec.MinusOneToOne(224), classifier.InputSpec);
        var expected = ((JsonArray)reference["inputs"]!["modular"]!["probabilities"]!).Select(v => (float)v!).ToArray();
        using var x = TfjsTestData.NchwFromNhwc(Enumerable.Range(0, 224 * 224 * 3).Select(Inputs()[0].Formula).ToArray(), [1, 224, 224, 3]);
        using var y = classifier.Predict(x);
        var diff = TfjsTestData.AssertClose(expected, TfjsTestData.KerasOrder(y));
        output.WriteLine($"TM probabilities: max |diff| {diff:G4}");
    }

    private static (string Key, Func<int, float> Formula)[] Inputs() =>
    [
        ("modular", i => (float)((((long)i * 7919) % 256) / 127.5 - 1)),
        ("sine", i => (float)(Math.Sin(i * 0.001) * 0.9)),
    ];
}
