using System.Collections.Concurrent;
using System.Text.RegularExpressions;

namespace TransferLearning.Models;

/// <summary>
/// Writes a file whole or not at all: the bytes go to <c>.NAME.&lt;guid&gt;.tmp</c> beside the target, which is renamed
/// over the target once complete. The temporary file never outlives the write: it is deleted when the write fails or is
/// abandoned, when the process is asked to stop during the write (SIGTERM, <see cref="AppDomain.ProcessExit"/>: the
/// target keeps its old content), and, for a process that was killed outright (SIGKILL, power loss), by the next write
/// to the same target, which removes the leftovers no other process holds open.
/// </summary>
internal static partial class AtomicFile
{
    /// <summary>Temporary files being written in this process; the exit handler deletes what is left.</summary>
    private static readonly ConcurrentDictionary<string, byte> Pending = new(StringComparer.Ordinal);

    static AtomicFile()
    {
        AppDomain.CurrentDomain.ProcessExit += (_, _) => AbandonPending();
    }

    /// <summary>Writes <paramref name="path"/> through a temporary file.</summary>
    /// <param name="path">The target.</param>
    /// <param name="write">Writes the content to the stream of the temporary file.</param>
    /// <exception cref="IOException">The write failed, or the process began to exit during it; the target is unchanged.</exception>
    public static void Write(string path, Action<Stream> write)
    {
        var full = Path.GetFullPath(path);
        var directory = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(directory);
        RemoveStaleTemporaryFiles(full);
        var temp = TemporaryPath(full);
        Pending[temp] = 0;
        try
        {
            // FileShare.None: on Unix .NET also takes an exclusive advisory lock, which tells other processes' clean-up
            // that this file is in use.
            using (var file = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                write(file);
                file.Flush(flushToDisk: true);
            }

            if (!Pending.ContainsKey(temp))
            {
                throw new IOException($"The process is exiting; '{full}' was not replaced.");
            }

            File.Move(temp, full, overwrite: true);
        }
        catch (FileNotFoundException e) when (!Pending.ContainsKey(temp))
        {
            throw new IOException($"The process is exiting; '{full}' was not replaced.", e);
        }
        finally
        {
            Pending.TryRemove(temp, out _);
            TryDelete(temp);
        }
    }

    /// <summary>The temporary file a write to <paramref name="fullPath"/> uses: <c>.NAME.&lt;32 hex digits&gt;.tmp</c> beside it.</summary>
    internal static string TemporaryPath(string fullPath) =>
        Path.Combine(Path.GetDirectoryName(fullPath)!, $".{Path.GetFileName(fullPath)}.{Guid.NewGuid():N}.tmp");

    /// <summary>
    /// Deletes the temporary files of earlier writes to <paramref name="fullPath"/> that were never finished (the writer
    /// was killed) and that no process holds open (a concurrent write keeps its file locked).
    /// </summary>
    /// <returns>How many were deleted.</returns>
    internal static int RemoveStaleTemporaryFiles(string fullPath)
    {
        var directory = Path.GetDirectoryName(fullPath)!;
        var prefix = $".{Path.GetFileName(fullPath)}.";
        var removed = 0;
        IEnumerable<string> candidates;
        try
        {
            candidates = Directory.EnumerateFiles(directory, $"{prefix}*.tmp").ToList();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return 0;
        }

        foreach (var candidate in candidates)
        {
            var name = Path.GetFileName(candidate);
            if (Pending.ContainsKey(candidate) || !TemporarySuffix().IsMatch(name.AsSpan(prefix.Length)))
            {
                continue;
            }

            try
            {
                // Opening it exclusively fails while its writer (in any process) still has it open.
                using (new FileStream(candidate, FileMode.Open, FileAccess.ReadWrite, FileShare.None))
                {
                    File.Delete(candidate);
                }

                removed++;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // In use by another writer, or not ours to delete: leave it.
            }
        }

        return removed;
    }

    /// <summary>Deletes every temporary file still being written (the process is exiting); their writes then fail.</summary>
    /// <param name="which">Only those whose path passes (tests); null for all.</param>
    internal static void AbandonPending(Func<string, bool>? which = null)
    {
        foreach (var temp in Pending.Keys)
        {
            if ((which is null || which(temp)) && Pending.TryRemove(temp, out _))
            {
                TryDelete(temp);
            }
        }
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Best effort: the next write to the same target removes it.
        }
    }

    [GeneratedRegex("^[0-9a-f]{32}\\.tmp$")]
    private static partial Regex TemporarySuffix();
}
