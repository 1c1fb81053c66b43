using System.Text.Json;
using Microsoft.ML.OnnxRuntime;
using Onnx;
using TransferLearning.Backbones.Onnx.Export;
using TransferLearning.Backbones.Tfjs;
using TransferLearning.Core.Tests.Tfjs;
using TransferLearning.Datasets;
using TransferLearning.Hub;
using TransferLearning.Models;
using static TorchSharp.torch;

namespace TransferLearning.Core.Tests.Export;

/// <summary>What an exported file promises: names, shapes, metadata, opset; atomic writes; clear failures; int8 in float.</summary>
public sealed class OnnxExportContractTests
{
    private static TrainedModel TfjsModelWith(InputSpec? spec = null)
    {
        var backbone = TfjsModel.Load(TfjsTestData.ModelJson("bn_act"), new TfjsLoadOptions { InputSpec = spec, Source = "https://example.com/bn_act/model.json" });
        return ExportTestSupport.Model(backbone, spec);
    }

    [Fact]
    public void ExportOnnx_File_HasTheContractsInputsOutputsAndMetadata()
    {
        var spec = new InputSpec(6, 7, 0f, 1f, resizeMode: ResizeMode.CenterCrop);
        using var model = TfjsModelWith(spec);
        var options = new OnnxExportOptions();
        options.Metadata["author"] = "tests";
        var bytes = ExportTestSupport.Export(model, "contract", options);

        using var session = new InferenceSession(bytes);
        var input = Assert.Single(session.InputMetadata);
        Assert.Equal("image", input.Key);
        Assert.Equal(typeof(float), input.Value.ElementType);
        Assert.Equal([-1, 3, 7, 6], input.Value.Dimensions);
        Assert.Equal("N", input.Value.SymbolicDimensions[0]);
        Assert.Equal(["probabilities", "logits"], session.OutputMetadata.Keys);
        foreach (var o in session.OutputMetadata.Values)
        {
            Assert.Equal(typeof(float), o.ElementType);
            Assert.Equal([-1, 5], o.Dimensions);
        }

        var meta = session.ModelMetadata;
        Assert.Equal("TransferLearning", meta.ProducerName);
        Assert.Contains("float32 [N, 3, 7, 6], RGB, values 0..255", meta.Description, StringComparison.Ordinal);
        var props = meta.CustomMetadataMap;
        Assert.Equal(ExportTestSupport.FlowerClasses, JsonSerializer.Deserialize<string[]>(props["classes"]));
        Assert.Equal([7, 6], JsonSerializer.Deserialize<int[]>(props["input_size"])!);
        Assert.Equal("center-crop", props["resize"]);
        Assert.Equal("https://example.com/bn_act/model.json", props["source"]);
        Assert.Equal(OnnxBackboneExport.LibraryVersion, props["transferlearning_version"]);
        Assert.False(string.IsNullOrWhiteSpace(props["transferlearning_version"]));
        Assert.Equal("tests", props["author"]);

        var proto = ModelProto.Parser.ParseFrom(bytes);
        Assert.Equal(8, proto.IrVersion);
        var opset = Assert.Single(proto.OpsetImport);
        Assert.Equal((string.Empty, 17L), (opset.Domain, opset.Version));
        Assert.Equal(OnnxBackboneExport.LibraryVersion, proto.ProducerVersion);
        Assert.Equal(["classes", "input_size", "resize", "source", "transferlearning_version", "author"], proto.MetadataProps.Select(p => p.Key));
    }

    [Fact]
    public void ExportOnnx_StretchWithoutLogits_HasOnlyProbabilities()
    {
        using var model = TfjsModelWith();
        var bytes = ExportTestSupport.Export(model, "no_logits", new OnnxExportOptions { IncludeLogits = false, Description = "flowers" });
        using var session = new InferenceSession(bytes);
        Assert.Equal(["probabilities"], session.OutputMetadata.Keys);
        Assert.Equal("stretch", session.ModelMetadata.CustomMetadataMap["resize"]);
        Assert.Equal("flowers", session.ModelMetadata.Description);
    }

    [Fact]
    public void ExportOnnx_ReservedMetadataKey_FailsWithoutWriting()
    {
        using var model = TfjsModelWith();
        using var dir = new TempDir();
        var options = new OnnxExportOptions();
        options.Metadata["classes"] = "[]";
        var ex = Assert.Throws<ArgumentException>(() => model.ExportOnnx(dir.Combine("m.onnx"), options));
        Assert.Contains("'classes'", ex.Message, StringComparison.Ordinal);
        Assert.Empty(Directory.GetFileSystemEntries(dir.Path));
    }

    [Fact]
    public void ExportOnnx_HandBuiltBackbone_FailsNamingItAndLeavesNoFile()
    {
        using var model = ExportTestSupport.Model(TestBackbones.Tiny());
        using var dir = new TempDir();
        var fresh = dir.Combine("sub", "fresh.onnx");
        var ex = Assert.Throws<NotSupportedException>(() => model.ExportOnnx(fresh));
        Assert.Contains($"The backbone '{TestBackbones.TinySource}' cannot be exported to ONNX", ex.Message, StringComparison.Ordinal);
        Assert.Contains("Sequential wrapped by hand", ex.Message, StringComparison.Ordinal);
        Assert.False(Directory.Exists(dir.Combine("sub")));

        // An existing file is left as it was, and no temporary file stays behind.
        var existing = dir.Combine("existing.onnx");
        File.WriteAllText(existing, "previous export");
        Assert.Throws<NotSupportedException>(() => model.ExportOnnx(existing));
        Assert.Equal("previous export", File.ReadAllText(existing));
        Assert.Equal([existing], Directory.GetFileSystemEntries(dir.Path));
    }

    [Fact]
    public void ExportOnnx_ReplacesAnExistingFileAtomically()
    {
        using var model = TfjsModelWith();
        using var dir = new TempDir();
        var path = dir.Combine("model.onnx");
        File.WriteAllText(path, "old");
        model.ExportOnnx(path);
        Assert.Equal("TransferLearning", ModelProto.Parser.ParseFrom(File.ReadAllBytes(path)).ProducerName);
        Assert.Equal([path], Directory.GetFileSystemEntries(dir.Path));
    }

    [Fact]
    public void ExportOnnx_Int8Backbone_WritesTheFloatWeights()
    {
        using var model = ExportTestSupport.Model(ModelHub.LoadBackbone("resnet18"));
        model.Backbone.Freeze();
        var floatExport = ExportTestSupport.Export(model, "resnet18_float");
        using (var calibration = stack(ExportTestSupport.Photos(1).Select(p => ImageTensor.FromFile(p, model.InputSpec)).ToArray()))
        {
            model.Backbone.QuantizeInt8([calibration]);
        }

        Assert.True(model.Backbone.IsInt8);
        var int8Export = ExportTestSupport.Export(model, "resnet18_int8");
        Assert.True(model.Backbone.IsInt8); // exporting does not change how the model runs
        Assert.Equal(floatExport, int8Export);
    }
}
