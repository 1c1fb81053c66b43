namespace TransferLearning.Datasets.Pipeline;

/// <summary>
/// SplitMix64: a tiny, fully specified PRNG, so that splits and shuffles are identical on every runtime and machine
/// (unlike <see cref="Random"/>, whose algorithm is an implementation detail).
/// </summary>
internal sealed class SplitMix64
{
    private ulong _state;

    public SplitMix64(ulong seed) => _state = seed;

    /// <summary>A generator for a (seed, stream) pair, e.g. (user seed, epoch).</summary>
    public static SplitMix64 ForStream(long seed, long stream) =>
        new(Mix((ulong)seed) ^ Mix(Mix((ulong)stream + 0x632BE59BD9B4E019UL)));

    public ulong Next()
    {
        _state += 0x9E3779B97F4A7C15UL;
        return Mix(_state);
    }

    /// <summary>A uniform integer in [0, bound) without modulo bias.</summary>
    public int NextBelow(int bound)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bound);
        var n = (ulong)bound;
        var threshold = (0UL - n) % n;
        while (true)
        {
            var r = Next();
            if (r >= threshold)
            {
                return (int)(r % n);
            }
        }
    }

    /// <summary>Fisher–Yates shuffle in place.</summary>
    public void Shuffle<T>(IList<T> items)
    {
        for (var i = items.Count - 1; i > 0; i--)
        {
            var j = NextBelow(i + 1);
            (items[i], items[j]) = (items[j], items[i]);
        }
    }

    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
