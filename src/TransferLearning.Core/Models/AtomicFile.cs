using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using Microsoft.Win32.SafeHandles;

namespace TransferLearning.Models;

/// <summary>
/// Writes a file whole or not at all. On Linux the bytes go to an unnamed file in the target's directory (O_TMPFILE),
/// which gets the name <c>.NAME.&lt;guid&gt;.tmp</c> only once it is complete and is renamed over the target at once: a
/// process that dies during the write for any reason — an exception, SIGTERM (since .NET 10 the runtime no longer turns
/// it into a graceful exit), SIGKILL, power loss — leaves no partial file, because an unnamed file disappears with the
/// last descriptor. Where unnamed files are not available (other systems, file systems without O_TMPFILE) the bytes go
/// to <c>.NAME.&lt;guid&gt;.tmp</c> from the start; it is deleted when the write fails, and the next write to the same
/// target removes the leftovers of writers that were killed and that no other process holds open. When the process
/// exits through <see cref="Environment.Exit(int)"/> (an application's own SIGTERM handler, a host), the exit handler stops
/// writes in progress at their next write to the file, waits for them to clean up, and refuses new writes, so the
/// targets keep their old content.
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
    public static void Write(string path, Action<Stream> write) => Write(path, write, allowUnnamed: true);

    /// <summary>
    /// <see cref="Write(string, Action{Stream})"/>, with the unnamed temporary file only when <paramref name="allowUnnamed"/>
    /// (tests of the named fallback pass false).
    /// </summary>
    internal static void Write(string path, Action<Stream> write, bool allowUnnamed)
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
            var unnamed = allowUnnamed ? UnnamedFile.TryCreate(directory) : null;

            // FileShare.None: on Unix .NET also takes an exclusive advisory lock, which tells other processes' clean-up
            // that this file is in use (UnnamedFile takes the same lock for the moment it has a name).
            using (var file = unnamed is null
                ? new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None)
                : new FileStream(unnamed, FileAccess.Write))
            {
                write(new StoppableStream(file, ticket));
                ticket.ThrowIfStopped();
                file.Flush(flushToDisk: true);
                if (unnamed is not null)
                {
                    Commit(ticket, unnamed, temp, full); // named and renamed while still open and locked
                }
            }

            if (unnamed is null)
            {
                Commit(ticket, null, temp, full); // closed first: Windows does not rename a file that is open
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

    /// <summary>Whether writes to <paramref name="directory"/> use an unnamed temporary file (Linux, O_TMPFILE supported there).</summary>
    internal static bool UsesUnnamedFiles(string directory)
    {
        using var probe = UnnamedFile.TryCreate(directory);
        return probe is not null;
    }

    private static void Commit(Ticket ticket, SafeFileHandle? unnamed, string temp, string full)
    {
        lock (Gate)
        {
            ticket.ThrowIfStopped();
            if (unnamed is not null)
            {
                UnnamedFile.Link(unnamed, temp);
            }

            File.Move(temp, full, overwrite: true);
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

    /// <summary>
    /// Linux's unnamed files: <c>open(directory, O_TMPFILE)</c> creates a file in the directory's file system that has no
    /// name and vanishes with its last descriptor; <c>linkat</c> through <c>/proc/self/fd</c> names it once complete.
    /// </summary>
    private static class UnnamedFile
    {
        private const int WriteOnly = 0x1; // O_WRONLY
        private const int CloseOnExec = 0x80000; // O_CLOEXEC, the same on x64 and arm64
        private const int CurrentDirectory = -100; // AT_FDCWD
        private const int FollowSymlink = 0x400; // AT_SYMLINK_FOLLOW: link the file /proc/self/fd/N points at
        private const int ExclusiveLock = 2; // LOCK_EX
        private const int NonBlocking = 4; // LOCK_NB
        private const int ReadWriteForAll = 0x1B6; // 0666, less the umask, as FileStream creates files

        /// <summary>O_TMPFILE (__O_TMPFILE | O_DIRECTORY), whose value depends on the architecture; 0 where unknown.</summary>
        private static readonly int TmpFileFlag = RuntimeInformation.ProcessArchitecture switch
        {
            Architecture.X64 => 0x410000,
            Architecture.Arm64 => 0x404000,
            _ => 0,
        };

        /// <summary>An unnamed file in <paramref name="directory"/>, locked like FileShare.None; null where there are none.</summary>
        public static SafeFileHandle? TryCreate(string directory)
        {
            if (!OperatingSystem.IsLinux() || TmpFileFlag == 0 || !Directory.Exists("/proc/self/fd"))
            {
                return null;
            }

            // Fails with EOPNOTSUPP on file systems without O_TMPFILE and EISDIR on kernels before 3.11: use a named file.
            var fd = Open(directory, TmpFileFlag | WriteOnly | CloseOnExec, ReadWriteForAll);
            if (fd < 0)
            {
                return null;
            }

            var handle = new SafeFileHandle(fd, ownsHandle: true);
            _ = Flock(fd, ExclusiveLock | NonBlocking); // a new inode: nobody else can hold it
            return handle;
        }

        /// <summary>Gives the unnamed file <paramref name="path"/>.</summary>
        public static void Link(SafeFileHandle handle, string path)
        {
            var descriptor = "/proc/self/fd/" + handle.DangerousGetHandle().ToInt64().ToString(CultureInfo.InvariantCulture);
            if (LinkAt(CurrentDirectory, descriptor, CurrentDirectory, path, FollowSymlink) != 0)
            {
                var error = Marshal.GetLastPInvokeError();
                throw new IOException($"Could not name the written file '{path}': {Marshal.GetPInvokeErrorMessage(error)}.");
            }
        }

#pragma warning disable SYSLIB1054 // LibraryImport needs unsafe code, which this assembly does not allow (.NET marshals Ansi as UTF-8 on Unix)
        [DllImport("libc", EntryPoint = "open", SetLastError = true, ExactSpelling = true, CharSet = CharSet.Ansi, BestFitMapping = false, ThrowOnUnmappableChar = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        private static extern int Open(string path, int flags, int mode);

        [DllImport("libc", EntryPoint = "flock", SetLastError = true, ExactSpelling = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        private static extern int Flock(int fd, int operation);

        [DllImport("libc", EntryPoint = "linkat", SetLastError = true, ExactSpelling = true, CharSet = CharSet.Ansi, BestFitMapping = false, ThrowOnUnmappableChar = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        private static extern int LinkAt(int oldDirectory, string oldPath, int newDirectory, string newPath, int flags);
#pragma warning restore SYSLIB1054
    }

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
