using TransferLearning.Datasets;
using TransferLearning.Hub;

namespace TransferLearning.Backbones;

/// <summary>
/// One backbone file format (ONNX, torchvision checkpoints, TF.js layers models): recognises its files, imports them,
/// and rebuilds the network of a saved model from the <see cref="BackboneArchitecture"/> it recorded. Formats are
/// registered in <see cref="BackboneFormats"/>; adding one touches its own folder and that list.
/// </summary>
internal interface IBackboneFormat
{
    /// <summary>The name recorded in saved models (<c>onnx</c>, <c>torchvision</c>, <c>tfjs</c>).</summary>
    string Name { get; }

    /// <summary>How users name files of this format, for messages (e.g. "an .onnx file").</summary>
    string Description { get; }

    /// <summary>Whether a source file name (the URL's last segment or the local file name) is of this format.</summary>
    bool Recognizes(string fileName, BackboneLoadOptions options);

    /// <summary>Imports a backbone from a local file.</summary>
    /// <param name="file">The source and its local copy.</param>
    /// <param name="options">Load options.</param>
    /// <param name="cancellationToken">Cancels downloads of sibling files.</param>
    Task<Backbone> LoadAsync(BackboneFile file, BackboneLoadOptions options, CancellationToken cancellationToken);

    /// <summary>Builds the network a saved model recorded, with placeholder weights that the model file then overwrites.</summary>
    /// <param name="architecture">What the format recorded when the model was saved.</param>
    /// <param name="source">Where the backbone originally came from (kept for display).</param>
    /// <param name="inputSpec">The backbone's own input spec.</param>
    Backbone Rebuild(BackboneArchitecture architecture, string source, InputSpec inputSpec);
}

/// <summary>A backbone source resolved to a local file.</summary>
/// <param name="Source">What the user gave (URL, path).</param>
/// <param name="LocalPath">The local file (the download cache's copy for URLs).</param>
/// <param name="FileName">The source's file name (the URL's last segment or the local file name).</param>
/// <param name="FetchSibling">Resolves a file next to the source (same folder or URL directory) to a local path.</param>
internal sealed record BackboneFile(string Source, string LocalPath, string FileName, Func<string, CancellationToken, Task<string>> FetchSibling);
