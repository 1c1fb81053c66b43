using TransferLearning.Datasets;
using TransferLearning.Datasets.Decoding;

namespace TransferLearning.Inference.Tests;

/// <summary>What reaches ONNX Runtime: ImagePixels' RGB bytes, as 0..255 floats in CHW order, resized as the model says.</summary>
public sealed class PixelTests
{
    [Theory]
    [Trait("Category", "RealData")]
    [InlineData("flowers_stretch.onnx", ResizeMode.Stretch)]
    [InlineData("square_crop.onnx", ResizeMode.CenterCrop)]
    public void Input_IsImagePixelsRgb_AsFloatsInChwOrder(string model, ResizeMode mode)
    {
        using var classifier = ImageClassifier.Load(Fixtures.Model(model));
        var fed = new List<float[]>();
        classifier.InputObserver = fed.Add;
        var photos = Fixtures.Photos(3);

        foreach (var photo in photos)
        {
            classifier.Predict(photo);
        }

        classifier.Predict(photos, batchSize: 2);

        int w = classifier.InputWidth, h = classifier.InputHeight, plane = w * h;
        var spec = new InputSpec(w, h, resizeMode: mode);
        var expected = photos.Select(photo =>
        {
            var rgb = new byte[3 * plane];
            ImagePixels.DecodeFile(photo, spec, rgb);
            var chw = new float[3 * plane];
            for (var i = 0; i < plane; i++)
            {
                for (var c = 0; c < 3; c++)
                {
                    chw[(c * plane) + i] = rgb[(3 * i) + c];
                }
            }

            return chw;
        }).ToList();
        Assert.Equal(5, fed.Count);
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(expected[i], fed[i]);
        }

        Assert.Equal(expected[0].Concat(expected[1]), fed[3]);
        Assert.Equal(expected[2], fed[4]);
    }
}
