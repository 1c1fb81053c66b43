using System.Text.RegularExpressions;

namespace TransferLearning.Models;

/// <summary>
/// Writes a file whole or not at all: the bytes go to <c>.NAME.&lt;guid&gt;.tmp</c> beside the target, which is renamed
/// over the target once complete. The temporary file never outlives the write: it is deleted when the write fails; when
/// the process is asked to stop (SIGTERM raises <see cref="AppDomain.ProcessExit"/>), the exit handler stops writes in
/// progress at their next write to the file, waits for them to delete their temporary files, and refuses new writes, so
/// the targets keep their old content; and for a process that was killed outright (SIGKILL, power loss), the next write
/// to the same target removes the leftovers that no other process holds open.
/// </summary>
internal static partial class AtomicFile
{
    /// <summary>How long the exit handler waits for writes in progress to stop.</summary>
    private static readonly TimeSpan ExitWait = TimeSpan.FromSeconds(5);

    /// <summary>Guards <see cref="Pending"/> and <see cref="_exiting"/>; pulsed when a write ends.</summary>
    private static readonly object Gate = new();

    /// <summary>Temporary files being written in this process.</summary>
    private static readonly Dictionary<string, Ticket> Pending = new(StringComparer.Ordinal);

    private static bool _exiting;

    static AtomicFile()
    {
        AppDomain.CurrentDomain.ProcessExit += (_, _) => Abandon(which: null, ExitWait);
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
        var ticket = new Ticket(full);
        lock (Gate)
        {
            if (_exiting)
            {
                throw ticket.Stopped();
            }

            Pending[temp] = ticket;
        }

        try
        {
            // FileShare.None: on Unix .NET also takes an exclusive advisory lock, which tells other processes' clean-up
            // that this file is in use.
            using (var file = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                write(new StoppableStream(file, ticket));
                ticket.ThrowIfStopped();
                file.Flush(flushToDisk: true);
            }

            lock (Gate)
            {
                ticket.ThrowIfStopped();
                File.Move(temp, full, overwrite: true);
            }
        }
        finally
        {
            TryDelete(temp);
            lock (Gate)
            {
                Pending.Remove(temp);
                Monitor.PulseAll(Gate);
            }
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
        List<string> candidates;
        try
        {
            candidates = Directory.EnumerateFiles(directory, $"{prefix}*.tmp").ToList();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return 0;
        }

        var removed = 0;
        foreach (var candidate in candidates)
        {
            bool ours;
            lock (Gate)
            {
                ours = Pending.ContainsKey(candidate);
            }

            if (ours || !TemporarySuffix().IsMatch(Path.GetFileName(candidate).AsSpan(prefix.Length)))
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

    /// <summary>
    /// Stops the writes in progress (all of them, and every later one, when <paramref name="which"/> is null: the process
    /// is exiting; else those whose temporary path passes, for tests), waits up to <paramref name="wait"/> for them to
    /// delete their temporary files, and deletes what is left.
    /// </summary>
    internal static void Abandon(Func<string, bool>? which, TimeSpan wait)
    {
        lock (Gate)
        {
            if (which is null)
            {
                _exiting = true;
            }

            var stopping = Pending.Where(p => which is null || which(p.Key)).ToList();
            foreach (var (_, ticket) in stopping)
            {
                ticket.Stop();
            }

            var deadline = DateTime.UtcNow + wait;
            while (stopping.Any(p => Pending.ContainsKey(p.Key)) && deadline - DateTime.UtcNow is { Ticks: > 0 } left)
            {
                Monitor.Wait(Gate, left);
            }

            foreach (var (temp, _) in stopping.Where(p => Pending.ContainsKey(p.Key)))
            {
                TryDelete(temp); // a writer that did not reach its next write in time
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

    /// <summary>One write: whether it was told to stop.</summary>
    private sealed class Ticket(string target)
    {
        private volatile bool _stopped;

        public void Stop() => _stopped = true;

        public void ThrowIfStopped()
        {
            if (_stopped)
            {
                throw Stopped();
            }
        }

        public IOException Stopped() => new($"The process is exiting; '{target}' was not replaced.");
    }

    /// <summary>The temporary file's stream, which fails the write at its next call once the write was told to stop.</summary>
    private sealed class StoppableStream(FileStream inner, Ticket ticket) : Stream
    {
        public override bool CanRead => false;

        public override bool CanSeek => inner.CanSeek;

        public override bool CanWrite => true;

        public override long Length => inner.Length;

        public override long Position
        {
            get => inner.Position;
            set => inner.Position = value;
        }

        public override void Flush()
        {
            ticket.ThrowIfStopped();
            inner.Flush();
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => inner.Seek(offset, origin);

        public override void SetLength(long value) => inner.SetLength(value);

        public override void Write(byte[] buffer, int offset, int count)
        {
            ticket.ThrowIfStopped();
            inner.Write(buffer, offset, count);
        }

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            ticket.ThrowIfStopped();
            inner.Write(buffer);
        }

        public override void WriteByte(byte value)
        {
            ticket.ThrowIfStopped();
            inner.WriteByte(value);
        }
    }
}
