using TransferLearning.Backbones;
using TransferLearning.Backbones.Onnx;
using TransferLearning.Downloads;
using TransferLearning.Native;

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
    /// <param name="options">Architecture, feature node, checksum, cache folder, download settings and input-spec overrides.</param>
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
        TorchNativeLoader.EnsureLoaded();
        options ??= new BackboneLoadOptions();
        if (source.Trim().Equals("resnet18", StringComparison.OrdinalIgnoreCase))
        {
            var (prep, net) = OfflineModels.LocateResNet18();
            return OnnxBackboneLoader.LoadResNet18(prep, net, "resnet18", options.InputSpec, options.Features, options.MirrorAveraged);
        }

        var path = await ResolveAsync(source, options, progress, cancellationToken).ConfigureAwait(false);
        cancellationToken.ThrowIfCancellationRequested();
        var downloaded = Uri.TryCreate(source, UriKind.Absolute, out var uri) && !uri.IsFile;
        var name = downloaded ? Uri.UnescapeDataString(uri!.Segments[^1]) : Path.GetFileName(path);
        var format = BackboneFormats.For(source, name, options);
        if (options.Features != BackboneFeatures.Pooled && format is not OnnxFormat)
        {
            throw new NotSupportedException(
                $"BackboneLoadOptions.Features = {options.Features} works with ONNX backbones (and the offline 'resnet18'); '{source}' is {format.Description}. " +
                $"Leave Features at {nameof(BackboneFeatures.Pooled)} for this backbone.");
        }

        if (options.MirrorAveraged && format is not OnnxFormat)
        {
            throw new NotSupportedException(
                $"BackboneLoadOptions.MirrorAveraged works with ONNX backbones (and the offline 'resnet18'); '{source}' is {format.Description}. " +
                "Leave MirrorAveraged false for this backbone.");
        }

        var siblingOptions = new BackboneLoadOptions { CacheDirectory = options.CacheDirectory, Download = options.Download };
        var directory = Path.GetDirectoryName(path) ?? ".";
        Func<string, CancellationToken, Task<string>> fetchSibling = downloaded
            ? (relative, ct) => ResolveAsync(new Uri(uri!, relative).AbsoluteUri, siblingOptions, progress, ct)
            : (relative, _) =>
            {
                var sibling = Path.Combine(directory, relative.Replace('/', Path.DirectorySeparatorChar));
                return File.Exists(sibling)
                    ? Task.FromResult(sibling)
                    : Task.FromException<string>(new FileNotFoundException($"'{sibling}' does not exist.", sibling));
            };
        try
        {
            return await format.LoadAsync(new BackboneFile(source, path, name, fetchSibling), options, cancellationToken).ConfigureAwait(false);
        }
        catch (InvalidDataException e) when (downloaded && ModelFormat.IsFormatError(e) && File.Exists(path))
        {
            // The download is not a model of its kind (an error page, a broken upload): do not keep it as valid.
            DownloadedModel.Evict(path);
            throw new InvalidDataException(
                $"{e.Message} The file was downloaded from '{source}'; it was removed from the cache and will be fetched again next time.", e);
        }
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
            var directory = options?.CacheDirectory ?? CacheDirectory;
            var download = options?.Download ?? new DownloadOptions();
            var cache = new HubCache(directory, download);
            try
            {
                return await cache.GetAsync(uri, options?.Sha256, progress, cancellationToken, DownloadedModel.Problem).ConfigureAwait(false);
            }
            catch (Exception e) when (e is HttpRequestException or TimeoutException || (e is IOException && e is not InvalidDataException))
            {
                // Say what was being fetched and what to do: a bare "Connection refused" does not tell that a backbone was being downloaded.
                throw new HttpRequestException(
                    $"Could not download the backbone file '{source}' (tried {download.MaxAttempts} time(s)): {e.Message.TrimEnd('.')}. " +
                    $"Check the URL and the network, or download the file yourself and pass its local path; downloads are cached in '{directory}'.",
                    e,
                    (e as HttpRequestException)?.StatusCode);
            }
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
