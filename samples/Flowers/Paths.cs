using System.Runtime.InteropServices;

namespace Flowers;

/// <summary>
/// Checks of the paths on a command line, made before any work: inputs exist and are what they should be (file or
/// folder); outputs are regular files in a writable place, distinct from every input and from each other.
/// </summary>
internal static class Paths
{
    /// <summary>A path given on the command line: which option, and whether the command reads or writes it.</summary>
    public readonly record struct Named(string Option, string Path, bool IsOutput);

    public static void CheckInputFile(string option, string path)
    {
        if (Directory.Exists(path))
        {
            throw new UsageException($"{option} '{path}' is a folder, not a file.");
        }

        if (!File.Exists(path))
        {
            throw new UsageException($"{option}: the file '{path}' does not exist.");
        }
    }

    public static void CheckInputFolder(string option, string path, string what)
    {
        if (File.Exists(path))
        {
            throw new UsageException($"{option} '{path}' is a file, not a folder; give the folder that holds {what}.");
        }

        if (!Directory.Exists(path))
        {
            throw new UsageException($"{option}: the folder '{path}' does not exist.");
        }
    }

    /// <summary>
    /// An output must be a file name (not a folder), must not name a device, pipe or other non-regular file (it would
    /// be replaced by a regular file), and its folder must exist or be creatable, and be writable. Nothing is created.
    /// </summary>
    public static void CheckOutputFile(string option, string path)
    {
        if (string.IsNullOrWhiteSpace(path))
        {
            throw new UsageException($"{option} needs a file name.");
        }

        if (Directory.Exists(path) || path.EndsWith('/') || path.EndsWith(Path.DirectorySeparatorChar))
        {
            throw new UsageException($"{option} '{path}' is a folder; give a file name, e.g. {Path.Combine(path, "flowers.tlmodel")}.");
        }

        if (File.Exists(path) && FileKind(path) is { } kind and not "regular file")
        {
            throw new UsageException($"{option} '{path}' is a {kind}, not a regular file; give the name of a file to write.");
        }

        var full = Path.GetFullPath(path);
        var folder = Path.GetDirectoryName(full)!;
        var existing = folder;
        while (!Directory.Exists(existing))
        {
            if (File.Exists(existing))
            {
                throw new UsageException(existing == folder
                    ? $"{option} '{path}' cannot be written: '{folder}' is a file, not a folder."
                    : $"{option} '{path}' cannot be written: '{existing}' is a file, so the folder '{folder}' cannot be created.");
            }

            existing = Path.GetDirectoryName(existing) ?? throw new UsageException($"{option} '{path}' cannot be written: no part of '{folder}' exists.");
        }

        var probe = Path.Combine(existing, $".flowers-write-check.{Guid.NewGuid():N}.tmp");
        try
        {
            using (new FileStream(probe, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.DeleteOnClose))
            {
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            var reason = e.Message.TrimEnd('.');
            var where = existing == folder
                ? $"the folder '{folder}' is not writable ({reason})"
                : $"the folder '{folder}' cannot be created ('{existing}' is not writable: {reason})";
            throw new UsageException($"{option} '{path}' cannot be written: {where}. Choose another location.");
        }
    }

    /// <summary>Every output differs from every input and from every other output (same file through links counts as the same).</summary>
    public static void CheckDistinct(IEnumerable<Named> paths)
    {
        var all = paths.Select(p => (p.Option, p.Path, p.IsOutput, Key: Identity(p.Path))).ToList();
        for (var i = 0; i < all.Count; i++)
        {
            for (var j = 0; j < i; j++)
            {
                var (a, b) = (all[j], all[i]);
                if ((a.IsOutput || b.IsOutput) && string.Equals(a.Key, b.Key, StringComparison.Ordinal))
                {
                    var (output, other) = b.IsOutput ? (b, a) : (a, b);
                    var harm = other.IsOutput ? "one output would overwrite the other" : "writing it would destroy that input";
                    throw new UsageException(
                        $"{output.Option} '{output.Path}' is the same file as {other.Option} ('{other.Path}'); {harm}. Give a different file name.");
                }
            }
        }
    }

    /// <summary>An output inside an input folder must not replace a file there (e.g. --json data/daisy/1.jpg).</summary>
    public static void CheckNotInsideFolder(Named output, string inputOption, string folder)
    {
        var full = Identity(output.Path);
        var root = Identity(folder).TrimEnd(Path.DirectorySeparatorChar) + Path.DirectorySeparatorChar;
        if (full.StartsWith(root, StringComparison.Ordinal) && File.Exists(full))
        {
            throw new UsageException(
                $"{output.Option} '{output.Path}' would overwrite a file inside the {inputOption} folder '{folder}'. Give a file name outside it.");
        }
    }

    /// <summary><c>dir/flowers.tlmodel</c> + <c>.curves.png</c> → <c>dir/flowers.curves.png</c>.</summary>
    public static string Beside(string modelPath, string suffix) =>
        Path.Combine(Path.GetDirectoryName(Path.GetFullPath(modelPath))!, Path.GetFileNameWithoutExtension(modelPath) + suffix);

    /// <summary>The full path with symbolic links resolved (for the file itself and its folders), to compare paths.</summary>
    private static string Identity(string path)
    {
        var full = Path.GetFullPath(path);
        try
        {
            if (File.Exists(full) || Directory.Exists(full))
            {
                var target = File.Exists(full) ? new FileInfo(full).ResolveLinkTarget(returnFinalTarget: true) : new DirectoryInfo(full).ResolveLinkTarget(returnFinalTarget: true);
                if (target is not null)
                {
                    full = target.FullName;
                }
            }

            var parent = Path.GetDirectoryName(full);
            return parent is null || parent == full ? full : Path.Combine(Identity(parent), Path.GetFileName(full));
        }
        catch (IOException)
        {
            return full;
        }
    }

    /// <summary>What an existing path is ("regular file", "character device", …); null when it cannot be told.</summary>
    internal static string? FileKind(string path)
    {
        if (!OperatingSystem.IsLinux())
        {
            return null;
        }

        // struct stat's st_mode: offset 24 on x86-64, 16 on arm64 (the generic layout).
        var offset = RuntimeInformation.ProcessArchitecture switch
        {
            Architecture.X64 => 24,
            Architecture.Arm64 => 16,
            _ => -1,
        };
        if (offset < 0)
        {
            return null;
        }

        var buffer = new byte[256];
        try
        {
            if (Stat(path, buffer) != 0)
            {
                return null;
            }
        }
        catch (EntryPointNotFoundException)
        {
            return null; // glibc before 2.33 exports no stat symbol
        }

        var mode = BitConverter.ToUInt32(buffer, offset) & 0xF000;
        return mode switch
        {
            0x8000 => "regular file",
            0x4000 => "folder",
            0x2000 => "character device",
            0x6000 => "block device",
            0x1000 => "named pipe",
            0xC000 => "socket",
            _ => "special file",
        };
    }

    [DllImport("libc", EntryPoint = "stat", CharSet = CharSet.Ansi, BestFitMapping = false, ThrowOnUnmappableChar = true)]
    [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
    private static extern int Stat(string path, byte[] buffer);
}
