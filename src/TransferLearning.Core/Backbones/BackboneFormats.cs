using TransferLearning.Backbones.Onnx;
using TransferLearning.Backbones.Tfjs;
using TransferLearning.Backbones.TorchVision;
using TransferLearning.Hub;

namespace TransferLearning.Backbones;

/// <summary>The backbone formats, in the order they are asked to recognise a file.</summary>
internal static class BackboneFormats
{
    /// <summary>Every supported format.</summary>
    public static IReadOnlyList<IBackboneFormat> All { get; } = [OnnxFormat.Instance, TorchVisionFormat.Instance, TfjsFormat.Instance];

    /// <summary>The format of a source file, or a clear error listing what is supported.</summary>
    public static IBackboneFormat For(string source, string fileName, BackboneLoadOptions options) =>
        All.FirstOrDefault(f => f.Recognizes(fileName, options))
        ?? throw new NotSupportedException(
            $"Cannot tell how to load '{source}': expected the short name {string.Join(", ", ModelHub.ShortNames)}, " +
            $"{string.Join(", ", All.Select(f => f.Description))}, as a local path or an http(s) URL.");

    /// <summary>The format that recorded an architecture.</summary>
    public static IBackboneFormat Named(string name) =>
        All.FirstOrDefault(f => f.Name == name)
        ?? throw new NotSupportedException(
            $"The backbone was saved in the '{name}' format, which this version cannot rebuild (it knows {string.Join(", ", All.Select(f => f.Name))}). Update TransferLearning.");
}
