using Flowers.Tests.Support;
using TransferLearning.Native;

namespace Flowers.Tests;

/// <summary>
/// Start-up when LibTorch needs the patched copy of TorchSharp's native library (this system's libstdc++ is older than
/// GCC 13, as on Debian 12) and the folder for that copy cannot be written: the error says what failed and names
/// TRANSFERLEARNING_NATIVE_DIR, in the CLI and, unwrapped (no TypeInitializationException), in a program using the library.
/// </summary>
public sealed class NativeStartupTests : IDisposable
{
    private readonly GeneratedImages _images = new();
    private readonly TempDir _dir = new();

    public void Dispose()
    {
        _images.Dispose();
        _dir.Dispose();
    }

    /// <summary>Whether this machine loads TorchSharp through the patched copy; elsewhere nothing is written and these cases cannot occur.</summary>
    private static bool NeedsPatchedCopy
    {
        get
        {
            TorchNativeLoader.EnsureLoaded();
            return TorchNativeLoader.Status?.StartsWith("loaded patched copy", StringComparison.Ordinal) == true;
        }
    }

    [Theory]
    [InlineData("HOME")]
    [InlineData(TorchNativeLoader.CacheVariable)]
    public async Task Train_NativeFolderNotWritable_SaysWhatFailedAndNamesTheVariable(string unwritable)
    {
        if (!NeedsPatchedCopy)
        {
            return; // libstdc++ is new enough here: no copy is written, so no folder can fail
        }

        var environment = new Dictionary<string, string?> { ["XDG_CACHE_HOME"] = null, [TorchNativeLoader.CacheVariable] = null, ["HOME"] = "/proc" };
        if (unwritable == TorchNativeLoader.CacheVariable)
        {
            environment["HOME"] = _dir.Path;
            environment[TorchNativeLoader.CacheVariable] = "/proc/tl-native";
        }

        using var process = FlowersProcess.Start("Flowers", TestData.Train(_images.Root, _dir.Combine("m.tlmodel")), environment: environment);

        Assert.Equal(1, await process.ExitCodeAsync(TimeSpan.FromMinutes(2)));
        var folder = unwritable == "HOME" ? "/proc/.cache/transferlearning/native/" : "/proc/tl-native/";
        Assert.StartsWith(
            "flowers: error: TorchSharp's native library needs a newer libstdc++ (GCC 13) than this system has, so TransferLearning loads a copy of it " +
            $"with those needs relaxed, but the copy could not be written to '{folder}",
            process.ErrorWithoutLibTorchWarnings,
            StringComparison.Ordinal);
        Assert.EndsWith(
            $"Set {TorchNativeLoader.CacheVariable} to a writable folder (it defaults to ~/.cache/transferlearning/native), or install libstdc++6 from GCC 13 or later.\n",
            process.ErrorWithoutLibTorchWarnings,
            StringComparison.Ordinal);
        Assert.Equal(string.Empty, process.Output);
    }

    [Fact]
    public async Task Train_NoLibTorchRuntimeInTheApplication_SaysWhichPackageToAdd()
    {
        // The CLI as an application built without a LibTorch runtime package: its managed files and no LibTorch, and a NuGet cache without one either.
        var app = Directory.CreateDirectory(_dir.Combine("app")).FullName;
        var built = Path.GetDirectoryName(FlowersProcess.SampleDll("Flowers"))!;
        foreach (var file in Directory.GetFiles(built))
        {
            File.Copy(file, Path.Combine(app, Path.GetFileName(file)));
        }

        var natives = Directory.CreateDirectory(Path.Combine(app, "runtimes", "linux-x64", "native")).FullName;
        foreach (var file in Directory.GetFiles(Path.Combine(built, "runtimes", "linux-x64", "native"), "lib*Sharp.so"))
        {
            if (!file.EndsWith("libLibTorchSharp.so", StringComparison.Ordinal))
            {
                File.Copy(file, Path.Combine(natives, Path.GetFileName(file))); // SkiaSharp, HarfBuzzSharp
            }
        }

        var environment = new Dictionary<string, string?> { ["NUGET_PACKAGES"] = Directory.CreateDirectory(_dir.Combine("empty-nuget")).FullName };

        using var process = FlowersProcess.Start(Path.Combine(app, "Flowers.dll"), TestData.Train(_images.Root, _dir.Combine("m.tlmodel")), environment: environment);

        Assert.Equal(1, await process.ExitCodeAsync(TimeSpan.FromMinutes(2)));
        Assert.Equal(
            "flowers: error: TorchSharp's native library (libLibTorchSharp.so) is neither next to the application nor in the NuGet cache: the application " +
            "references no LibTorch runtime. Add the package libtorch-cpu-linux-x64 2.10.0 (or TorchSharp-cpu, or a CUDA runtime) to the application.\n",
            process.ErrorWithoutLibTorchWarnings);
    }

    [Fact]
    public async Task QuickStart_NativeFolderNotWritable_ThrowsTorchNativeLoadExceptionUnwrapped()
    {
        if (!NeedsPatchedCopy)
        {
            return;
        }

        Directory.CreateSymbolicLink(_dir.Combine("flower_photos"), _images.Root);
        var environment = new Dictionary<string, string?> { ["XDG_CACHE_HOME"] = null, [TorchNativeLoader.CacheVariable] = null, ["HOME"] = "/proc" };

        using var process = FlowersProcess.Start("QuickStart", [], workingDirectory: _dir.Path, environment: environment);

        Assert.NotEqual(0, await process.ExitCodeAsync(TimeSpan.FromMinutes(2)));
        Assert.StartsWith("Unhandled exception. TransferLearning.Native.TorchNativeLoadException: TorchSharp's native library needs a newer libstdc++", process.ErrorWithoutLibTorchWarnings, StringComparison.Ordinal);
        Assert.DoesNotContain("TypeInitializationException", process.ErrorWithoutLibTorchWarnings, StringComparison.Ordinal);
    }
}
