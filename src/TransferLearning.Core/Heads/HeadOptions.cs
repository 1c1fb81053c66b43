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
/// <remarks>The default is one Dense layer to the classes, softmax at prediction time.</remarks>
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
    /// <summary>
    /// Creates the head with PyTorch's default Linear initialisation (uniform ±1/√fan_in) drawn from a generator of its
    /// own, so the same seed gives the same weights whatever other threads do with the global generator.
    /// </summary>
    public static nn.Module<Tensor, Tensor> Create(int featureSize, int classCount, HeadOptions options, int seed)
    {
        var head = Create(featureSize, classCount, options);
        using var generator = new Generator(unchecked((ulong)seed), CPU);
        using var noGrad = no_grad();
        foreach (var (name, module) in head.named_children())
        {
            if (module is TorchSharp.Modules.Linear linear)
            {
                var bound = 1.0 / Math.Sqrt(linear.weight!.shape[1]);
                Uniform(linear.weight, bound, generator);
                if (linear.bias is { } bias)
                {
                    Uniform(bias, bound, generator);
                }
            }
        }

        return head;
    }

    // nn.init.uniform_ ignores its generator in TorchSharp 0.107; rand honours it.
    private static void Uniform(Tensor parameter, double bound, Generator generator)
    {
        using var values = rand(parameter.shape, generator: generator);
        parameter.copy_(values.mul_(2 * bound).sub_(bound));
    }

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
