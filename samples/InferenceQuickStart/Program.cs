// <readme:inference-quickstart>
using TransferLearning.Inference;

using var classifier = ImageClassifier.Load("flowers.onnx");        // written by model.ExportOnnx("flowers.onnx")
var prediction = classifier.Predict("photo.jpg", topK: 3);          // also a Stream, an Image<Rgb24>, or many paths
Console.WriteLine($"{prediction.Label} ({prediction.Probability:P1})");
foreach (var c in prediction.Top)
{
    Console.WriteLine($"  {c.Label,-12} {c.Probability:P1}");
}
// </readme:inference-quickstart>
