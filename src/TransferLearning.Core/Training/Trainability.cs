using TransferLearning.Backbones;

namespace TransferLearning.Training;

/// <summary>Which backbone blocks a fit trains: none (frozen) or every block from <see cref="FirstBlock"/> on.</summary>
/// <param name="IsFrozen">True when no block is trained.</param>
/// <param name="FirstBlock">Index of the first trained block (0 = all) when not frozen.</param>
internal sealed record Trainability(bool IsFrozen, int FirstBlock)
{
    public static Trainability Frozen { get; } = new(true, 0);

    public static Trainability FromBlock(int index) => new(false, index);

    /// <summary>Sets the backbone's parameters and BatchNorm modes accordingly.</summary>
    public void ApplyTo(Backbone backbone)
    {
        if (IsFrozen)
        {
            backbone.Freeze();
        }
        else
        {
            backbone.Unfreeze(FirstBlock);
        }
    }
}
