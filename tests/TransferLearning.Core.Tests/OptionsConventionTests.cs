using TransferLearning.Backbones.Tfjs;
using TransferLearning.Hub;
using TransferLearning.Models;
using TransferLearning.Training;

namespace TransferLearning.Core.Tests;

/// <summary>Options objects check values when they are set (one convention for every options type).</summary>
public sealed class OptionsConventionTests
{
    [Fact]
    public void ModelLoadOptions_NotADevice_ThrowsWhenSet()
    {
        var e = Assert.Throws<ArgumentException>(() => new ModelLoadOptions { Device = "gpu0" });
        Assert.StartsWith("'gpu0' is not a device name; use 'cpu', 'cuda' or 'cuda:N'.", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void BackboneLoadOptions_Sha256NotHex_ThrowsWhenSet()
    {
        var e = Assert.Throws<ArgumentException>(() => new BackboneLoadOptions { Sha256 = "abc" });
        Assert.StartsWith("A SHA-256 is 64 hexadecimal digits; got 'abc'.", e.Message, StringComparison.Ordinal);
        Assert.Equal(new string('a', 64), new BackboneLoadOptions { Sha256 = new string('a', 64) }.Sha256);
    }

    [Fact]
    public void TfjsLoadOptions_InputSizeZero_ThrowsWhenSet() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => new TfjsLoadOptions { InputSize = 0 });

    [Theory]
    [InlineData(-1, 0)]
    [InlineData(181, 0)]
    [InlineData(0, 1.5)]
    public void Augmentation_OutOfRange_ThrowsWhenSet(double rotation, double zoom) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => new Augmentation { RotationDegrees = rotation, Zoom = zoom });

    [Fact]
    public void Augmentation_ChangedAfterWithAugmentation_LearnerKeepsItsCopy()
    {
        var augmentation = new Augmentation { HorizontalFlip = true };
        var options = new TrainingOptions { Augmentation = augmentation };
        augmentation.Zoom = 0.5;
        Assert.Equal(0, options.Augmentation.Zoom);
        Assert.True(Augmentation.None != Augmentation.None, "None is a new instance each time, so no one can change everyone's");
    }
}
