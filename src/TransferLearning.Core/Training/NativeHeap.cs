using System.Diagnostics;
using System.Runtime.InteropServices;

namespace TransferLearning.Training;

/// <summary>
/// Gives memory that LibTorch freed back to the operating system between batches (glibc's <c>malloc_trim</c>).
/// </summary>
/// <remarks>
/// A forward pass frees tens of megabytes of activations per batch. glibc raises its mmap threshold after the first
/// such free, so later blocks come from the heap, and freed heap memory that is not at the top stays in the process:
/// during a long featurizing pass the working set grew by about 1 MB per image (measured with the fit bench and
/// <c>--trace-memory</c>; fixing <c>MALLOC_MMAP_THRESHOLD_</c> kept it flat). Trimming at most once a second releases
/// those free pages without changing what is allocated. Elsewhere than glibc on Linux this does nothing.
/// </remarks>
internal static class NativeHeap
{
    private static readonly long Interval = Stopwatch.Frequency; // one second
    private static long _lastTrim;
    private static int _unavailable = OperatingSystem.IsLinux() ? 0 : 1;

    /// <summary>Whether <see cref="TrimThrottled"/> trims (benchmarks switch it off to measure what trimming costs).</summary>
    internal static bool Enabled { get; set; } = true;

    /// <summary>Trims the native heap unless that was done less than a second ago (cheap to call after every batch).</summary>
    public static void TrimThrottled()
    {
        if (!Enabled || Volatile.Read(ref _unavailable) != 0)
        {
            return;
        }

        var now = Stopwatch.GetTimestamp();
        var last = Volatile.Read(ref _lastTrim);
        if (now - last < Interval || Interlocked.CompareExchange(ref _lastTrim, now, last) != last)
        {
            return;
        }

        Trim();
    }

    /// <summary>Trims the native heap now; returns whether memory was released.</summary>
    public static bool Trim()
    {
        if (Volatile.Read(ref _unavailable) != 0)
        {
            return false;
        }

        try
        {
            return NativeMethods.malloc_trim(0) != 0;
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException)
        {
            Volatile.Write(ref _unavailable, 1); // not glibc (e.g. musl): nothing to trim
            return false;
        }
    }

    private static class NativeMethods
    {
#pragma warning disable SYSLIB1054 // a plain blittable import; the source generator adds nothing here
        [DllImport("libc", ExactSpelling = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        public static extern int malloc_trim(nuint pad);
#pragma warning restore SYSLIB1054
    }
}
