using TransferLearning.Training;
using static TorchSharp.torch;

namespace TransferLearning.Core.Tests.Training;

public class AugmenterTests
{
    [Fact]
    public void Apply_FlipOnly_EachImageIsItselfOrItsMirror()
    {
        manual_seed(1);
        using var images = rand(16, 3, 8, 10);
        using var g = new Generator(5, CPU);
        using var result = Augmenter.Apply(images, new Augmentation { HorizontalFlip = true }, g);

        var flipped = 0;
        for (var i = 0; i < 16; i++)
        {
            using var scope = NewDisposeScope();
            var same = result[i].allclose(images[i], 1e-5, 1e-5);
            var mirrored = result[i].allclose(images[i].flip(2), 1e-5, 1e-5);
            Assert.True(same || mirrored, $"image {i} is neither unchanged nor mirrored");
            flipped += mirrored ? 1 : 0;
        }

        Assert.InRange(flipped, 1, 15);
    }

    [Fact]
    public void Apply_SameGeneratorSeed_SameResult()
    {
        manual_seed(1);
        using var images = rand(4, 3, 16, 16);
        var augmentation = new Augmentation { HorizontalFlip = true, RotationDegrees = 20, Zoom = 0.2 };
        using var g1 = new Generator(9, CPU);
        using var g2 = new Generator(9, CPU);
        using var a = Augmenter.Apply(images, augmentation, g1);
        using var b = Augmenter.Apply(images, augmentation, g2);
        Assert.True(a.equal(b).all().item<bool>());
        Assert.False(a.allclose(images));
        Assert.Equal(images.shape, a.shape);
    }

    [Fact]
    public void Apply_None_ReturnsSameValues()
    {
        using var images = ones(2, 3, 4, 4);
        using var g = new Generator(1, CPU);
        using var result = Augmenter.Apply(images, Augmentation.None, g);
        Assert.True(result.equal(images).all().item<bool>());
    }
}
