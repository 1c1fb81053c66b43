using System.Text.Json;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using TransferLearning.Datasets;

namespace TransferLearning.Inference.Tests;

public sealed class PredictTests
{
    public static TheoryData<string> ValidModels => ["flowers_stretch.onnx", "square_crop.onnx"];

    [Theory]
    [MemberData(nameof(ValidModels))]
    public void Predict_MatchesTheIndependentFloat64Reference(string model)
    {
        using var expected = JsonDocument.Parse(File.ReadAllText(Fixtures.Model("expected.json")));
        var images = expected.RootElement.GetProperty(model).GetProperty("images").EnumerateArray().ToList();
        using var classifier = ImageClassifier.Load(Fixtures.Model(model));

        Assert.Equal(3, images.Count);
        foreach (var image in images)
        {
            var file = Fixtures.Model(image.GetProperty("file").GetString()!);
            var reference = image.GetProperty("probabilities").EnumerateArray().Select(e => e.GetDouble()).ToArray();

            var p = classifier.Predict(file);

            Assert.Equal(reference.Length, p.Probabilities.Count);
            for (var c = 0; c < reference.Length; c++)
            {
                Assert.True(Math.Abs(reference[c] - p.Probabilities[c]) < 1e-5, $"{file} class {c}: {p.Probabilities[c]} vs {reference[c]}");
            }

            var best = Array.IndexOf(reference, reference.Max());
            Assert.Equal(best, p.Index);
            Assert.Equal(classifier.Classes[best], p.Label);
            Assert.Equal(file, p.Source);
        }
    }

    [Fact]
    public void Predict_TopIsMostProbableFirst_TiesInClassOrder()
    {
        using var classifier = ImageClassifier.Load(Fixtures.Ties);
        var photo = Fixtures.Picture;

        var all = classifier.Predict(photo, topK: 10);
        var two = classifier.Predict(photo, topK: 2);

        Assert.Equal([1, 2, 4, 0, 3], all.Top.Select(t => t.Index));
        Assert.Equal(["b", "c", "e", "a", "d"], all.Top.Select(t => t.Label));
        Assert.Equal(all.Probabilities[1], all.Probabilities[4]);
        Assert.Equal(("b", 1), (all.Label, all.Index));
        Assert.Equal([1, 2], two.Top.Select(t => t.Index));
        Assert.Equal(5, two.Probabilities.Count);
        var sum = Math.Exp(1) + (3 * Math.Exp(3)) + 1;
        Assert.Equal(Math.Exp(3) / sum, all.Probability, 1e-6);
        Assert.Throws<ArgumentOutOfRangeException>(() => classifier.Predict(photo, topK: 0));
    }

    [Fact]
    public void Predict_TopKDefaultsToFive_DescendingProbabilities()
    {
        using var classifier = ImageClassifier.Load(Fixtures.Flowers);

        var p = classifier.Predict(Fixtures.Picture);

        Assert.Equal(5, p.Top.Count);
        Assert.Equal(p.Top.Select(t => t.Probability).OrderByDescending(x => x), p.Top.Select(t => t.Probability));
        Assert.Equal(1.0, p.Probabilities.Sum(), 1e-5);
        Assert.Equal(p.Top[0], new ClassProbability(p.Label, p.Index, p.Probability));
    }

    [Theory]
    [Trait("Category", "RealData")]
    [MemberData(nameof(ValidModels))]
    public void Predict_Batch_EqualsOneByOne(string model)
    {
        var photos = Fixtures.Photos(7);
        using var classifier = ImageClassifier.Load(Fixtures.Model(model));

        var batch = classifier.Predict(photos, topK: 3, batchSize: 3);

        Assert.Equal(photos.Length, batch.Count);
        for (var i = 0; i < photos.Length; i++)
        {
            var single = classifier.Predict(photos[i], topK: 3);
            Assert.Equal(photos[i], batch[i].Source);
            Assert.Equal(single.Top.Select(t => t.Index), batch[i].Top.Select(t => t.Index));
            for (var c = 0; c < single.Probabilities.Count; c++)
            {
                Assert.Equal(single.Probabilities[c], batch[i].Probabilities[c], 1e-6);
            }
        }
    }

