using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;

namespace TransferLearning.Training;

/// <summary>
/// Gives memory that LibTorch freed back to the operating system between batches (glibc's <c>malloc_trim</c>), once
/// the process has grown by <see cref="HeapTrimmer.DefaultGrowthMargin"/> since the last trim.
/// </summary>
/// <remarks>
/// A forward pass frees tens of megabytes of activations per batch. glibc raises its mmap threshold after the first
/// such free, so later blocks come from the heap, and freed heap memory that is not at the top stays in the process:
/// during a featurizing pass over 3,322 photos the working set grew from about 650 MB to 1.8 GB without trimming
/// (fit bench, <c>--no-trim --trace-memory</c>). Trimming once a second kept it flat but made featurizing 10–30 %
/// slower: the next batch page-faults every released page in again. Trimming only when the resident size has grown by
/// a margin keeps memory bounded and the refaults rare. Elsewhere than glibc on Linux this does nothing.
/// </remarks>
internal static class NativeHeap
{
    private static readonly HeapTrimmer Shared = new(HeapTrimmer.DefaultGrowthMargin, TimeSpan.FromSeconds(1), ResidentBytes, Trim);
    private static int _unavailable = OperatingSystem.IsLinux() ? 0 : 1;

    /// <summary>
    /// Whether <see cref="TrimThrottled"/> trims (benchmarks switch it off to measure what trimming costs; the allocator
    /// settings apply either way).
    /// </summary>
    internal static bool Enabled { get; set; } = true;

    /// <summary>
    /// Growth since the last trim that makes a batch that trains the backbone trim: 1 GB. A training step's activations
    /// and gradients take several hundred megabytes and are freed at its end; trimming them away after every step made
    /// the next step page-fault them in again. Fit bench, 500 photos, 3 fine-tuning epochs: 163.2 s with glibc's
    /// defaults and trims at the default margin, 107.7 s with this margin and <see cref="ConfigureAllocator"/>'s
    /// settings (peak 1,165 MiB against 1,300 MiB; README, "Allocator settings for training steps").
    /// </summary>
    public const long TrainingGrowthMargin = 1L << 30;

    /// <summary>
    /// glibc's mmap threshold as this library sets it: 32 MB, the largest glibc accepts and where its own adaptive
    /// threshold ends up after the first large free. Blocks below it come from the heap and are reused.
    /// </summary>
    public const int MmapThreshold = 32 << 20;

    /// <summary>
    /// glibc's trim threshold as this library sets it: 1 GB. By default glibc returns the free top of a heap to the
    /// OS once it exceeds twice the mmap threshold (64 MB), so every training step page-faulted its activations in
    /// anew; this library's own trims (<see cref="TrimThrottled"/>) bound the process's growth instead.
    /// </summary>
    public const int TrimThreshold = 1 << 30;

    /// <summary>
    /// glibc's top pad as this library sets it: 64 MB, the size of one heap of a thread's arena. Threads other than the
    /// main one allocate from arenas made of 64 MB heaps, and glibc unmaps such a heap as soon as it is entirely free
    /// unless the pad covers it, whatever the trim threshold: a float featurizing pass (activations of about 25 MB
    /// each) then faulted up to 8 million pages in anew and spent up to 59 s in the kernel (README, "Allocator settings
    /// for threads' arenas"). It also makes the main heap grow in steps of at least this much (address space only).
    /// </summary>
    public const int TopPad = 64 << 20;

    private static int _configured;

    /// <summary>
    /// Trims the native heap when the process has grown enough since the last trim (cheap to call after every batch):
    /// by <see cref="HeapTrimmer.DefaultGrowthMargin"/>, or by <see cref="TrainingGrowthMargin"/> after a batch that
    /// trained the backbone. The first call sets glibc's thresholds (see <see cref="ConfigureAllocator"/>).
    /// </summary>
    public static void TrimThrottled(bool backboneTraining = false)
    {
        ConfigureAllocator();
        if (Enabled && Volatile.Read(ref _unavailable) == 0)
        {
            Shared.TrimIfGrown(backboneTraining ? TrainingGrowthMargin : HeapTrimmer.DefaultGrowthMargin);
        }
    }

