using System.Runtime.InteropServices;
using TransferLearning.Training;

namespace TransferLearning.Core.Tests.Training;

public class NativeHeapTests
{
    [Fact]
    public void Trim_FreedHeapBlocksBelowALiveOne_ReleasesMemory()
    {
        Assert.True(OperatingSystem.IsLinux(), "the test machine runs glibc Linux; NativeHeap does nothing elsewhere");
        const int size = 64 * 1024; // below glibc's mmap threshold: served from the heap
        var blocks = new IntPtr[1000];
        for (var i = 0; i < blocks.Length; i++)
        {
            blocks[i] = Marshal.AllocHGlobal(size);
            for (var page = 0; page < size; page += 4096)
            {
                Marshal.WriteByte(blocks[i], page, 1); // make the pages resident
            }
        }

        for (var i = 0; i < blocks.Length - 1; i++)
        {
            Marshal.FreeHGlobal(blocks[i]);
        }

        try
        {
            // ~64 MB of free pages sit below a live block, so free() alone cannot give them back; trimming does.
            Assert.True(NativeHeap.Trim());
        }
        finally
        {
            Marshal.FreeHGlobal(blocks[^1]);
        }
    }

    [Fact]
    public void ConfigureAllocator_SecondCall_DoesNothing()
    {
        NativeHeap.ConfigureAllocator();

        Assert.False(NativeHeap.ConfigureAllocator());
    }
}
