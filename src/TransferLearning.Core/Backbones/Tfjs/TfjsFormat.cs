using System.Globalization;
using TransferLearning.Datasets;
using TransferLearning.Hub;

namespace TransferLearning.Backbones.Tfjs;

/// <summary>Keras models in the TensorFlow.js layers format (<c>model.json</c> + weight shards); saved models keep the model.json.</summary>
internal sealed class TfjsFormat : IBackboneFormat
{
    private const string ModelJsonFile = "model.json";

    private TfjsFormat()
    {
    }

    public static TfjsFormat Instance { get; } = new();

    public string Name => "tfjs";

    public string Description => "a TensorFlow.js layers model (model.json)";

    public bool Recognizes(string fileName, BackboneLoadOptions options) =>
        fileName.EndsWith(".json", StringComparison.OrdinalIgnoreCase);

    public async Task<Backbone> LoadAsync(BackboneFile file, BackboneLoadOptions options, CancellationToken cancellationToken)
    {
        var tfjs = new TfjsLoadOptions { FeatureLayer = options.FeatureNode, InputSpec = options.InputSpec, Source = file.Source };

        // Weight shards (and Teachable Machine's optional metadata.json) sit beside model.json: resolve each first
        // (a download through the hub cache for URLs, the file next to it for local paths).
        var siblings = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var shard in TfjsModel.ShardPaths(file.LocalPath))
        {
            siblings[shard] = await file.FetchSibling(shard, cancellationToken).ConfigureAwait(false);
        }

        try
        {
            siblings["metadata.json"] = await file.FetchSibling("metadata.json", cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is HttpRequestException or FileNotFoundException)
        {
            // Optional: only Teachable Machine exports have one.
        }

        return TfjsModel.Load(file.LocalPath, shard => siblings.TryGetValue(shard, out var local)
            ? File.OpenRead(local)
            : throw new FileNotFoundException($"'{file.Source}' needs '{shard}', which its weights manifest does not list."), tfjs);
    }

    public Backbone Rebuild(BackboneArchitecture architecture, string source, InputSpec inputSpec)
    {
        var output = int.Parse(architecture.Setting("feature_output"), CultureInfo.InvariantCulture);
        var globalPool = architecture.Setting("global_pool") == "true";
        var featureSize = int.Parse(architecture.Setting("feature_size"), CultureInfo.InvariantCulture);
        var network = TfjsModel.Rebuild(architecture.File(ModelJsonFile), output, globalPool, "saved model");
        try
        {
            return new Backbone(source, network, featureSize, inputSpec);
        }
        catch
        {
            network.Dispose();
            throw;
        }
    }

    /// <summary>What a saved model records: the model.json (its layers and the names and shapes of its weights) and the cut.</summary>
    public static BackboneArchitecture Describe(byte[] modelJson, int featureOutput, bool globalPool, int featureSize) =>
        new(
            Instance.Name,
            new Dictionary<string, string>
            {
                ["feature_output"] = featureOutput.ToString(CultureInfo.InvariantCulture),
                ["global_pool"] = globalPool ? "true" : "false",
                ["feature_size"] = featureSize.ToString(CultureInfo.InvariantCulture),
            },
            new Dictionary<string, byte[]> { [ModelJsonFile] = modelJson });
}
