using System.Reflection;
using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace TransferLearning.Native;

/// <summary>
/// Makes TorchSharp's native library load on Linux systems whose libstdc++ is older than the one it was built with
/// (Debian 12, Ubuntu 22.04: GLIBCXX 3.4.30, while TorchSharp 0.107 asks for GLIBCXX_3.4.32).
/// </summary>
/// <remarks>
/// The only symbol behind the newer versions is an unused marker, so when the library fails to load for that reason,
/// a copy of it is written to a cache folder with those version needs marked weak, and that copy is loaded first;
/// TorchSharp then finds it already loaded under its own name. Files in the NuGet cache or the application folder are
/// never modified. Every entry point of this library calls <see cref="EnsureLoaded"/>; call it yourself before using
/// <c>TorchSharp.torch</c> directly. Set <c>TRANSFERLEARNING_NATIVE_PATCH=0</c> to turn the workaround off.
/// </remarks>
public static class TorchNativeLoader
{
    /// <summary>Environment variable that turns the workaround off when set to <c>0</c>.</summary>
    public const string DisableVariable = "TRANSFERLEARNING_NATIVE_PATCH";

    /// <summary>Environment variable naming the folder where patched copies are kept.</summary>
    public const string CacheVariable = "TRANSFERLEARNING_NATIVE_DIR";

    private const string LibraryFile = "libLibTorchSharp.so";
    private static readonly Lock Gate = new();
    private static bool s_done;

    /// <summary>What the last <see cref="EnsureLoaded"/> did, for diagnostics (null before the first call).</summary>
    public static string? Status { get; private set; }

    /// <summary>
    /// Ensures TorchSharp's native library can be loaded in this process. Cheap after the first call; thread-safe.
    /// </summary>
    /// <exception cref="TorchNativeLoadException">The library was found but cannot be loaded even after the workaround.</exception>
    public static void EnsureLoaded()
    {
        if (Volatile.Read(ref s_done))
        {
            return;
        }

        lock (Gate)
        {
            if (s_done)
            {
                return;
            }

            Status = Load();
            Volatile.Write(ref s_done, true);
        }
    }

    private static string Load()
    {
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64)
        {
            return "not needed on this platform";
        }

        if (Environment.GetEnvironmentVariable(DisableVariable) == "0")
        {
            return $"turned off by {DisableVariable}=0";
        }

        var original = FindLibrary(LibraryFile);
        if (original is null)
        {
            return $"{LibraryFile} not found next to the application or in the NuGet cache; TorchSharp loads it itself";
        }

        string error;
        try
        {
            NativeLibrary.Load(original);
            return $"loaded {original} as it is";
        }
        catch (DllNotFoundException e)
        {
            error = e.Message;
        }

        if (!error.Contains("GLIBCXX_", StringComparison.Ordinal) && !error.Contains("CXXABI_", StringComparison.Ordinal))
        {
            throw new TorchNativeLoadException(
                $"TorchSharp's native library '{original}' cannot be loaded: {error} " +
                "Make sure the app references a LibTorch runtime package (e.g. libtorch-cpu-linux-x64 2.10.0 or TorchSharp-cpu).");
        }

        var torchDir = FindLibrary("libtorch_cpu.so", Path.GetDirectoryName(original)) is { } cpu ? Path.GetDirectoryName(cpu)! : null;
        if (torchDir is null)
        {
            throw new TorchNativeLoadException(
                $"TorchSharp's native library '{original}' needs LibTorch (libtorch_cpu.so), which was not found. " +
                "Reference the libtorch-cpu-linux-x64 2.10.0 package (or TorchSharp-cpu) from the application.");
        }

        // The copy lives elsewhere, so its $ORIGIN run path no longer finds LibTorch: load those first, by full path.
        foreach (var dependency in new[] { "libc10.so", "libtorch_cpu.so", "libtorch.so" })
        {
            var path = Path.Combine(torchDir, dependency);
            if (File.Exists(path))
            {
                NativeLibrary.Load(path);
            }
        }

