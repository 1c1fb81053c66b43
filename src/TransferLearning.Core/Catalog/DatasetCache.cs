using System.Formats.Tar;
using System.IO.Compression;
using TransferLearning.Downloads;

namespace TransferLearning.Catalog;

/// <summary>
/// Where catalog datasets are kept, and how they get there: the shared downloader (once under a lock, resumed, retried,
/// SHA-256 verified, with a <c>.sha256</c> sidecar), then safe extraction (regular files and folders only, nothing outside
/// the target) into a temporary folder that is renamed into place only when complete.
/// </summary>
public static class DatasetCache
{
    /// <summary>Environment variable that overrides the cache folder.</summary>
    public const string EnvironmentVariable = "TRANSFERLEARNING_DATA_DIR";

    /// <summary>
    /// The cache folder: <c>$TRANSFERLEARNING_DATA_DIR</c> if set, else <c>$XDG_CACHE_HOME/transferlearning/datasets</c>,
    /// else <c>~/.cache/transferlearning/datasets</c> (on Windows, under the local application data folder).
    /// </summary>
    public static string DefaultDirectory => CacheFolders.Resolve(EnvironmentVariable, "datasets");

    /// <summary>Downloads (through <see cref="FileDownloader"/>), verifies and extracts an archive if needed; returns the extracted top-level folder.</summary>
    internal static async Task<string> FetchAsync(Request request, IProgress<DownloadProgress>? progress, CancellationToken ct)
    {
        var options = request.Download.Clone(); // before the first await: the caller may change its options afterwards
        var dir = Path.Combine(request.CacheDirectory ?? DefaultDirectory, request.Name);
        var expected = FileDownloader.NormalizeSha256(request.Sha256, nameof(request))
            ?? throw new ArgumentException("A catalog dataset needs the SHA-256 of its archive.", nameof(request));
        var target = Path.Combine(dir, "extracted-" + expected[..16]);
        var top = Path.Combine(target, request.TopFolder);
        if (Directory.Exists(top))
        {
            progress?.Report(new DownloadProgress(request.Url, 0, null) { Stage = DownloadStage.Done });
            return top;
        }

        Directory.CreateDirectory(dir);
        RemoveStaleTemporaryFolders(dir);
        var archive = await DownloadArchiveAsync(request.Url, options, Path.Combine(dir, request.ArchiveName), expected, progress, ct).ConfigureAwait(false);
        var size = new FileInfo(archive).Length;
        progress?.Report(new DownloadProgress(request.Url, size, size) { Stage = DownloadStage.Extracting });
        var temp = Path.Combine(dir, ".extracting-" + Guid.NewGuid().ToString("N"));
        try
        {
            await ExtractAsync(archive, temp, ct).ConfigureAwait(false);
            if (!Directory.Exists(Path.Combine(temp, request.TopFolder)))
            {
                throw new DatasetDownloadException($"The archive '{archive}' has no top-level '{request.TopFolder}/' folder.");
            }

            try
            {
                Directory.Move(temp, target);
            }
            catch (IOException) when (Directory.Exists(top))
            {
                // Another process finished the same extraction first; use its result.
            }
        }
        finally
        {
            if (Directory.Exists(temp))
            {
                Directory.Delete(temp, recursive: true);
            }
        }

        progress?.Report(new DownloadProgress(request.Url, size, size) { Stage = DownloadStage.Done });
        return top;
    }

    /// <summary>Fetches the archive, turning the downloader's errors into <see cref="DatasetDownloadException"/>s that say what to do.</summary>
    private static async Task<string> DownloadArchiveAsync(
        Uri url, DownloadOptions options, string archive, string expected, IProgress<DownloadProgress>? progress, CancellationToken ct)
    {
        var download = new DownloadRequest(url, archive)
        {
            Sha256 = expected,
            Options = options,
            KeepPartialFile = true,
        };
        try
        {
            return await FileDownloader.DownloadAsync(download, progress, ct).ConfigureAwait(false);
        }
        catch (InvalidDataException ex) when (ex.Data[FileDownloader.ActualSha256Key] is string actual)
        {
            throw new DatasetDownloadException(
                $"The archive downloaded from {url} has SHA-256 {actual}, expected {expected}; " +
                "the file was deleted. Check the URL and the expected hash, then try again.", ex);
        }
        catch (HttpRequestException ex) when (!FileDownloader.IsTransient(ex, ct))
        {
            throw new DatasetDownloadException(ex.Message + " Check the URL (TfFlowersOptions.Url).", ex);
        }
        catch (Exception ex) when (FileDownloader.IsTransient(ex, ct))
        {
            throw new DatasetDownloadException(
                $"Downloading {url} failed after {options.MaxAttempts} attempt(s): {ex.Message.TrimEnd('.')}. " +
                $"The partial file '{FileDownloader.PartPath(archive)}' is kept; run again to resume.", ex);
        }
    }

