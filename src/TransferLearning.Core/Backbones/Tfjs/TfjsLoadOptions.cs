using TransferLearning.Datasets;

namespace TransferLearning.Backbones.Tfjs;

/// <summary>Options for loading a TensorFlow.js layers model with <see cref="TfjsModel"/>.</summary>
public sealed class TfjsLoadOptions
{
    /// <summary>
    /// Name of the Keras layer (or nested model) whose output is the feature vector. Null picks the input of the final
    /// Dense head (for a Teachable Machine export: the 1280-d GlobalAveragePooling2D output). A feature map
    /// (<c>[N, H, W, C]</c>) is averaged over H and W into a C-long vector.
    /// </summary>
    public string? FeatureLayer { get; init; }

    /// <summary>How images must be prepared; null derives it from the model (MobileNet family and Teachable Machine: [-1, 1]; otherwise [0, 1]).</summary>
    public InputSpec? InputSpec { get; init; }

    /// <summary>Input size (square) used when the model does not fix one in its InputLayer; 224 when null.</summary>
    public int? InputSize { get; init; }

    /// <summary>What to record as the backbone's source (e.g. the URL it was downloaded from); the model.json path when null.</summary>
    public string? Source { get; init; }
}