    [Fact]
    [Trait("Category", "RealData")]
    public void Predict_StreamAndImage_SameAsFile()
    {
        using var classifier = ImageClassifier.Load(Fixtures.Flowers);
        foreach (var photo in Fixtures.Photos(3))
        {
            var fromFile = classifier.Predict(photo);
            using var stream = File.OpenRead(photo);
            var fromStream = classifier.Predict(stream);
            using var image = Image.Load<Rgb24>(photo);
            var fromImage = classifier.Predict(image);

            Assert.Equal(fromFile.Probabilities, fromStream.Probabilities);
            Assert.Equal(fromFile.Probabilities, fromImage.Probabilities);
            Assert.Equal(fromFile with { Source = null, Top = fromStream.Top, Probabilities = fromStream.Probabilities }, fromStream);
            Assert.Null(fromStream.Source);
            Assert.Null(fromImage.Source);
        }
    }

    [Fact]
    public void Predict_ModelWithBatchFixedAtOne_RunsBatchesOneImageAtATime()
    {
        using var dynamic = ImageClassifier.Load(Fixtures.Flowers);
        using var fixedBatch = ImageClassifier.Load(Fixtures.Model("batch1.onnx"));
        var runs = 0;
        fixedBatch.InputObserver = _ => runs++;

        var batch = fixedBatch.Predict(Fixtures.Pictures, batchSize: 4);

        Assert.Equal(Fixtures.Pictures.Length, runs);
        Assert.Equal(dynamic.Predict(Fixtures.Pictures).Select(p => p.Probabilities), batch.Select(p => p.Probabilities));
    }

    [Fact]
    public void Predict_BadImageFile_NamesTheFile()
    {
        using var dir = new TempDir();
        var text = dir.Combine("notes.jpg");
        File.WriteAllText(text, "not an image");
        var missing = dir.Combine("missing.jpg");
        using var classifier = ImageClassifier.Load(Fixtures.Flowers);

        var bad = Assert.Throws<InvalidImageException>(() => classifier.Predict(text));
        var gone = Assert.Throws<InvalidImageException>(() => classifier.Predict(missing));
        using var empty = new MemoryStream();
        var noBytes = Assert.Throws<InvalidImageException>(() => classifier.Predict(empty));

        Assert.Equal(text, bad.FilePath);
        Assert.StartsWith($"'{text}' is not a usable image: the content is not a recognised image format", bad.Message, StringComparison.Ordinal);
        Assert.Equal(missing, gone.FilePath);
        Assert.Equal("the file is empty (0 bytes)", noBytes.Reason);
    }

    [Fact]
    public void Predict_BatchWithABadFile_NamesTheFile()
    {
        using var dir = new TempDir();
        var text = dir.Combine("notes.png");
        File.WriteAllText(text, "not an image");
        using var classifier = ImageClassifier.Load(Fixtures.Flowers);
        var paths = Fixtures.Pictures.Take(4).Append(text).ToList();

        var ex = Assert.Throws<InvalidImageException>(() => classifier.Predict(paths, batchSize: 2));

        Assert.Equal(text, ex.FilePath);
    }

    [Fact]
    public void Predict_Batch_EmptyCancelledAndBadArguments()
    {
        using var classifier = ImageClassifier.Load(Fixtures.Flowers);
        using var cts = new CancellationTokenSource();
        cts.Cancel();

        Assert.Empty(classifier.Predict(Array.Empty<string>()));
        Assert.ThrowsAny<OperationCanceledException>(() => classifier.Predict(Fixtures.Pictures, cancellationToken: cts.Token));
        Assert.Throws<ArgumentOutOfRangeException>(() => classifier.Predict(Fixtures.Pictures, batchSize: 0));
        var ex = Assert.Throws<ArgumentException>(() => classifier.Predict(["a.jpg", ""]));
        Assert.StartsWith("Image path 1 is null or empty.", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Predict_FromManyThreadsAtOnce_SameAsSequential()
    {
        var photos = Fixtures.Pictures;
        using var classifier = ImageClassifier.Load(Fixtures.Flowers, new ImageClassifierOptions { IntraOpThreads = 1 });
        var sequential = photos.Select(p => classifier.Predict(p).Probabilities).ToList();

        var tasks = Enumerable.Range(0, 32).Select(i => Task.Run(() => (i, classifier.Predict(photos[i % photos.Length]).Probabilities))).ToList();
        foreach (var (i, probabilities) in await Task.WhenAll(tasks))
        {
            Assert.Equal(sequential[i % photos.Length], probabilities);
        }
    }
}