    /// <summary>Extracts a .tar.gz, accepting only folders and regular files whose paths stay inside <paramref name="destination"/>.</summary>
    /// <exception cref="DatasetDownloadException">An entry's path is absolute or leaves the destination.</exception>
    internal static async Task ExtractAsync(string archive, string destination, CancellationToken ct)
    {
        var root = Path.GetFullPath(destination);
        Directory.CreateDirectory(root);
        var fs = File.OpenRead(archive);
        await using (fs.ConfigureAwait(false))
        {
            var gz = new GZipStream(fs, CompressionMode.Decompress);
            await using (gz.ConfigureAwait(false))
            {
                var tar = new TarReader(gz);
                await using (tar.ConfigureAwait(false))
                {
                    while (await tar.GetNextEntryAsync(copyData: false, ct).ConfigureAwait(false) is { } entry)
                    {
                        switch (entry.EntryType)
                        {
                            case TarEntryType.Directory:
                                Directory.CreateDirectory(SafePath(root, entry.Name, archive));
                                break;
                            case TarEntryType.RegularFile or TarEntryType.V7RegularFile or TarEntryType.ContiguousFile:
                                var path = SafePath(root, entry.Name, archive);
                                Directory.CreateDirectory(Path.GetDirectoryName(path)!);
                                var output = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 81920, useAsync: true);
                                await using (output.ConfigureAwait(false))
                                {
                                    if (entry.DataStream is { } data)
                                    {
                                        await data.CopyToAsync(output, ct).ConfigureAwait(false);
                                    }
                                }

                                break;
                            default:
                                // Links, devices, FIFOs and metadata entries are never materialised.
                                break;
                        }
                    }
                }
            }
        }
    }

    /// <summary>Resolves an archive entry name under <paramref name="root"/>, refusing anything that would land outside it.</summary>
    internal static string SafePath(string root, string entryName, string archive)
    {
        var name = entryName.Replace('\\', '/');
        if (name.Length == 0 || name.Contains('\0', StringComparison.Ordinal) || name.StartsWith('/') || Path.IsPathRooted(name) ||
            name.Split('/').Any(s => s == ".."))
        {
            throw new DatasetDownloadException($"The archive '{archive}' contains an unsafe entry '{entryName}' (absolute or leaving the target folder); extraction refused.");
        }

        var full = Path.GetFullPath(Path.Combine(root, name));
        var rootWithSep = root.EndsWith(Path.DirectorySeparatorChar) ? root : root + Path.DirectorySeparatorChar;
        if (!full.StartsWith(rootWithSep, StringComparison.Ordinal) && full != root)
        {
            throw new DatasetDownloadException($"The archive '{archive}' contains an unsafe entry '{entryName}' (absolute or leaving the target folder); extraction refused.");
        }

        return full;
    }

    /// <summary>Removes extraction folders left by a crashed run (older than an hour, so a concurrent extraction is left alone).</summary>
    private static void RemoveStaleTemporaryFolders(string dir)
    {
        foreach (var stale in Directory.EnumerateDirectories(dir, ".extracting-*"))
        {
            try
            {
                if (Directory.GetLastWriteTimeUtc(stale) < DateTime.UtcNow.AddHours(-1))
                {
                    Directory.Delete(stale, recursive: true);
                }
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // Best effort: a folder that cannot be removed now is tried again next time.
            }
        }
    }

    /// <summary>What to fetch, and how (<see cref="FetchAsync"/> copies <paramref name="Download"/>).</summary>
    internal sealed record Request(
        string Name, Uri Url, string Sha256, string ArchiveName, string TopFolder, string? CacheDirectory, DownloadOptions Download);
}
