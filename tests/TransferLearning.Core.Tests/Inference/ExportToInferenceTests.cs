using TransferLearning.Core.Tests.Onnx;
using TransferLearning.Datasets;
using TransferLearning.Hub;
using TransferLearning.Inference;

namespace TransferLearning.Core.Tests.Inference;

/// <summary>Both sides of the ONNX contract agree: a model exported by <c>TrainedModel.ExportOnnx</c> loads in the inference package and predicts the same.</summary>
public sealed class ExportToInferenceTests : IClassFixture<GeneratedImages>, IDisposable
{
    private readonly GeneratedImages _images;
    private readonly TempDir _dir = new();

    public ExportToInferenceTests(GeneratedImages images) => _images = images;

    public void Dispose() => _dir.Dispose();

    [Theory]
    [Trait("Category", "Parity")]
    [InlineData(ResizeMode.Stretch)]
    [InlineData(ResizeMode.CenterCrop)]
    public void ImageClassifier_ExportedModel_SamePredictionsAsTrainedModel(ResizeMode resize)
    {
        var data = ImageFolder.Load(_images.Root).Split(0.7, seed: 3);
        var backboneFile = _dir.Combine("tiny.onnx");
        File.WriteAllBytes(backboneFile, Google.Protobuf.MessageExtensions.ToByteArray(Int8Tests.TinyOnnxModel()));
        var (model, _) = TransferLearner.From(backboneFile, new BackboneLoadOptions { InputSpec = InputSpec.ImageNet(32).WithResizeMode(resize) })
            .Freeze().AddHead(data.Classes).WithBatchSize(4).Fit(data, 2);
        using (model)
        {
            var onnx = _dir.Combine("model.onnx");
            model.ExportOnnx(onnx);
            using var classifier = ImageClassifier.Load(onnx);

            Assert.Equal(model.Classes, classifier.Classes);
            Assert.Equal((32, 32, resize), (classifier.InputWidth, classifier.InputHeight, classifier.ResizeMode));
            var files = data.Validation.Samples.Select(s => s.Path).ToList();
            var expected = model.Predict(files, topK: 2);
            var actual = classifier.Predict(files, topK: 2);
            for (var i = 0; i < files.Count; i++)
            {
                Assert.Equal(expected[i].Label, actual[i].Label);
                Assert.All(expected[i].Probabilities.Zip(actual[i].Probabilities), p => Assert.Equal(p.First, p.Second, 1e-4));
            }
        }
    }
}
