using static TorchSharp.torch;

namespace TransferLearning.Native;

/// <summary>
/// How many threads LibTorch uses inside one operation (a convolution, a matrix product): its intra-op thread pool,
/// one per process. The default is one thread per physical core, which suits one caller at a time (training, a batch
/// job, a desktop app). A server that predicts for several requests at once should set 1: every request then runs on
/// one core, concurrent requests use the other cores, and a prediction's latency stays steady under load instead of
/// growing with the number of busy threads (see the README's measurement).
/// </summary>
/// <remarks>
/// Set it once at start-up, before the first model is loaded or run: LibTorch applies the setting to each thread when
/// that thread first runs a parallel operation, so threads that already did keep their old count. The environment
/// variable <c>OMP_NUM_THREADS=1</c> has the same effect without code.
/// </remarks>
public static class TorchThreads
{
    /// <summary>Threads LibTorch uses inside one operation (at least 1). Process-wide; set it before running models.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The value is less than 1.</exception>
    public static int IntraOp
    {
        get
        {
            TorchNativeLoader.EnsureLoaded();
            return get_num_threads();
        }

        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, 1);
            TorchNativeLoader.EnsureLoaded();
            set_num_threads(value);
        }
    }
}
