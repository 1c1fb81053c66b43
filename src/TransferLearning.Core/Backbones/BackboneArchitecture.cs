namespace TransferLearning.Backbones;

/// <summary>
/// What a saved model needs to rebuild a backbone's network without its original source: the format that built it,
/// a few settings and the files that describe the layers (no weights — those are saved separately).
/// </summary>
/// <param name="Format">The <see cref="IBackboneFormat.Name"/> that rebuilds it.</param>
/// <param name="Settings">Format-specific settings (architecture name, feature layer, …).</param>
/// <param name="Files">Format-specific description files by name (an ONNX graph without weights, a model.json, …).</param>
internal sealed record BackboneArchitecture(
    string Format,
    IReadOnlyDictionary<string, string> Settings,
    IReadOnlyDictionary<string, byte[]> Files)
{
    /// <summary>A setting the format wrote; a clear error when it is missing.</summary>
    public string Setting(string name) =>
        Settings.TryGetValue(name, out var value)
            ? value
            : throw new InvalidDataException($"The saved {Format} backbone description has no '{name}' setting.");

    /// <summary>A file the format wrote; a clear error when it is missing.</summary>
    public byte[] File(string name) =>
        Files.TryGetValue(name, out var value)
            ? value
            : throw new InvalidDataException($"The saved {Format} backbone description has no '{name}' file.");
}
