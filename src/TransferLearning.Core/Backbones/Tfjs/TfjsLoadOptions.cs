using TransferLearning.Datasets;

namespace TransferLearning.Backbones.Tfjs;

/// <summary>Options for loading a TensorFlow.js layers model with <see cref="TfjsModel"/>. Setters check their value.</summary>
public sealed class TfjsLoadOptions
{
    private int? _inputSize;

    /// <summary>
    /// Name of the Keras layer (or nested model) whose output is the feature vector. Null picks the input of the final
    /// Dense head (for a Teachable Machine export: the 1280-d GlobalAveragePooling2D output). A feature map
    /// (<c>[N, H, W, C]</c>) is averaged over H and W into a C-long vector.
    /// </summary>
    public string? FeatureLayer { get; set; }

    /// <summary>How images must be prepared; null derives it from the model (MobileNet family and Teachable Machine: [-1, 1]; otherwise [0, 1]).</summary>
    public InputSpec? InputSpec { get; set; }

    /// <summary>Input size (square, at least 1) used when the model does not fix one in its InputLayer; 224 when null (default).</summary>
    public int? InputSize
    {
        get => _inputSize;
        set
        {
            if (value is < 1)
            {
                throw new ArgumentOutOfRangeException(nameof(value), value, "The input size must be at least 1 pixel.");
            }

            _inputSize = value;
        }
    }

    /// <summary>What to record as the backbone's source (e.g. the URL it was downloaded from); the model.json path when null.</summary>
    public string? Source { get; set; }
}
