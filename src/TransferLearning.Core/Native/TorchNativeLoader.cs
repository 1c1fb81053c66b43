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
            var isa = DescribeOneDnnIsa();
            var loaded = LoadLibraries();
            return isa is null ? loaded : $"{loaded}; {isa}";
        }
        catch (Exception e) when (e is not TorchNativeLoadException and (IOException or UnauthorizedAccessException or DllNotFoundException or BadImageFormatException or InvalidDataException))
        {
            throw new TorchNativeLoadException($"TorchSharp's native library could not be prepared for loading: {e.Message}", e);
        }
    }

    /// <summary>
    /// On an AMD EPYC (Zen 5) with AVX-512, LibTorch 2.10's oneDNN AVX-512 float convolution kernels give wrong results
    /// for some shapes (a channels-last 1×1 convolution 144→40 off by 70 %, a 3×3 one 24→8 on an NCHW input NaN; see the
    /// README, "AMD CPUs with AVX-512"). The library's backbones send every convolution around them
    /// (<c>Backbones.Conv2dOps</c>), so oneDNN keeps its AVX-512 kernels, which run a ResNet18 about twice as fast in float
    /// as under an AVX2 cap and a fine-tuning step about 1.3× as fast. Until 2026-12-01 the library capped oneDNN at
    /// <c>AVX2_VNNI</c> here because float32 gradients were off now and then; that was a temporary TorchSharp Scalar freed
    /// during the native call (see <c>KeptScalars</c>), at either level. Convolutions outside the library's backbones (a
    /// TorchSharp module of your own) are not routed: set <c>ONEDNN_MAX_CPU_ISA=AVX2_VNNI</c> (or <c>AVX2</c>) before the
    /// process starts to cap oneDNN for everything. Nothing is set here; this only reports the state.
    /// </summary>
    /// <returns>What applies on this CPU, or null when nothing does.</returns>
    internal static string? DescribeOneDnnIsa()
    {
        if (!IsAmdWithAvx512())
        {
            return null;
        }

        var cap = Environment.GetEnvironmentVariable(OneDnnIsaVariable);
        if (string.IsNullOrEmpty(cap))
        {
            cap = Environment.GetEnvironmentVariable("DNNL_MAX_CPU_ISA");
        }

        return string.IsNullOrEmpty(cap)
            ? $"{OneDnnIsaVariable} not set: AVX-512 kernels, convolutions routed around the ones wrong on this AMD CPU"
            : $"{OneDnnIsaVariable} left as the environment sets it ({cap})";
    }

    /// <summary>True on AMD processors with AVX-512 (Zen 4 and later), where the library's convolutions avoid oneDNN's wrong AVX-512 kernels.</summary>
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
