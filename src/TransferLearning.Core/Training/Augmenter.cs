using static TorchSharp.torch;

namespace TransferLearning.Training;

/// <summary>Applies random flip, rotation and zoom to a training batch as one affine resampling per image.</summary>
internal static class Augmenter
{
    /// <summary>Returns an augmented copy of <paramref name="images"/> ([N, C, H, W], already normalised).</summary>
    public static Tensor Apply(Tensor images, Augmentation augmentation, Generator generator)
    {
        if (!augmentation.IsEnabled)
        {
            return images.alias();
        }

        var n = images.shape[0];
        using var scope = NewDisposeScope();
        var angle = (rand(n, generator: generator) * 2 - 1) * (augmentation.RotationDegrees * Math.PI / 180);
        var zoom = 1 + (rand(n, generator: generator) * augmentation.Zoom);
        var flip = augmentation.HorizontalFlip
            ? where(rand(n, generator: generator) < 0.5, tensor(-1f), tensor(1f))
            : ones(n);
        var cos = angle.cos() / zoom;
        var sin = angle.sin() / zoom;
        var zero = zeros(n);

        // Output pixel (x, y) samples input at [[cos·f, −sin], [sin·f, cos]]·(x, y): flip, then rotate, then zoom in.
        var theta = stack([cos * flip, -sin, zero, sin * flip, cos, zero], 1).reshape(n, 2, 3).to(images.dtype).to(images.device);
        var grid = nn.functional.affine_grid(theta, images.shape, align_corners: false);
        var result = nn.functional.grid_sample(images, grid, GridSampleMode.Bilinear, GridSamplePaddingMode.Reflection, align_corners: false);
        return result.MoveToOuterDisposeScope();
    }
}
