using System.CommandLine;
using TransferLearning.Models;

namespace Flowers;

/// <summary><c>export --model FILE.tlmodel --out FILE.onnx</c>: writes a saved model as an ONNX classifier.</summary>
internal static class ExportCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "A model file saved by train.", Required = true };
        var output = new Option<string>("--out") { Description = "The .onnx file to write (replaced if it exists).", Required = true };
        var export = new Command(
            "export",
            "Write a saved model as an ONNX classifier (opset 17) for ONNX Runtime or ML.NET: input 'image' float32 [N, 3, H, W], " +
            "RGB 0..255, already resized; outputs 'probabilities' and 'logits'.")
        {
            model, output,
        };
        export.SetAction((r, ct) => RunAsync(r.GetRequiredValue(model), r.GetRequiredValue(output), ct));
        return export;
    }

    public static Task<int> RunAsync(string modelPath, string outPath, CancellationToken cancellationToken)
    {
        if (!File.Exists(modelPath))
        {
            throw new UsageException(Directory.Exists(modelPath) ? $"--model '{modelPath}' is a folder, not a file." : $"--model: the file '{modelPath}' does not exist.");
        }

        if (string.IsNullOrWhiteSpace(outPath) || Directory.Exists(outPath) || outPath.EndsWith('/') || outPath.EndsWith(Path.DirectorySeparatorChar))
        {
            throw new UsageException($"--out '{outPath}' is not a file name; give one, e.g. flowers.onnx.");
        }

        cancellationToken.ThrowIfCancellationRequested();
        using var trained = TrainedModel.Load(modelPath);
        trained.ExportOnnx(outPath);
        var spec = trained.InputSpec;
        Console.WriteLine(
            $"wrote {outPath}: input 'image' float32 [N, 3, {spec.Height}, {spec.Width}], RGB 0..255, resized by " +
            $"{(spec.ResizeMode == TransferLearning.Datasets.ResizeMode.CenterCrop ? "center-crop" : "stretch")}; " +
            $"outputs 'probabilities' and 'logits' over {trained.Classes.Count} classes ({string.Join(", ", trained.Classes)}).");
        return Task.FromResult(Failure.Ok);
    }
}
