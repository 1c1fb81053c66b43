using TransferLearning.Native;
using static TorchSharp.torch;

namespace TransferLearning.Training;

/// <summary>
/// Per-feature standardisation of cached features, <c>(x − mean) · scale</c> with <c>scale = 1 / √var</c> over the
/// training features (1 for a feature that is constant on them: it is only centred), and its fold into a head's first
/// Dense layer: <c>W' = W · diag(scale)</c>, <c>b' = b − W' · mean</c>.
/// </summary>
internal sealed class FeatureStandardization : IDisposable
{
    private FeatureStandardization(Tensor mean, Tensor scale)
    {
        Mean = mean;
        Scale = scale;
    }

    /// <summary>Per-feature means of the training features.</summary>
    public Tensor Mean { get; }

    /// <summary>Per-feature factors applied after the mean is subtracted.</summary>
    public Tensor Scale { get; }

    /// <summary>Statistics over all rows of <paramref name="features"/> (e.g. every cached view), in float64, two passes.</summary>
    public static FeatureStandardization Of(IReadOnlyList<Tensor> features)
    {
        using var scope = NewDisposeScope();
        var rows = features.Sum(f => f.shape[0]);
        if (rows == 0)
        {
            throw new InvalidOperationException("There are no training features to standardise.");
        }

        long[] rowsDim = [0]; // sum(0) would bind to sum(ScalarType) and add up everything
        var mean = features.Select(f => f.to(float64).sum(rowsDim)).Aggregate((a, b) => a + b) / rows;
        var variance = features.Select(f => (f.to(float64) - mean).square().sum(rowsDim)).Aggregate((a, b) => a + b) / rows;
        var scale = where(variance > 0, variance.rsqrt(), ones_like(variance));
        var dtype = features[0].dtype;

        // Owned by this object (disposed with it), not by any caller's dispose scope.
        return new FeatureStandardization(mean.to(dtype).DetachFromDisposeScope(), scale.to(dtype).DetachFromDisposeScope());
    }

    /// <summary>Standardises <paramref name="features"/> in place.</summary>
    public void Apply(Tensor features)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        features.sub_(Mean.to(features.device)).mul_(Scale.to(features.device));
    }

    /// <summary>Rewrites the head's first Dense layer so that on raw features it computes what it computed on standardised ones.</summary>
    public void FoldInto(nn.Module head)
    {
        var (weight, bias) = FirstDense(head);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        weight.mul_(Scale.to(weight.device));
        bias.sub_(weight.matmul(Mean.to(weight.device)));
    }

    /// <summary>The inverse of <see cref="FoldInto"/>: a head trained on raw features, rewritten to take standardised ones.</summary>
    public void UnfoldFrom(nn.Module head)
    {
        var (weight, bias) = FirstDense(head);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        bias.add_(weight.matmul(Mean.to(weight.device)), KeptScalars.One);
        weight.div_(Scale.to(weight.device));
    }

    private static (Tensor Weight, Tensor Bias) FirstDense(nn.Module head) =>
        head.modules().OfType<TorchSharp.Modules.Linear>().FirstOrDefault() is { weight: { } w, bias: { } b }
            ? (w, b)
            : throw new InvalidOperationException("Feature standardisation folds into the head's first Dense layer (with a bias), and this head has none.");

    public void Dispose()
    {
        Mean.Dispose();
        Scale.Dispose();
    }
}
