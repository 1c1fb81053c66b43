// <export-usings>
using System.Text.Json;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using TransferLearning.Datasets;
using TransferLearning.Datasets.Decoding;
using TransferLearning.Models;
// </export-usings>

namespace TransferLearning.Core.Tests.Docs;

/// <summary>The README's "Export to ONNX" example, compiled and run by <see cref="ReadmeExportTests"/>.</summary>
internal static class ExportSnippet
{
    public static string Run(string modelFile, string onnxFile, string photo)
    {
        // <export>
        using (var model = TrainedModel.Load(modelFile))
        {
            model.ExportOnnx(onnxFile);
        }

        // Anywhere ONNX Runtime runs (no TorchSharp needed): decode and resize as in training, feed RGB 0..255.
        using var session = new InferenceSession(onnxFile);
        var meta = session.ModelMetadata.CustomMetadataMap;
        var classes = JsonSerializer.Deserialize<string[]>(meta["classes"])!;
        var size = JsonSerializer.Deserialize<int[]>(meta["input_size"])!; // [H, W]
        var (height, width) = (size[0], size[1]);
        var resize = meta["resize"] == "center-crop" ? ResizeMode.CenterCrop : ResizeMode.Stretch;
        var rgb = new byte[height * width * 3];
        ImagePixels.DecodeFile(photo, new InputSpec(width, height, resizeMode: resize), rgb); // H × W × 3, RGB
        var image = new DenseTensor<float>([1, 3, height, width]);
        for (var y = 0; y < height; y++)
        {
            for (var x = 0; x < width; x++)
            {
                for (var c = 0; c < 3; c++)
                {
                    image[0, c, y, x] = rgb[(((y * width) + x) * 3) + c];
                }
            }
        }

        using var results = session.Run([NamedOnnxValue.CreateFromTensor("image", image)]);
        var probabilities = results.First(r => r.Name == "probabilities").AsEnumerable<float>().ToArray();
        var best = Array.IndexOf(probabilities, probabilities.Max());
        Console.WriteLine($"{classes[best]} ({probabilities[best]:P1})");
        // </export>
        return classes[best];
    }
}
