using System.Runtime.InteropServices;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Metadata.Profiles.Exif;
using SixLabors.ImageSharp.PixelFormats;
using TransferLearning.Datasets;
using TransferLearning.Inference;

namespace TransferLearning.Core.Tests.Inference;

/// <summary>
/// The LibTorch-free inference package feeds ONNX Runtime exactly the pixels the trainer gets from
/// <see cref="ImageTensor"/> for the same file (issue 11, section 3). The fixture model is the Inference tests' own.
/// </summary>
public sealed class InferencePixelParityTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Theory]
    [Trait("Category", "Parity")]
    [Trait("Category", "RealData")]
    [InlineData("flowers_stretch.onnx")]
    [InlineData("square_crop.onnx")]
    public void FedPixels_AreBitIdenticalToImageTensor(string model)
    {
        using var classifier = ImageClassifier.Load(RepoPaths.TestData("inference", model));
        var fed = new List<float[]>();
        classifier.InputObserver = fed.Add;
        var files = Photos().Append(Rotated()).Append(Large()).ToList();
        // What the trainer sees, with the value range the export contract fixes (0..255 RGB; the graph normalises).
        var spec = new InputSpec(classifier.InputWidth, classifier.InputHeight, 0f, 255f, ChannelOrder.Rgb, resizeMode: classifier.ResizeMode);

        foreach (var file in files)
        {
            fed.Clear();
            classifier.Predict(file);
            using (var stream = File.OpenRead(file))
            {
                classifier.Predict(stream);
            }

            using (var image = Image.Load<Rgb24>(file))
            {
                classifier.Predict(image);
            }

            using var tensor = ImageTensor.FromFile(file, spec);
            var trainer = tensor.data<float>().ToArray();
            Assert.Equal(3, fed.Count);
            foreach (var input in fed)
            {
                Assert.True(MemoryMarshal.AsBytes(trainer.AsSpan()).SequenceEqual(MemoryMarshal.AsBytes(input.AsSpan())), $"{model}: {file}");
            }
        }

        fed.Clear();
        classifier.Predict(files, batchSize: files.Count);
        var batch = files.SelectMany(f =>
        {
            using var t = ImageTensor.FromFile(f, spec);
            return t.data<float>().ToArray();
        }).ToArray();
        Assert.True(MemoryMarshal.AsBytes(batch.AsSpan()).SequenceEqual(MemoryMarshal.AsBytes(fed.Single().AsSpan())));
    }

    private static IEnumerable<string> Photos()
    {
        var all = Directory.GetFiles(RepoPaths.SamplePhotos, "*.jpg", SearchOption.AllDirectories);
        Array.Sort(all, StringComparer.Ordinal);
        return all.Where((_, i) => i % 30 == 0);
    }

    /// <summary>A JPEG whose EXIF orientation (6: rotate 90° clockwise) turns it from landscape to portrait.</summary>
    private string Rotated()
    {
        using var image = TestImages.TwoColour(60, 30, 20, new Rgb24(250, 10, 10), new Rgb24(10, 10, 250));
        image.Metadata.ExifProfile = new ExifProfile();
        image.Metadata.ExifProfile.SetValue(ExifTag.Orientation, (ushort)6);
        var path = _dir.Combine("rotated.jpg");
        image.SaveAsJpeg(path);
        return path;
    }

    /// <summary>A PNG more than 3× the input size, so the antialiasing pre-shrink runs.</summary>
    private string Large()
    {
        var path = _dir.Combine("large.png");
        using var image = Image.Load<Rgb24>(TestImages.NoiseJpegBytes(400, 300, seed: 7));
        image.SaveAsPng(path);
        return path;
    }
}
