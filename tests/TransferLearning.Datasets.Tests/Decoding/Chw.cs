using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using TransferLearning.Datasets.Decoding;

namespace TransferLearning.Datasets.Tests.Decoding;

/// <summary>Normalised float CHW values of an image through <see cref="ImagePixels"/>, as a new array.</summary>
internal static class Chw
{
    public static float[] Of(string path, InputSpec spec, ImageDecodeOptions? options = null)
    {
        var values = new float[3 * spec.Width * spec.Height];
        ImagePixels.DecodeFile(path, spec, values, options);
        return values;
    }

    public static float[] Of(Stream stream, InputSpec spec, ImageDecodeOptions? options = null)
    {
        var values = new float[3 * spec.Width * spec.Height];
        ImagePixels.DecodeStream(stream, spec, values, options);
        return values;
    }

    public static float[] Of(Image<Rgb24> image, InputSpec spec, ImageDecodeOptions? options = null)
    {
        var values = new float[3 * spec.Width * spec.Height];
        ImagePixels.FromImage(image, spec, values, options);
        return values;
    }
}
