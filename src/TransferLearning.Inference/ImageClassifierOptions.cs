using TransferLearning.Datasets.Decoding;

namespace TransferLearning.Inference;

/// <summary>Options for <see cref="ImageClassifier.Load(string, ImageClassifierOptions?)"/>; every setter checks its value.</summary>
public sealed class ImageClassifierOptions
{
    private int _intraOpThreads;
    private int _decodeThreads = Environment.ProcessorCount;
    private ImageDecodeOptions _decode = new();

    /// <summary>
    /// Threads ONNX Runtime uses inside one prediction. Default 0: ONNX Runtime's own choice, one thread per physical
    /// core, which gives the lowest latency when one caller predicts at a time (a console app, a desktop app, a batch
    /// job). A server that handles requests concurrently should set 1: its parallelism comes from the requests, and
    /// per-request thread pools would only compete for the same cores (and spin while waiting).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The value is negative.</exception>
    public int IntraOpThreads
    {
        get => _intraOpThreads;
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegative(value);
            _intraOpThreads = value;
        }
    }

    /// <summary>
    /// Images decoded at the same time by <see cref="ImageClassifier.Predict(IEnumerable{string}, int, int, CancellationToken)"/>
    /// (the next batch is decoded while the current one runs). Default <see cref="Environment.ProcessorCount"/>, as the
    /// training pipeline. Single-image predictions decode on the calling thread.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The value is not positive.</exception>
    public int DecodeThreads
    {
        get => _decodeThreads;
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegativeOrZero(value);
            _decodeThreads = value;
        }
    }

    /// <summary>
    /// How images are decoded: the pixel limit (default 50 megapixels, checked from the header before any pixel memory
    /// is allocated, which matters for uploads), truncated JPEGs (refused by default). Default: a new
    /// <see cref="ImageDecodeOptions"/> with its defaults. Leave <see cref="ImageDecodeOptions.ResizeMode"/> null so that images
    /// are resized as in training (the model's <c>resize</c> metadata); setting it overrides that.
    /// </summary>
    /// <exception cref="ArgumentNullException">The value is null.</exception>
    public ImageDecodeOptions Decode
    {
        get => _decode;
        set
        {
            ArgumentNullException.ThrowIfNull(value);
            _decode = value;
        }
    }
}
