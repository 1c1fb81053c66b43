using TransferLearning.Training;

namespace TransferLearning.Core.Tests.Training;

public class HeapTrimmerTests
{
    private const long MB = 1 << 20;

    [Fact]
    public void TrimIfGrown_FirstCall_Trims()
    {
        var resident = 900 * MB;
        var trims = 0;
        var trimmer = new HeapTrimmer(256 * MB, TimeSpan.Zero, () => resident, () => { trims++; resident = 600 * MB; return true; });

        Assert.True(trimmer.TrimIfGrown());
        Assert.Equal(1, trims);
    }

    [Fact]
    public void TrimIfGrown_BatchWorkingSetAboveTheMarginBackAfterATrim_DoesNotTrimAgain()
    {
        var resident = 900 * MB;
        var trims = 0;
        var trimmer = new HeapTrimmer(256 * MB, TimeSpan.Zero, () => resident, () => { trims++; resident = 600 * MB; return true; });
        trimmer.TrimIfGrown();

        resident = 900 * MB; // the next batch faults its 300 MB back in: the reference, not growth
        Assert.False(trimmer.TrimIfGrown());
        resident = 900 * MB + 255 * MB;
        Assert.False(trimmer.TrimIfGrown());
        Assert.Equal(1, trims);
    }

    [Fact]
    public void TrimIfGrown_GrownByTheMarginOverTheFirstSizeAfterATrim_Trims()
    {
        var resident = 900 * MB;
        var trims = 0;
        var trimmer = new HeapTrimmer(256 * MB, TimeSpan.Zero, () => resident, () => { trims++; resident = 600 * MB; return true; });
        trimmer.TrimIfGrown();
        resident = 700 * MB;
        trimmer.TrimIfGrown();

        resident = 956 * MB;
        Assert.True(trimmer.TrimIfGrown());
        Assert.Equal(2, trims);
    }

    [Fact]
    public void TrimIfGrown_GrownByLessThanALargerMarginForThisCall_DoesNotTrim()
    {
        var resident = 600 * MB;
        var trims = 0;
        var trimmer = new HeapTrimmer(256 * MB, TimeSpan.Zero, () => resident, () => { trims++; return true; });
        trimmer.TrimIfGrown();
        trimmer.TrimIfGrown(); // the reference: 600 MB

        resident = 1_500 * MB; // 900 MB more: above the default margin, below the training one
        Assert.False(trimmer.TrimIfGrown(NativeHeap.TrainingGrowthMargin));
        Assert.Equal(1, trims);
        Assert.True(trimmer.TrimIfGrown());
        Assert.Equal(2, trims);
    }

    [Fact]
    public void TrimIfGrown_WithinTheInterval_DoesNotReadOrTrim()
    {
        var reads = 0;
        var trims = 0;
        var trimmer = new HeapTrimmer(0, TimeSpan.FromHours(1), () => { reads++; return 100 * MB; }, () => { trims++; return true; });

        Assert.True(trimmer.TrimIfGrown());
        var readsAfterFirst = reads;
        Assert.False(trimmer.TrimIfGrown());
        Assert.Equal(readsAfterFirst, reads);
        Assert.Equal(1, trims);
    }

    [Fact]
    public void TrimIfGrown_ResidentSizeUnreadable_TrimsEveryInterval()
    {
        var trims = 0;
        var trimmer = new HeapTrimmer(256 * MB, TimeSpan.Zero, () => -1, () => { trims++; return true; });

        Assert.True(trimmer.TrimIfGrown());
        Assert.True(trimmer.TrimIfGrown());
        Assert.Equal(2, trims);
    }

    [Fact]
    public void ResidentBytes_OnLinux_IsThisProcesssResidentSize()
    {
        Assert.True(OperatingSystem.IsLinux(), "the test machine runs Linux");
        var resident = NativeHeap.ResidentBytes();
        using var process = System.Diagnostics.Process.GetCurrentProcess();
        var workingSet = process.WorkingSet64;
        Assert.InRange(resident, workingSet / 2, workingSet * 2); // read at different moments of a running test process
    }
}
