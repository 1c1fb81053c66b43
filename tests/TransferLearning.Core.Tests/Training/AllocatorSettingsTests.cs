using System.Runtime.InteropServices;
using TransferLearning.Training;

namespace TransferLearning.Core.Tests.Training;

/// <summary>
/// glibc's thresholds as <see cref="NativeHeap.ConfigureAllocator"/> sets them. Alone, after the parallel tests: another
/// test's training trims the native heap (malloc_trim gives every arena's free pages back), which would fault these
/// blocks in again whatever the thresholds.
/// </summary>
[Collection(nameof(AllocatorSettingsTests))]
public class AllocatorSettingsTests
{
    [Fact]
    public void ConfigureAllocator_TrainingSizedBlocksFreedAndTakenAgain_ReusedWithoutPageFaults()
    {
        // Four rounds of two 24 MB blocks (activation-sized, below the 32 MB mmap threshold) touch 24,576 pages; kept in
        // the heap (glibc's default gives a freed top above 64 MB, or a mapped block, back to the OS), they fault none in.
        var (first, later) = FaultsOfRepeatedRounds(blocks: 2);

        Assert.True(first > 0, "getrusage(RUSAGE_THREAD) reports page faults on Linux");
        Assert.InRange(later, 0, 1_000);
    }

    [Fact]
    public void ConfigureAllocator_BlocksFillingMoreThanOneThreadArenaHeap_ReusedWithoutPageFaults()
    {
        // A thread other than the main one allocates from an arena made of 64 MB heaps; three 24 MB blocks need a second
        // heap, and glibc unmaps a heap that becomes entirely free whatever the trim threshold (unless M_TOP_PAD covers
        // it), so every round faulted that block in anew: a float featurizing pass spent up to 59 s in the kernel.
        var (first, later) = FaultsOfRepeatedRounds(blocks: 3);

        Assert.True(first > 0, "getrusage(RUSAGE_THREAD) reports page faults on Linux");
        Assert.InRange(later, 0, 1_000);
    }

    /// <summary>
    /// On a new thread: one round of allocating and touching <paramref name="blocks"/> 24 MB blocks and freeing them,
    /// then four more; the thread's page faults before them and during them.
    /// </summary>
    private static (long First, long Later) FaultsOfRepeatedRounds(int blocks)
    {
        Assert.True(OperatingSystem.IsLinux(), "the test machine runs glibc Linux; NativeHeap does nothing elsewhere");
        NativeHeap.ConfigureAllocator(); // once per process: other tests may have called it first
        long first = -1, later = -1;
        Exception? error = null;
        var thread = new Thread(() =>
        {
            try
            {
                Round(blocks);
                var start = ThreadMinorFaults();
                first = start;
                for (var r = 0; r < 4; r++)
                {
                    Round(blocks);
                }

                later = ThreadMinorFaults() - start;
            }
            catch (Exception e)
            {
                error = e;
            }
        });
        thread.Start();
        thread.Join();
        Assert.Null(error);
        return (first, later);

        static void Round(int count)
        {
            const int size = 24 << 20;
            var blocks = Enumerable.Range(0, count).Select(_ => Marshal.AllocHGlobal(size)).ToArray();
            foreach (var block in blocks)
            {
                for (var page = 0; page < size; page += 4096)
                {
                    Marshal.WriteByte(block, page, 1);
                }
            }

            foreach (var block in blocks)
            {
                Marshal.FreeHGlobal(block);
            }
        }
    }

    /// <summary>Minor page faults of the calling thread (<c>getrusage(RUSAGE_THREAD)</c>).</summary>
    private static long ThreadMinorFaults()
    {
        var usage = new long[18]; // struct rusage: two timevals, then 14 longs; ru_minflt is the 9th long
        Assert.Equal(0, getrusage(1, usage));
        return usage[8];
    }

#pragma warning disable SYSLIB1054 // a plain blittable import
    [DllImport("libc", SetLastError = true)]
    private static extern int getrusage(int who, [Out] long[] usage);
#pragma warning restore SYSLIB1054
}

/// <summary>Runs <see cref="AllocatorSettingsTests"/> with no other test at the same time.</summary>
[CollectionDefinition(nameof(AllocatorSettingsTests), DisableParallelization = true)]
public sealed class AllocatorSettingsRunAlone;
