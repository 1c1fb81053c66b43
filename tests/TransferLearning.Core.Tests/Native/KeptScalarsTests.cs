using TorchSharp;
using TransferLearning.Native;
using static TorchSharp.torch;

namespace TransferLearning.Core.Tests.Native;

public class KeptScalarsTests
{
    [Fact]
    public void KeptScalars_UsedInsideDisposeScopesThatEnded_StillHoldTheirValues()
    {
        for (var round = 0; round < 2; round++)
        {
            using var scope = NewDisposeScope();
            var x = tensor(new[] { -1f, 3f, 9f });
            x.hardtanh_(KeptScalars.Zero, KeptScalars.Six).add_(ones(3), KeptScalars.One);
            Assert.Equal(new[] { 1f, 4f, 7f }, x.data<float>().ToArray());
        }

        GC.Collect();
        GC.WaitForPendingFinalizers();
        Assert.Equal(0.0, KeptScalars.Zero.ToDouble());
        Assert.Equal(1.0, KeptScalars.One.ToDouble());
        Assert.Equal(6.0, KeptScalars.Six.ToDouble());
    }
}
