using TransferLearning.Datasets;

namespace TransferLearning.Hub;

/// <summary>Options for <see cref="ModelHub.LoadBackbone(string, BackboneLoadOptions?)"/> and its async form.</summary>
public sealed class BackboneLoadOptions
{
    /// <summary>torchvision architecture of a PyTorch state dict (e.g. <c>resnet50</c>); inferred from the file name when null.</summary>
    public string? Architecture { get; init; }

    /// <summary>ONNX node or output name to cut at; when null the input of the final classifier (Gemm/MatMul) is found automatically.</summary>
    public string? FeatureNode { get; init; }

    /// <summary>Expected SHA-256 (hex) of a downloaded file; the download fails when it does not match.</summary>
    public string? Sha256 { get; init; }

    /// <summary>Download cache folder; defaults to <see cref="ModelHub.CacheDirectory"/>.</summary>
    public string? CacheDirectory { get; init; }

    /// <summary>Overrides the input spec the loader would declare.</summary>
    public InputSpec? InputSpec { get; init; }
}
