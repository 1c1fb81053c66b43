using TransferLearning.Datasets;
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
        using var result = Augmenter.Apply(images, new Augmentation { HorizontalFlip = true }, new InputSpec(10, 8), g);

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
        using var a = Augmenter.Apply(images, augmentation, new InputSpec(16, 16), g1);
        using var b = Augmenter.Apply(images, augmentation, new InputSpec(16, 16), g2);
        Assert.True(a.equal(b).all().item<bool>());
        Assert.False(a.allclose(images));
        Assert.Equal(images.shape, a.shape);
    }

    [Fact]
    public void Apply_None_ReturnsSameValues()
    {
        using var images = ones(2, 3, 4, 4);
        using var g = new Generator(1, CPU);
        using var result = Augmenter.Apply(images, Augmentation.None, new InputSpec(4, 4), g);
        Assert.True(result.equal(images).all().item<bool>());
    }
}

public class AugmentationOperationTests
{
    /// <summary>One image whose every pixel holds its column's position in [0, 1] (all channels), as pixel values 0..1.</summary>
    private static Tensor ColumnRamp(int size)
    {
        var ramp = linspace(0, 1, size).reshape(1, 1, 1, size);
        return ramp.expand(1, 3, size, size).contiguous();
    }

    [Fact]
    public void Apply_RandomResizedCropFullArea_LeavesTheImageUnchanged()
    {
        using var scope = NewDisposeScope();
        var image = ColumnRamp(16);
        using var g = new Generator(3, CPU);
        var crop = new Augmentation { RandomResizedCrop = true, CropScaleMin = 1, CropScaleMax = 1, CropRatioMin = 1, CropRatioMax = 1 };
        var result = Augmenter.Apply(image, crop, new InputSpec(16, 16), g);
        Assert.True(result.allclose(image, 1e-5, 1e-5));
    }

    [Fact]
    public void Apply_RandomResizedCropQuarterArea_ShowsHalfTheWidthInside()
    {
        using var scope = NewDisposeScope();
        var image = ColumnRamp(64);
        using var g = new Generator(5, CPU);
        var crop = new Augmentation { RandomResizedCrop = true, CropScaleMin = 0.25, CropScaleMax = 0.25, CropRatioMin = 1, CropRatioMax = 1 };
        for (var i = 0; i < 5; i++)
        {
            var result = Augmenter.Apply(image, crop, new InputSpec(64, 64), g);
            var min = result.min().item<float>();
            var max = result.max().item<float>();
            Assert.InRange(max - min, 0.47f, 0.52f); // half the columns, stretched to the full width
            Assert.InRange(min, -1e-5f, 0.51f);      // and wholly inside the image
            Assert.InRange(max, 0.49f, 1.00001f);
        }
    }

    [Fact]
    public void Apply_Brightness_MultipliesPixelValuesPerImage()
    {
        using var scope = NewDisposeScope();
        var spec = InputSpec.ImageNet(8);
        var pixels = rand([4, 3, 8, 8], generator: new Generator(1, CPU)) * 0.5 + 0.25; // 0.25..0.75: no clamping at ±50 %
        var mean = tensor(spec.Mean.ToArray()).reshape(1, 3, 1, 1);
        var std = tensor(spec.Std.ToArray()).reshape(1, 3, 1, 1);
        var normalised = (pixels - mean) / std;
        using var g = new Generator(2, CPU);

        var result = Augmenter.Apply(normalised, new Augmentation { Brightness = 0.3 }, spec, g);

        var ratio = ((result * std) + mean) / pixels;
        for (var n = 0; n < 4; n++)
        {
            var factor = ratio[n].mean().item<float>();
            Assert.InRange(factor, 0.7f - 1e-5f, 1.3f + 1e-5f);
            Assert.True(ratio[n].allclose(full_like(ratio[n], factor), 1e-4, 1e-4), "one factor per image");
        }
    }

    [Fact]
    public void Apply_Contrast_KeepsEachImagesMeanGrey()
    {
        using var scope = NewDisposeScope();
        var spec = new InputSpec(8, 8);
        var pixels = rand([3, 3, 8, 8], generator: new Generator(4, CPU)) * 0.4 + 0.3;
        using var g = new Generator(6, CPU);

        var result = Augmenter.Apply(pixels, new Augmentation { Contrast = 0.5 }, spec, g);

        Assert.True(result.mean([1, 2, 3]).allclose(pixels.mean([1, 2, 3]), 1e-5, 1e-5));
        Assert.False(result.allclose(pixels));
    }
}
