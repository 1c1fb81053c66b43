using TorchSharp;
using static TorchSharp.torch;

namespace TransferLearning.Heads;

/// <summary>Activation used between the hidden layers of a head.</summary>
public enum HeadActivation
{
    /// <summary>max(0, x).</summary>
    Relu,

    /// <summary>Gaussian error linear unit.</summary>
    Gelu,

    /// <summary>Hyperbolic tangent.</summary>
    Tanh,

    /// <summary>x · sigmoid(x) (swish).</summary>
    Silu,
}

/// <summary>Shape of the classification head put on top of the backbone's feature vector.</summary>
/// <remarks>The default is the article's head: one Dense layer to the classes, softmax at prediction time.</remarks>
public sealed class HeadOptions
{
    private IReadOnlyList<int> _hiddenUnits = [];
    private double _dropout;

    /// <summary>Units of each hidden Dense layer, in order. Default: none (a single Dense layer to the classes).</summary>
    public IReadOnlyList<int> HiddenUnits
    {
        get => _hiddenUnits;
        set
        {
            ArgumentNullException.ThrowIfNull(value);
            if (value.Any(u => u <= 0))
            {
                throw new ArgumentOutOfRangeException(nameof(value), "Every hidden layer needs at least one unit.");
            }

            _hiddenUnits = [.. value];
        }
    }

    /// <summary>Dropout rate applied before every Dense layer of the head while training, in [0, 1). Default 0.</summary>
    public double Dropout
    {
        get => _dropout;
        set
        {
            if (!(value >= 0 && value < 1))
            {
                throw new ArgumentOutOfRangeException(nameof(value), value, "Dropout must be in [0, 1).");
            }

            _dropout = value;
        }
    }

    /// <summary>Activation between hidden layers. Default <see cref="HeadActivation.Relu"/>.</summary>
    public HeadActivation Activation { get; set; } = HeadActivation.Relu;

    internal HeadOptions Clone() => new() { HiddenUnits = HiddenUnits, Dropout = Dropout, Activation = Activation };
}

/// <summary>Builds the head module: [N, features] → logits [N, classes].</summary>
internal static class HeadFactory
{
    public static nn.Module<Tensor, Tensor> Create(int featureSize, int classCount, HeadOptions options)
    {
        var layers = new List<(string, nn.Module<Tensor, Tensor>)>();
        var inputs = featureSize;
        for (var i = 0; i < options.HiddenUnits.Count; i++)
        {
            if (options.Dropout > 0)
            {
                layers.Add(($"dropout{i}", nn.Dropout(options.Dropout)));
            }

            layers.Add(($"dense{i}", nn.Linear(inputs, options.HiddenUnits[i])));
            layers.Add(($"{options.Activation.ToString().ToLowerInvariant()}{i}", options.Activation switch
            {
                HeadActivation.Gelu => nn.GELU(),
                HeadActivation.Tanh => nn.Tanh(),
                HeadActivation.Silu => nn.SiLU(),
                _ => nn.ReLU(),
            }));
            inputs = options.HiddenUnits[i];
        }

        if (options.Dropout > 0)
        {
            layers.Add(("dropout", nn.Dropout(options.Dropout)));
        }

        layers.Add(("logits", nn.Linear(inputs, classCount)));
        return nn.Sequential(layers);
    }
}
