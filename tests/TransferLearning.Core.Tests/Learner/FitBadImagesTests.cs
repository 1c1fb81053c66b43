using TransferLearning.Datasets;
using TransferLearning.Training;

namespace TransferLearning.Core.Tests.Learner;

/// <summary>TransferLearner.WithBadImages: an unreadable image found while featurizing costs only itself (by default).</summary>
public sealed class FitBadImagesTests : IDisposable
{
    private readonly GeneratedImages _images = new();

    public void Dispose() => _images.Dispose();

    private string AddTruncatedJpeg(string className, string name)
    {
        var jpeg = TestImages.NoiseJpegBytes(48, 48, seed: name.Length);
        var path = Path.Combine(_images.Root, className, name);
        File.WriteAllBytes(path, jpeg[..(jpeg.Length / 2)]);
        return path;
    }

    private static TransferLearner Learner(DatasetSplit data) =>
        TransferLearner.From(TestBackbones.Tiny()).Freeze().AddHead(data.Classes).WithBatchSize(4);

    [Fact]
    public void TrainingOptions_BadImages_DefaultsToSkip() => Assert.Equal(BadImagePolicy.Skip, new TrainingOptions().BadImages);

    [Fact]
    public void Fit_TruncatedImagesInTrainingAndValidation_SkippedAndListed()
    {
        var first = AddTruncatedJpeg("red", "red90.jpg");
        var second = AddTruncatedJpeg("blue", "blue90.jpg");
        var data = ImageFolder.Load(_images.Root).Split(0.5, seed: 1);

        var result = Learner(data).Fit(data, epochs: 2);

        using (result.Model)
        {
            Assert.Equal(2, result.History.Count);
            Assert.Equal([second, first], result.SkippedImages.Select(s => s.Path));
            Assert.All(result.SkippedImages, s => Assert.Equal("the JPEG data is truncated (it ends before the end-of-image marker)", s.Reason));
            var validationSkipped = result.ValidationEvaluation!.Skipped.Select(s => s.Path).ToList();
            Assert.Equal(data.Validation.Count - validationSkipped.Count, result.ValidationEvaluation.Count);
            Assert.All(validationSkipped, p => Assert.Contains(p, (string[])[first, second]));
        }
    }

    [Fact]
    public void Fit_BadImagesFail_ThrowsNamingTheFile()
    {
        var bad = AddTruncatedJpeg("red", "red90.jpg");
        var all = ImageFolder.Load(_images.Root);
        var data = new DatasetSplit(all, new ImageDataset(all.Classes, [.. all.Samples.Take(2)]));

        var e = Assert.Throws<InvalidImageException>(() => Learner(data).WithBadImages(BadImagePolicy.Fail).Fit(data, epochs: 1));

        Assert.Equal(bad, e.FilePath);
    }

    [Fact]
    public void Fit_EveryTrainingImageUnreadable_ThrowsSayingSo()
    {
        var bad = new[] { AddTruncatedJpeg("blue", "blue90.jpg"), AddTruncatedJpeg("red", "red90.jpg") };
        var all = ImageFolder.Load(_images.Root);
        var train = new ImageDataset(all.Classes, [new ImageSample(bad[0], 0), new ImageSample(bad[1], 1)]);
        var data = new DatasetSplit(train, new ImageDataset(all.Classes, [.. all.Samples.Where(s => !bad.Contains(s.Path)).Take(4)]));

        var e = Assert.Throws<InvalidDataException>(() => Learner(data).Fit(data, epochs: 1));

        Assert.Equal(
            $"No training image could be used: all 2 were skipped as unreadable (e.g. '{bad[0]}': the JPEG data is truncated (it ends before the end-of-image marker)). " +
            "Check the image files (see TransferLearner.WithBadImages).",
            e.Message);
    }
}
