using TransferLearning.Datasets.Pipeline;

namespace TransferLearning.Datasets.Tests.Pipeline;

public sealed class SplitMix64Tests
{
    [Fact]
    public void Next_MatchesReferenceSequence()
    {
        // Reference values of Vigna's splitmix64.c.
        var rng = new SplitMix64(0);
        Assert.Equal(0xE220A8397B1DCDAFUL, rng.Next());
        Assert.Equal(0x6E789E6AA1B965F4UL, rng.Next());
        Assert.Equal(6457827717110365317UL, new SplitMix64(1234567).Next());
    }

    [Fact]
    public void NextBelow_StaysInRangeAndCoversIt()
    {
        var rng = new SplitMix64(5);
        var seen = new bool[7];
        for (var i = 0; i < 500; i++)
        {
            var v = rng.NextBelow(7);
            Assert.InRange(v, 0, 6);
            seen[v] = true;
        }

        Assert.All(seen, Assert.True);
    }
}
