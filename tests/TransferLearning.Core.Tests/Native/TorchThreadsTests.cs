using TransferLearning.Native;

namespace TransferLearning.Core.Tests.Native;

public class TorchThreadsTests
{
    [Fact]
    public void IntraOp_SetToOne_LibTorchUsesOneThreadUntilSetBack()
    {
        var before = TorchThreads.IntraOp;
        try
        {
            TorchThreads.IntraOp = 1;

            Assert.Equal(1, TorchThreads.IntraOp);
            Assert.Equal(1, TorchSharp.torch.get_num_threads());
        }
        finally
        {
            TorchThreads.IntraOp = before;
        }

        Assert.Equal(before, TorchThreads.IntraOp);
    }

    [Fact]
    public void IntraOp_Zero_Throws() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => TorchThreads.IntraOp = 0);
}
