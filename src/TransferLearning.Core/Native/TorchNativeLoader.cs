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
/// never modified. It runs when the library is first used; the entry points that load networks (<c>ModelHub</c>,
/// <c>TransferLearner.From</c>, <c>TrainedModel.Load</c>, <c>TfjsModel</c>) call <see cref="EnsureLoaded"/> and throw its
/// <see cref="TorchNativeLoadException"/> as it is. Call it yourself before using <c>TorchSharp.torch</c> directly. Set
/// <c>TRANSFERLEARNING_NATIVE_PATCH=0</c> to turn the workaround off.
/// </remarks>
public static class TorchNativeLoader
{
    /// <summary>Environment variable that turns the workaround off when set to <c>0</c>.</summary>
    public const string DisableVariable = "TRANSFERLEARNING_NATIVE_PATCH";

    /// <summary>Environment variable naming the folder where patched copies are kept.</summary>
    public const string CacheVariable = "TRANSFERLEARNING_NATIVE_DIR";

    /// <summary>The oneDNN environment variable that caps the instruction set its kernels use.</summary>
    public const string OneDnnIsaVariable = "ONEDNN_MAX_CPU_ISA";

    private const string LibraryFile = "libLibTorchSharp.so";
    private static readonly Lock Gate = new();
    private static bool _done;

    /// <summary>What the last <see cref="EnsureLoaded"/> did, for diagnostics (null before the first call).</summary>
    public static string? Status { get; private set; }

    /// <summary>
    /// Ensures TorchSharp's native library can be loaded in this process. Cheap after the first success; thread-safe; a
    /// failure is tried again on the next call (e.g. after <see cref="CacheVariable"/> was set).
    /// </summary>
    /// <exception cref="TorchNativeLoadException">The library was found but cannot be loaded even after the workaround.</exception>
    public static void EnsureLoaded()
    {
        if (Volatile.Read(ref _done))
        {
            return;
        }

        lock (Gate)
        {
            if (_done)
            {
                return;
            }

            Status = Load();
            Volatile.Write(ref _done, true);
        }
    }

    private static string Load()
    {
        try
        {
            var isa = LimitOneDnnIsa();
            var loaded = LoadLibraries();
            return isa is null ? loaded : $"{loaded}; {isa}";
        }
        catch (Exception e) when (e is not TorchNativeLoadException and (IOException or UnauthorizedAccessException or DllNotFoundException or BadImageFormatException or InvalidDataException))
        {
            throw new TorchNativeLoadException($"TorchSharp's native library could not be prepared for loading: {e.Message}", e);
        }
    }

    /// <summary>
    /// On an AMD EPYC (Zen 5) with AVX-512, LibTorch 2.10's oneDNN AVX-512 convolution kernels give wrong results when
    /// a channel count is not a multiple of 16 (a 1×1 convolution 144→40 channels-last off by 2–3, a 3×3 one 24→8 off by
    /// 0.7, changing from run to run); capped at AVX2 they are right. Only Zen 5 was measured; the cap applies to every AMD
    /// CPU with AVX-512 as a precaution. Where the CPU has AVX-VNNI (Zen 5 does) the cap is <c>AVX2_VNNI</c>: the same
    /// float kernels (the conv and parity tests pass), and int8 convolutions that accumulate with <c>vpdpbusd</c>, which
    /// does not saturate, so int8 backbones can use the full 8-bit activation range (see Backbones/Int8Kernels). The cap is an environment
    /// variable oneDNN reads once, at its first primitive, so it is set in the native environment before LibTorch runs.
    /// A value the user set for <c>ONEDNN_MAX_CPU_ISA</c> (or <c>DNNL_MAX_CPU_ISA</c>) is kept: with an AVX-512 level,
    /// <c>Backbones.Conv2dOps</c> routes convolutions around the wrong kernels (measured right for forward passes; float32
    /// backward passes were off now and then under load, with and without this cap, see the README).
    /// </summary>
    /// <returns>What was done, or null when nothing was needed.</returns>
    internal static string? LimitOneDnnIsa()
    {
        if (!IsAmdWithAvx512())
        {
            return null;
        }

        if (!string.IsNullOrEmpty(Environment.GetEnvironmentVariable(OneDnnIsaVariable)) ||
            !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("DNNL_MAX_CPU_ISA")))
        {
            return $"{OneDnnIsaVariable} left as the environment sets it";
        }