    /// <summary>
    /// Once per process, on glibc: fixes the mmap threshold at <see cref="MmapThreshold"/>, the trim threshold at
    /// <see cref="TrimThreshold"/> and the top pad at <see cref="TopPad"/> (<c>mallopt</c>: <c>M_MMAP_THRESHOLD</c>,
    /// <c>M_TRIM_THRESHOLD</c>, <c>M_TOP_PAD</c>), unless <c>GLIBC_TUNABLES</c> sets malloc parameters itself. Returns
    /// whether this call set them. Called before the first batch of a fit, before int8 calibration and by
    /// <see cref="Backbones.Backbone.Forward"/>.
    /// </summary>
    internal static bool ConfigureAllocator()
    {
        if (Interlocked.Exchange(ref _configured, 1) != 0 || Volatile.Read(ref _unavailable) != 0
            || (Environment.GetEnvironmentVariable("GLIBC_TUNABLES") ?? string.Empty).Contains("glibc.malloc.", StringComparison.Ordinal))
        {
            return false;
        }

        try
        {
            return NativeMethods.mallopt(NativeMethods.MmapThresholdParameter, MmapThreshold) == 1
                & NativeMethods.mallopt(NativeMethods.TrimThresholdParameter, TrimThreshold) == 1
                & NativeMethods.mallopt(NativeMethods.TopPadParameter, TopPad) == 1;
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException)
        {
            Volatile.Write(ref _unavailable, 1); // not glibc (e.g. musl)
            return false;
        }
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

    /// <summary>The process's resident size in bytes (<c>/proc/self/statm</c>), or -1 where it cannot be read.</summary>
    internal static long ResidentBytes()
    {
        try
        {
            var fields = File.ReadAllText("/proc/self/statm").Split(' ');
            return fields.Length > 1 && long.TryParse(fields[1], NumberStyles.None, CultureInfo.InvariantCulture, out var pages)
                ? pages * Environment.SystemPageSize
                : -1;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return -1;
        }
    }

    private static class NativeMethods
    {
#pragma warning disable SYSLIB1054 // a plain blittable import; the source generator adds nothing here
        [DllImport("libc", ExactSpelling = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        public static extern int malloc_trim(nuint pad);

        public const int TrimThresholdParameter = -1; // glibc's M_TRIM_THRESHOLD
        public const int TopPadParameter = -2; // M_TOP_PAD
        public const int MmapThresholdParameter = -3; // M_MMAP_THRESHOLD

        [DllImport("libc", ExactSpelling = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        public static extern int mallopt(int param, int value);
#pragma warning restore SYSLIB1054
    }
}

/// <summary>
/// When to trim: at most once per interval, and only when the resident size exceeds a reference by the growth margin
/// (or when it cannot be read). The reference is the resident size at the first check after a trim, not right after
/// it: a trim also hands back the memory that every batch needs again (its activations), and measuring from below
/// that working set made each batch whose working set exceeds the margin trim again, and page-fault it all back in.
/// </summary>
internal sealed class HeapTrimmer(long growthMargin, TimeSpan interval, Func<long> residentBytes, Func<bool> trim)
{
    /// <summary>
    /// 256 MB: on the flowers featurizing pass (ResNet18, whole batches of 32) the process grew by about 13 MB a second
    /// without trimming, so this trims every 20 s or so instead of after every batch. Fit bench, <c>--limit 200</c>
    /// (1,000 photos), whole batches, three runs each: featurizing took 57–58 s trimming every second, 41–53 s
    /// without trimming, 47–52 s with this margin (peak 860–880 MB against 690–700 and 880–1,110).
    /// </summary>
    public const long DefaultGrowthMargin = 256L << 20;

    private readonly long _interval = (long)(interval.TotalSeconds * Stopwatch.Frequency);
    private long _lastCheck = long.MinValue / 2;
    private readonly Lock _gate = new();
    private long _reference = -1;
    private bool _trimmed;

    /// <summary>Trims if the interval has passed since the last check and the process has grown by the margin; returns whether it trimmed.</summary>
    public bool TrimIfGrown() => TrimIfGrown(growthMargin);

    /// <summary>As <see cref="TrimIfGrown()"/>, with another growth margin for this call.</summary>
    public bool TrimIfGrown(long margin)
    {
        var now = Stopwatch.GetTimestamp();
        var last = Volatile.Read(ref _lastCheck);
        if (now - last < _interval || Interlocked.CompareExchange(ref _lastCheck, now, last) != last)
        {
            return false;
        }

        lock (_gate)
        {
            var resident = residentBytes();
            if (resident >= 0 && _trimmed)
            {
                _trimmed = false;
                _reference = resident; // with the working set of a batch, back in after the trim
                return false;
            }

            if (resident >= 0 && _reference >= 0 && resident - _reference < margin)
            {
                return false;
            }

            trim();
            _trimmed = true;
            return true;
        }
    }
}
