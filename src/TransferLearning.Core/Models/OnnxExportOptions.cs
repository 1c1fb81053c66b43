namespace TransferLearning.Models;

/// <summary>Options for <see cref="TrainedModel.ExportOnnx(string, OnnxExportOptions)"/>.</summary>
public sealed class OnnxExportOptions
{
    /// <summary>The metadata keys the export always writes (and that <see cref="Metadata"/> may not set).</summary>
    public static IReadOnlyList<string> ReservedMetadataKeys { get; } = ["classes", "input_size", "resize", "source", "transferlearning_version"];

    /// <summary>Whether the graph also outputs <c>logits</c> (float32 <c>[N, classes]</c>, before the softmax). Default true.</summary>
    public bool IncludeLogits { get; set; } = true;

    /// <summary>
    /// Extra <c>metadata_props</c> entries written after the standard ones (e.g. <c>author</c>, <c>license</c>,
    /// <c>dataset</c>). Keys may not repeat the standard ones (<see cref="ReservedMetadataKeys"/>).
    /// </summary>
    public IDictionary<string, string> Metadata { get; } = new Dictionary<string, string>(StringComparer.Ordinal);

    /// <summary>Text for the model's <c>doc_string</c>; null (default) writes a description of the input and outputs.</summary>
    public string? Description { get; set; }
}
