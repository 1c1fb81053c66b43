using TransferLearning.Datasets;
using TransferLearning.Downloads;

namespace TransferLearning.Hub;

/// <summary>Options for <see cref="ModelHub.LoadBackbone(string, BackboneLoadOptions?)"/> and its async form. Setters check their value.</summary>
public sealed class BackboneLoadOptions
{
    private string? _sha256;
    private DownloadOptions _download = new();
    private BackboneFeatures _features = BackboneFeatures.Pooled;

    /// <summary>torchvision architecture of a PyTorch state dict (e.g. <c>resnet50</c>); null (default) infers it from the file name.</summary>
    public string? Architecture { get; set; }

    /// <summary>ONNX node or output (or TF.js layer) to cut at; null (default) finds the input of the final classifier automatically.</summary>
    public string? FeatureNode { get; set; }

    /// <summary>Expected SHA-256 of a downloaded file (64 hex digits); the download fails when it does not match. Default null.</summary>
    public string? Sha256
    {
        get => _sha256;
        set
        {
            if (value is not null && (value.Length != 64 || !value.All(char.IsAsciiHexDigit)))
            {
                throw new ArgumentException($"A SHA-256 is 64 hexadecimal digits; got '{value}'.", nameof(value));
            }

            _sha256 = value;
        }
    }

    /// <summary>Download cache folder; null (default) uses <see cref="ModelHub.CacheDirectory"/>.</summary>
    public string? CacheDirectory { get; set; }

    /// <summary>
    /// How a URL is downloaded (retries, stall timeout, HTTP client); setting it stores a copy. Default: the
    /// <see cref="DownloadOptions"/> defaults.
    /// </summary>
    public DownloadOptions Download
    {
        get => _download;
        set => _download = value?.Clone() ?? throw new ArgumentNullException(nameof(value));
    }

    /// <summary>
    /// Which features the backbone gives the head. Default <see cref="BackboneFeatures.Pooled"/>, the network's own feature
    /// vector; <see cref="BackboneFeatures.MultiStage"/> is for ONNX backbones only, and loading another format with it fails.
    /// </summary>
    public BackboneFeatures Features
    {
        get => _features;
        set => _features = Enum.IsDefined(value) ? value : throw new ArgumentOutOfRangeException(nameof(value), value, $"Unknown {nameof(BackboneFeatures)} value.");
    }

    /// <summary>
    /// When true, the backbone's features are the mean of the features of each image and of its left-right mirror, so
    /// the head sees the same features whichever way a photo faces. Every image then runs through the network twice:
    /// featurizing, fine-tuning and prediction cost about twice as much. The mirroring and the mean are added to the
    /// imported graph, so saved models and the ONNX export carry them. ONNX backbones only (the offline <c>resnet18</c>
    /// included); loading another format with it fails. Default false.
    /// </summary>
    public bool MirrorAveraged { get; set; }

    /// <summary>Overrides the input spec the loader would declare; null (default) keeps it.</summary>
    public InputSpec? InputSpec { get; set; }
}