        if (OperatingSystem.IsWindows())
        {
            return null;
        }

        // .NET keeps its own copy of the environment on Unix; oneDNN reads the C library's.
        var cap = System.Runtime.Intrinsics.X86.AvxVnni.IsSupported ? "AVX2_VNNI" : "AVX2";
        _ = SetEnv(OneDnnIsaVariable, cap, 0);
        Environment.SetEnvironmentVariable(OneDnnIsaVariable, cap);
        return $"{OneDnnIsaVariable}={cap} (oneDNN's AVX-512 convolutions are wrong on this AMD CPU)";
    }

    /// <summary>True on AMD processors with AVX-512 (Zen 4 and later), where oneDNN stays at AVX2 (AVX2_VNNI) unless the user lifts the cap.</summary>
    internal static bool IsAmdWithAvx512()
    {
        if (!System.Runtime.Intrinsics.X86.X86Base.IsSupported || !System.Runtime.Intrinsics.X86.Avx512F.IsSupported)
        {
            return false;
        }

        var (_, ebx, ecx, edx) = System.Runtime.Intrinsics.X86.X86Base.CpuId(0, 0);
        Span<int> vendor = [ebx, edx, ecx];
        return System.Text.Encoding.ASCII.GetString(MemoryMarshal.AsBytes(vendor)) == "AuthenticAMD";
    }

    [DllImport("libc", EntryPoint = "setenv", CharSet = CharSet.Ansi, BestFitMapping = false, ThrowOnUnmappableChar = true)]
    private static extern int SetEnv(string name, string value, int overwrite);

    private static string LoadLibraries()
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
            if (NativeLibrary.TryLoad(LibraryFile, out _))
            {
                return $"{LibraryFile} found on the library search path";
            }

            throw new TorchNativeLoadException(
                $"TorchSharp's native library ({LibraryFile}) is neither next to the application nor in the NuGet cache: the application " +
                "references no LibTorch runtime. Add the package libtorch-cpu-linux-x64 2.10.0 (or TorchSharp-cpu, or a CUDA runtime) to the application.");
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
    /// <param name="original">TorchSharp's native library.</param>
    /// <param name="reason">Why it did not load as it is.</param>
    /// <param name="cacheRoot">Folder for patched copies; null for <see cref="CacheVariable"/> or the user cache folder.</param>
    /// <exception cref="TorchNativeLoadException">The copy cannot be written; the message names <see cref="CacheVariable"/>.</exception>
    internal static string WritePatchedCopy(string original, string reason, string? cacheRoot = null)
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

        var folder = Path.Combine(cacheRoot ?? CacheRoot(), hash);
        var target = Path.Combine(folder, Path.GetFileName(original));
        try
        {
            if (File.Exists(target) && new FileInfo(target).Length == image.Length && File.ReadAllBytes(target).AsSpan().SequenceEqual(image))
            {
                return target;
            }

            // Write beside the target and rename: a crash never leaves a half-written library under the final name.
            Directory.CreateDirectory(folder);
            var temp = Path.Combine(folder, $".{Path.GetFileName(original)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
            try
            {
                File.WriteAllBytes(temp, image);
                File.Move(temp, target, overwrite: true);
            }
            finally
            {
                if (File.Exists(temp))
                {
                    File.Delete(temp);
                }
            }

            return target;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException or System.Security.SecurityException)
        {
            throw new TorchNativeLoadException(
                $"TorchSharp's native library needs a newer libstdc++ (GCC 13) than this system has, so TransferLearning loads a " +
                $"copy of it with those needs relaxed, but the copy could not be written to '{folder}': {e.Message} " +
                $"Set {CacheVariable} to a writable folder (it defaults to ~/.cache/transferlearning/native), or install libstdc++6 from GCC 13 or later.", e);
        }
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
