// <readme:export>
using TransferLearning.Models;

// </readme:export>
namespace QuickStart.Snippets;

/// <summary>README, "Export to ONNX".</summary>
internal static class Export
{
    public static void Run(TrainedModel model)
    {
        // <readme:export>
        model.ExportOnnx("flowers.onnx");
        model.ExportOnnx("flowers.onnx", new OnnxExportOptions { IncludeLogits = false, Metadata = { ["author"] = "me" } });
        // </readme:export>
    }
}
