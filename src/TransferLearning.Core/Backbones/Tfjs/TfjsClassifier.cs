using TorchSharp;
using TransferLearning.Datasets;
using static TorchSharp.torch;

namespace TransferLearning.Backbones.Tfjs;

/// <summary>
/// A whole TF.js layers classifier (e.g. a Teachable Machine export): the full network, its class labels and its input spec.
/// </summary>
/// <remarks>Owns the module's native memory; dispose it (or whatever took ownership of <see cref="Module"/>).</remarks>
public sealed class TfjsClassifier : IDisposable
{
    internal TfjsClassifier(nn.Module<Tensor, Tensor> module, IReadOnlyList<string> labels, InputSpec inputSpec, string source)
    {
        Module = module;
        Labels = labels;
        InputSpec = inputSpec;
        Source = source;
    }

    /// <summary>The network: <c>[N, 3, H, W]</c> → <c>[N, Labels.Count]</c> (the model's own output, softmax included if it has one).</summary>
    public nn.Module<Tensor, Tensor> Module { get; }

    /// <summary>Class names in output order.</summary>
    public IReadOnlyList<string> Labels { get; }

    /// <summary>How images must be prepared.</summary>
    public InputSpec InputSpec { get; }

    /// <summary>Where the model came from.</summary>
    public string Source { get; }

    /// <summary>Runs the network in inference mode on a prepared batch.</summary>
    /// <param name="images">Float tensor <c>[N, 3, H, W]</c>.</param>
    /// <returns>The model's outputs <c>[N, Labels.Count]</c>.</returns>
    public Tensor Predict(Tensor images)
    {
        ArgumentNullException.ThrowIfNull(images);
        Module.eval();
        using var noGrad = torch.no_grad();
        return Module.forward(images);
    }

    /// <inheritdoc />
    public void Dispose() => Module.Dispose();
}
