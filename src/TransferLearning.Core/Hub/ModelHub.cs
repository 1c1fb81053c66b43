using TransferLearning.Backbones;
using TransferLearning.Backbones.Onnx;
using TransferLearning.Downloads;

namespace TransferLearning.Hub;

/// <summary>
/// Resolves a backbone source — an http(s) URL, a local path or a short name — to local files (through one download cache)
/// and loads it: <c>resnet18</c> is the offline ImageNet ResNet18 (ONNX, from ML.NET's DnnImageFeaturizer package);
/// <c>*.onnx</c> is imported as ONNX; <c>*.pth</c>, <c>*.pt</c> and <c>*.safetensors</c> are torchvision state dicts.
/// </summary>
public static class ModelHub
{
    /// <summary>Environment variable that overrides the default cache folder.</summary>
    public const string CacheDirectoryVariable = "TRANSFERLEARNING_HUB_DIR";

    private static string? _cacheDirectory;

    /// <summary>
    /// The download cache folder: set explicitly, else <c>$TRANSFERLEARNING_HUB_DIR</c>, else
    /// <c>$XDG_CACHE_HOME/transferlearning/hub</c>, else <c>~/.cache/transferlearning/hub</c> (on Windows, under the
    /// local application data folder).
    /// </summary>
    public static string CacheDirectory
    {
        get => _cacheDirectory ?? DefaultCacheDirectory();
        set => _cacheDirectory = string.IsNullOrWhiteSpace(value) ? null : Path.GetFullPath(value);
    }

    /// <summary>Short names that load without a download.</summary>
    public static IReadOnlyList<string> ShortNames { get; } = ["resnet18"];

    /// <summary>Loads a backbone from a URL, a local file or a short name.</summary>
    /// <param name="source">http(s) URL, local path, or short name (<c>resnet18</c>).</param>
    /// <param name="options">Architecture, feature node, checksum, cache folder and input-spec overrides.</param>
    /// <param name="progress">Receives download progress.</param>
    /// <param name="cancellationToken">Cancels a download.</param>
    /// <returns>The backbone; the caller owns and disposes it.</returns>
    public static async Task<Backbone> LoadBackboneAsync(
        string source,
        BackboneLoadOptions? options = null,
        IProgress<DownloadProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(source);
        options ??= new BackboneLoadOptions();
        if (source.Trim().Equals("resnet18", StringComparison.OrdinalIgnoreCase))
        {
            var (prep, net) = OfflineModels.LocateResNet18();
            return OnnxBackboneLoader.LoadResNet18(prep, net, "resnet18", options.InputSpec);
        }

        var path = await ResolveAsync(source, options, progress, cancellationToken).ConfigureAwait(false);
        cancellationToken.ThrowIfCancellationRequested();
        var isUrl = Uri.TryCreate(source, UriKind.Absolute, out var uri) && !uri.IsFile;
        var name = isUrl ? Uri.UnescapeDataString(uri!.Segments[^1]) : Path.GetFileName(path);
        var format = BackboneFormats.For(source, name, options);
        var siblingOptions = new BackboneLoadOptions { CacheDirectory = options.CacheDirectory };
        var directory = Path.GetDirectoryName(path) ?? ".";
        Func<string, CancellationToken, Task<string>> fetchSibling = isUrl
            ? (relative, ct) => ResolveAsync(new Uri(uri!, relative).AbsoluteUri, siblingOptions, progress, ct)
            : (relative, _) =>
            {
                var sibling = Path.Combine(directory, relative.Replace('/', Path.DirectorySeparatorChar));
                return File.Exists(sibling)
                    ? Task.FromResult(sibling)
                    : Task.FromException<string>(new FileNotFoundException($"'{sibling}' does not exist.", sibling));
            };
        return await format.LoadAsync(new BackboneFile(source, path, name, fetchSibling), options, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Synchronous <see cref="LoadBackboneAsync(string, BackboneLoadOptions?, IProgress{DownloadProgress}?, CancellationToken)"/>.</summary>
    /// <param name="source">http(s) URL, local path, or short name.</param>
    /// <param name="options">Load options.</param>
    /// <returns>The backbone; the caller owns and disposes it.</returns>
    public static Backbone LoadBackbone(string source, BackboneLoadOptions? options = null) =>
        LoadBackboneAsync(source, options).GetAwaiter().GetResult();

    /// <summary>Returns a local path for a URL (downloaded through the cache) or an existing local file.</summary>
    internal static async Task<string> ResolveAsync(
        string source,
        BackboneLoadOptions? options = null,
        IProgress<DownloadProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(source);
        if (Uri.TryCreate(source, UriKind.Absolute, out var uri) && (uri.Scheme == Uri.UriSchemeHttp || uri.Scheme == Uri.UriSchemeHttps))
        {
            var cache = new HubCache(options?.CacheDirectory ?? CacheDirectory);
            return await cache.GetAsync(uri, options?.Sha256, progress, cancellationToken).ConfigureAwait(false);
        }

        var path = uri is { IsFile: true } ? uri.LocalPath : source;
        if (!File.Exists(path))
        {
            throw new FileNotFoundException(
                $"The backbone source '{source}' is neither an existing file, an http(s) URL, nor a short name ({string.Join(", ", ShortNames)}).", path);
        }

        return Path.GetFullPath(path);
    }

    private static string DefaultCacheDirectory() => CacheFolders.Resolve(CacheDirectoryVariable, "hub");
}
