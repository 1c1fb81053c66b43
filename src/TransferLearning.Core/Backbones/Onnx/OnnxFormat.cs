using System.Globalization;
using Google.Protobuf;
using Onnx;
using TransferLearning.Datasets;
using TransferLearning.Hub;

namespace TransferLearning.Backbones.Onnx;

/// <summary>ONNX graphs (opsets 7–21), imported as <see cref="OnnxGraphModule"/>; saved models keep the graph without its weights.</summary>
internal sealed class OnnxFormat : IBackboneFormat
{
    private const string GraphFile = "backbone.onnx";

    private OnnxFormat()
    {
    }

    public static OnnxFormat Instance { get; } = new();

    public string Name => "onnx";

    public string Description => "an .onnx file";

    public bool Recognizes(string fileName, BackboneLoadOptions options) =>
        fileName.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase);

    public Task<Backbone> LoadAsync(BackboneFile file, BackboneLoadOptions options, CancellationToken cancellationToken) =>
        Task.FromResult(OnnxBackboneLoader.Load(file.LocalPath, file.Source, options.FeatureNode, options.InputSpec, options.Features, options.MirrorAveraged));

    public Backbone Rebuild(BackboneArchitecture architecture, string source, InputSpec inputSpec)
    {
        ModelProto skeleton;
        try
        {
            skeleton = ModelProto.Parser.ParseFrom(architecture.File(GraphFile));
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new InvalidDataException($"The saved ONNX backbone graph is damaged ({e.Message}).", e);
        }

        var module = new OnnxGraphModule(skeleton, "saved model", fromSkeleton: true) { FlattenOutput = true };
        try
        {
            var featureSize = int.Parse(architecture.Setting("feature_size"), CultureInfo.InvariantCulture);
            var fixedSize = architecture.Setting("fixed_input_size") == "true";
            return new Backbone(source, module, featureSize, inputSpec) { FixedInputSize = fixedSize };
        }
        catch
        {
            module.Dispose();
            throw;
        }
    }

    /// <summary>What a saved model records for a backbone running <paramref name="module"/>: its graph without weights.</summary>
    public static BackboneArchitecture Describe(OnnxGraphModule module, int featureSize, bool fixedInputSize) =>
        new(
            Instance.Name,
            new Dictionary<string, string>
            {
                ["feature_size"] = featureSize.ToString(CultureInfo.InvariantCulture),
                ["fixed_input_size"] = fixedInputSize ? "true" : "false",
            },
            new Dictionary<string, byte[]> { [GraphFile] = module.Skeleton().ToByteArray() });
}
