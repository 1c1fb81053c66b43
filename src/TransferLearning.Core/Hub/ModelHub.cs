using TransferLearning.Backbones;
using TransferLearning.Backbones.Onnx;
using TransferLearning.Backbones.Tfjs;
using TransferLearning.Backbones.TorchVision;
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
        TorchNativeLoader.EnsureLoaded();
        options ??= new BackboneLoadOptions();
        if (source.Trim().Equals("resnet18", StringComparison.OrdinalIgnoreCase))
        {
            var (prep, net) = OfflineModels.LocateResNet18();
            return OnnxBackboneLoader.LoadResNet18(prep, net, "resnet18", options.InputSpec);
        }

        var path = await ResolveAsync(source, options, progress, cancellationToken).ConfigureAwait(false);
        cancellationToken.ThrowIfCancellationRequested();
        var downloaded = Uri.TryCreate(source, UriKind.Absolute, out var uri) && !uri.IsFile;
        var name = downloaded ? Uri.UnescapeDataString(uri!.Segments[^1]) : Path.GetFileName(path);
        var extension = Path.GetExtension(name).ToLowerInvariant();
        try
        {
            return await LoadFileAsync(source, path, name, uri, extension, options, progress, cancellationToken).ConfigureAwait(false);
        }
        catch (InvalidDataException e) when (downloaded && ModelFormat.IsFormatError(e) && File.Exists(path))
        {
            // The download is not a model of its kind (an error page, a broken upload): do not keep it as valid.
            DownloadedModel.Evict(path);
            throw new InvalidDataException(
                $"{e.Message} The file was downloaded from '{source}'; it was removed from the cache and will be fetched again next time.", e);
        }
    }

    private static async Task<Backbone> LoadFileAsync(
        string source,
        string path,
        string name,
        Uri? uri,
        string extension,
        BackboneLoadOptions options,
        IProgress<DownloadProgress>? progress,
        CancellationToken cancellationToken)
    {
        switch (extension)
        {
            case ".onnx":
                return OnnxBackboneLoader.Load(path, source, options.FeatureNode, options.InputSpec);
            case ".pth":
            case ".pt":
            case ".bin" when options.Architecture is not null:
            case ".safetensors":
                return TorchVisionBackbones.Load(path, source, options.Architecture ?? TorchVisionBackbones.InferArchitecture(name), options.InputSpec);

            case ".json":
                var tfjs = new TfjsLoadOptions { FeatureLayer = options.FeatureNode, InputSpec = options.InputSpec, Source = source };
                if (uri is null || uri.IsFile)
                {
                    return TfjsModel.Load(path, tfjs);
                }

                // Weight shards sit beside model.json: fetch each through the same cache first.
                var shards = new Dictionary<string, string>(StringComparer.Ordinal);
                var shardOptions = new BackboneLoadOptions { CacheDirectory = options.CacheDirectory };
                foreach (var shard in TfjsModel.ShardPaths(path))
                {
                    shards[shard] = await ResolveAsync(new Uri(uri, shard).AbsoluteUri, shardOptions, progress, cancellationToken).ConfigureAwait(false);
                }

                try
                {
                    shards["metadata.json"] = await ResolveAsync(new Uri(uri, "metadata.json").AbsoluteUri, shardOptions, progress, cancellationToken).ConfigureAwait(false);
                }
                catch (HttpRequestException)
                {
                    // Optional: only Teachable Machine exports have one.
                }

                return TfjsModel.Load(path, shard => shards.TryGetValue(shard, out var local)
                    ? File.OpenRead(local)
                    : throw new FileNotFoundException($"'{source}' needs '{shard}', which its weights manifest does not list."), tfjs);
            default:
                throw new NotSupportedException(
                    $"Cannot tell how to load '{source}': expected the short name {string.Join(", ", ShortNames)}, an .onnx file, " +
                    "a PyTorch state dict (.pth, .pt, .safetensors) or a TensorFlow.js layers model (model.json), as a local path or an http(s) URL.");
        }
    }

    /// <summary>Synchronous <see cref="LoadBackboneAsync(string, BackboneLoadOptions?, IProgress{DownloadProgress}?, CancellationToken)"/>.</summary>
    /// <param name="source">http(s) URL, local path, or short name.</param>
    /// <param name="options">Load options.</param>
    /// <returns>The backbone; the caller owns and disposes it.</returns>
    public static Backbone LoadBackbone(string source, BackboneLoadOptions? options = null) =>
        LoadBackboneAsync(source, options).GetAwaiter().GetResult();

    /// <summary>Returns a local path for a URL (downloaded through the cache) or an existing local file.</summary>
    /// <param name="source">http(s) URL or local path.</param>
    /// <param name="options">Checksum and cache folder.</param>
    /// <param name="progress">Receives download progress.</param>
    /// <param name="cancellationToken">Cancels a download.</param>
    /// <returns>The local file path.</returns>
    public static async Task<string> ResolveAsync(
        string source,
        BackboneLoadOptions? options = null,
        IProgress<DownloadProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(source);
        if (Uri.TryCreate(source, UriKind.Absolute, out var uri) && (uri.Scheme == Uri.UriSchemeHttp || uri.Scheme == Uri.UriSchemeHttps))
        {
            var cache = new HubCache(options?.CacheDirectory ?? CacheDirectory);
            return await cache.GetAsync(uri, options?.Sha256, progress, cancellationToken, DownloadedModel.Problem).ConfigureAwait(false);
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
