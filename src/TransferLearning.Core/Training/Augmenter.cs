using TransferLearning.Datasets;
using static TorchSharp.torch;

namespace TransferLearning.Training;

/// <summary>
/// Applies an <see cref="Augmentation"/> to a training batch as batched tensor operations: one affine resampling per
/// image (random resized crop, flip, rotation, zoom) and per-image brightness and contrast in pixel units. Random
/// draws come from the caller's generator, so a seed gives the same augmented batches.
/// </summary>
internal static class Augmenter
{
    /// <summary>Returns an augmented copy of <paramref name="images"/> ([N, C, H, W], normalised as <paramref name="spec"/> says).</summary>
    public static Tensor Apply(Tensor images, Augmentation augmentation, InputSpec spec, Generator generator)
    {
        if (!augmentation.IsEnabled)
        {
            return images.alias();
        }

        using var scope = NewDisposeScope();
        var result = images;
        if (augmentation.HorizontalFlip || augmentation.RotationDegrees != 0 || augmentation.Zoom != 0 || augmentation.RandomResizedCrop)
        {
            result = Resample(result, augmentation, generator);
        }

        if (augmentation.Brightness != 0 || augmentation.Contrast != 0)
        {
            result = AdjustColour(result, augmentation, spec, generator);
        }

        return (ReferenceEquals(result, images) ? images.alias() : result).MoveToOuterDisposeScope();
    }

    /// <summary>Per image: output pixel p samples the input at crop·zoom⁻¹·rotation·flip·p + offset (normalised coordinates).</summary>
    private static Tensor Resample(Tensor images, Augmentation augmentation, Generator generator)
    {
        var n = images.shape[0];
        var angle = (Uniform(n, generator) * 2 - 1) * (augmentation.RotationDegrees * Math.PI / 180);
        var zoom = 1 + (Uniform(n, generator) * augmentation.Zoom);
        var flip = augmentation.HorizontalFlip ? where(Uniform(n, generator) < 0.5, tensor(-1.0), tensor(1.0)) : ones(n, float64);
        Tensor width, height, offsetX, offsetY;
        if (augmentation.RandomResizedCrop)
        {
            // Area share s and aspect ratio r (log-uniform) as torchvision; the window is w × h of the image, clipped to it.
            var area = augmentation.CropScaleMin + (Uniform(n, generator) * (augmentation.CropScaleMax - augmentation.CropScaleMin));
            var logRatio = Math.Log(augmentation.CropRatioMin) + (Uniform(n, generator) * (Math.Log(augmentation.CropRatioMax) - Math.Log(augmentation.CropRatioMin)));
            var ratio = logRatio.exp();
            width = (area * ratio).sqrt().clamp_max(1);
            height = (area / ratio).sqrt().clamp_max(1);
            offsetX = (Uniform(n, generator) * 2 - 1) * (1 - width);
            offsetY = (Uniform(n, generator) * 2 - 1) * (1 - height);
        }
        else
        {
            width = ones(n, float64);
            height = ones(n, float64);
            offsetX = zeros(n, float64);
            offsetY = zeros(n, float64);
        }

        var cos = angle.cos() / zoom;
        var sin = angle.sin() / zoom;
        var theta = stack([width * cos * flip, -width * sin, offsetX, height * sin * flip, height * cos, offsetY], 1)
            .reshape(n, 2, 3).to(images.dtype).to(images.device);
        var grid = nn.functional.affine_grid(theta, images.shape, align_corners: false);
        return nn.functional.grid_sample(images, grid, GridSampleMode.Bilinear, GridSamplePaddingMode.Reflection, align_corners: false);
    }

    /// <summary>Brightness (scale) and contrast (scale around the image's mean grey) on pixel values in [0, 1], clamped there.</summary>
    private static Tensor AdjustColour(Tensor images, Augmentation augmentation, InputSpec spec, Generator generator)
    {
        var n = images.shape[0];
        var channels = images.shape[1];
        var mean = tensor(spec.Mean.ToArray()).reshape(1, channels, 1, 1).to(images.device);
        var std = tensor(spec.Std.ToArray()).reshape(1, channels, 1, 1).to(images.device);
        double low = spec.RangeMin, span = spec.RangeMax - spec.RangeMin;
        var unit = ((images * std) + mean - low) / span;
        if (augmentation.Brightness != 0)
        {
            var factor = 1 + ((Uniform(n, generator) * 2 - 1) * augmentation.Brightness);
            unit = unit * factor.to(images.dtype).to(images.device).reshape(n, 1, 1, 1);
        }

        if (augmentation.Contrast != 0)
        {
            var factor = (1 + ((Uniform(n, generator) * 2 - 1) * augmentation.Contrast)).to(images.dtype).to(images.device).reshape(n, 1, 1, 1);
            var grey = unit.mean([1, 2, 3], keepdim: true);
            unit = ((unit - grey) * factor) + grey;
        }

        return ((unit.clamp(0, 1) * span) + low - mean) / std;
    }

    private static Tensor Uniform(long n, Generator generator) => rand([n], float64, generator: generator);
}