        var patched = WritePatchedCopy(original, error);
        try
        {
            NativeLibrary.Load(patched);
        }
        catch (DllNotFoundException e)
        {
            throw new TorchNativeLoadException(
                $"TorchSharp's native library '{original}' needs a newer C++ runtime ({error}). A copy with those needs " +
                $"marked weak ('{patched}') still failed to load: {e.Message} Install a newer libstdc++6 (GCC 13 or later).", e);
        }

        return $"loaded patched copy {patched} of {original}";
    }

    /// <summary>Writes (once) a copy of <paramref name="original"/> whose too-new libstdc++ version needs are weak.</summary>
    internal static string WritePatchedCopy(string original, string reason)
    {
        var image = File.ReadAllBytes(original);
        var hash = Convert.ToHexStringLower(SHA256.HashData(image))[..16];
        var changed = ElfVersionNeedPatcher.MarkWeak(image, original, ElfVersionNeedPatcher.IsNewerThanGcc12);
        if (changed.Count == 0)
        {
            throw new TorchNativeLoadException(
                $"TorchSharp's native library '{original}' cannot be loaded ({reason}), and it has no libstdc++ version need " +
                "newer than GCC 12 to relax. Install a newer libstdc++6.");
        }

        var folder = Path.Combine(CacheRoot(), hash);
        Directory.CreateDirectory(folder);
        var target = Path.Combine(folder, Path.GetFileName(original));
        if (File.Exists(target) && new FileInfo(target).Length == image.Length && File.ReadAllBytes(target).AsSpan().SequenceEqual(image))
        {
            return target;
        }

        // Write beside the target and rename: a crash never leaves a half-written library under the final name.
        var temp = Path.Combine(folder, $".{Path.GetFileName(original)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        File.WriteAllBytes(temp, image);
        File.Move(temp, target, overwrite: true);
        return target;
    }

    private static string CacheRoot()
    {
        var configured = Environment.GetEnvironmentVariable(CacheVariable);
        if (!string.IsNullOrWhiteSpace(configured))
        {
            return configured;
        }

        var cache = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        if (string.IsNullOrWhiteSpace(cache))
        {
            var home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
            cache = string.IsNullOrEmpty(home) ? Path.GetTempPath() : Path.Combine(home, ".cache");
        }

        return Path.Combine(cache, "transferlearning", "native");
    }

    /// <summary>Finds a native file next to the app (as NuGet lays it out) or in the NuGet global packages folder.</summary>
    internal static string? FindLibrary(string fileName, string? preferredDirectory = null)
    {
        var baseDir = AppContext.BaseDirectory;
        var candidates = new List<string>();
        if (preferredDirectory is not null)
        {
            candidates.Add(preferredDirectory);
        }

        candidates.Add(baseDir);
        candidates.Add(Path.Combine(baseDir, "runtimes", "linux-x64", "native"));
        candidates.Add(Path.Combine(baseDir, "cpu"));

        var packages = Environment.GetEnvironmentVariable("NUGET_PACKAGES");
        if (string.IsNullOrWhiteSpace(packages))
        {
            packages = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        }

        var torchSharpVersion = typeof(TorchSharp.torch).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0];
        if (torchSharpVersion is not null)
        {
            candidates.Add(Path.Combine(packages, "torchsharp", torchSharpVersion, "runtimes", "linux-x64", "native"));
        }

        var libtorch = Path.Combine(packages, "libtorch-cpu-linux-x64");
        if (Directory.Exists(libtorch))
        {
            candidates.AddRange(Directory.GetDirectories(libtorch).OrderDescending(StringComparer.Ordinal)
                .Select(d => Path.Combine(d, "runtimes", "linux-x64", "native")));
        }

        return candidates.Select(d => Path.Combine(d, fileName)).FirstOrDefault(File.Exists);
    }
}

/// <summary>TorchSharp's native library could not be loaded; the message says why and what to do.</summary>
public sealed class TorchNativeLoadException : Exception
{
    /// <summary>Creates the exception.</summary>
    public TorchNativeLoadException()
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">What failed and what to do.</param>
    public TorchNativeLoadException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and the underlying error.</summary>
    /// <param name="message">What failed and what to do.</param>
    /// <param name="innerException">The underlying error.</param>
    public TorchNativeLoadException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
