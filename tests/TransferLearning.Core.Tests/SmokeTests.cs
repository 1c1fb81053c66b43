using TorchSharp;
namespace TransferLearning.Core.Tests;
public class SmokeTests
{
    [Fact]
    public void Conv_Runs()
    {
        using var x = torch.ones(1, 3, 8, 8);
        using var conv = torch.nn.Conv2d(3, 4, 3);
        using var y = conv.forward(x);
        Assert.Equal(new long[] { 1, 4, 6, 6 }, y.shape);
    }
}
