using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using TransferLearning.Datasets;
using TransferLearning.Datasets.Decoding;
using TransferLearning.Datasets.Pipeline;

namespace TransferLearning.Inference;

/// <summary>
/// An image classifier exported by TransferLearning (<c>TrainedModel.ExportOnnx</c>), run on ONNX Runtime without
/// TorchSharp or LibTorch. Images are decoded and resized by <see cref="ImagePixels"/>, the code training used, so the
/// network sees the same pixels it was trained on.
/// </summary>
/// <remarks>
/// <para>
/// The model must follow the export contract: input <c>image</c>, float32 <c>[N, 3, H, W]</c>, RGB values 0..255
/// already resized to the model's input size (all normalisation happens inside the graph); output
/// <c>probabilities</c>, float32 <c>[N, classes]</c> (softmax; a <c>logits</c> output may be present and is not used);
/// <c>metadata_props</c> <c>classes</c> (JSON array of class names in label order), <c>input_size</c> (JSON
/// <c>[H, W]</c>) and <c>resize</c> (<c>"stretch"</c>: the whole image is scaled to the input size, ignoring its aspect
/// ratio; <c>"center-crop"</c>: the largest centred window with the input's aspect ratio is cut out and scaled), plus
/// optional <c>source</c> and <c>transferlearning_version</c>.
/// </para>
/// <para>
/// Predict methods may be called from many threads at once (ONNX Runtime sessions are thread-safe for inference).
/// Dispose the classifier once no prediction is running; it holds native memory.
/// </para>
/// </remarks>
public sealed class ImageClassifier : IDisposable
{
    private static readonly string[] InputNames = [ModelContract.InputName];
    private static readonly string[] OutputNames = [ModelContract.ProbabilitiesName];
    private static readonly string[] AnyClass = ["image"];

    private readonly InferenceSession _session;
    private readonly SessionOptions _sessionOptions;
    private readonly string _modelName;
    private readonly InputSpec _pixels;
    private readonly ImageDecodeOptions _decode;
    private readonly int _decodeThreads;
    private readonly int _maxBatch;
    private int _disposed;

    private ImageClassifier(InferenceSession session, SessionOptions sessionOptions, string modelName, ModelContract contract, ImageClassifierOptions options)
    {
        _session = session;
        _sessionOptions = sessionOptions;
        _modelName = modelName;
        Classes = contract.Classes;
        InputWidth = contract.Width;
        InputHeight = contract.Height;
        ResizeMode = contract.ResizeMode;
        Source = contract.Source;
        Metadata = contract.Metadata;
        _decode = options.Decode.Clone();
        _decodeThreads = options.DecodeThreads;
        _maxBatch = contract.MaxBatch;
        // Identity normalisation: 0..255 RGB values as floats; the graph normalises.
        _pixels = new InputSpec(InputWidth, InputHeight, 0f, 255f, ChannelOrder.Rgb, resizeMode: ResizeMode);
    }

    /// <summary>Class names in label order (metadata <c>classes</c>).</summary>
    public IReadOnlyList<string> Classes { get; }

    /// <summary>Width, in pixels, images are resized to (metadata <c>input_size</c>).</summary>
    public int InputWidth { get; }

    /// <summary>Height, in pixels, images are resized to (metadata <c>input_size</c>).</summary>
    public int InputHeight { get; }

    /// <summary>How images are brought to the input size, as in training (metadata <c>resize</c>).</summary>
    public ResizeMode ResizeMode { get; }

    /// <summary>The backbone the model was trained from (metadata <c>source</c>), or null when the model does not say.</summary>
    public string? Source { get; }

    /// <summary>Every <c>metadata_props</c> entry of the model, by key.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Test hook: receives a copy of every input tensor just before it is given to ONNX Runtime.</summary>
    internal Action<float[]>? InputObserver { get; set; }

    /// <summary>Loads an exported classifier from an <c>.onnx</c> file.</summary>
    /// <param name="path">The model file.</param>
    /// <param name="options">Options; null for defaults.</param>
    /// <returns>The classifier; dispose it.</returns>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidModelException">The file is not an ONNX model, or not one that follows the export contract (the message names what is missing).</exception>
    public static ImageClassifier Load(string path, ImageClassifierOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        if (Directory.Exists(path))
        {
            throw new InvalidModelException(path, "the path is a directory, not an .onnx file", null);
        }

        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"The model file '{path}' does not exist.", path);
        }

        return Create(sessionOptions => new InferenceSession(path, sessionOptions), path, options);
    }

    /// <summary>Loads an exported classifier from the bytes of an <c>.onnx</c> file.</summary>
    /// <param name="model">The model bytes.</param>
    /// <param name="options">Options; null for defaults.</param>
    /// <returns>The classifier; dispose it.</returns>
    /// <exception cref="InvalidModelException">The bytes are not an ONNX model, or not one that follows the export contract.</exception>
    public static ImageClassifier Load(byte[] model, ImageClassifierOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        return Create(sessionOptions => new InferenceSession(model, sessionOptions), "<bytes>", options);
    }

    /// <summary>Loads an exported classifier from a stream holding an <c>.onnx</c> file (read to its end, not disposed).</summary>
    /// <param name="model">The stream.</param>
    /// <param name="options">Options; null for defaults.</param>
    /// <returns>The classifier; dispose it.</returns>
    /// <exception cref="InvalidModelException">The content is not an ONNX model, or not one that follows the export contract.</exception>
    public static ImageClassifier Load(Stream model, ImageClassifierOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        using var copy = new MemoryStream();
        model.CopyTo(copy);
        var bytes = copy.ToArray();
        return Create(sessionOptions => new InferenceSession(bytes, sessionOptions), model is FileStream fs ? fs.Name : "<stream>", options);
    }

    /// <summary>Classifies an image file (format recognised from the content).</summary>
    /// <param name="imagePath">The image file.</param>
    /// <param name="topK">How many classes to list in <see cref="Prediction.Top"/> (at least 1).</param>
    /// <returns>The prediction, with <see cref="Prediction.Source"/> set to <paramref name="imagePath"/>.</returns>
    /// <exception cref="InvalidImageException">The file cannot be read or is not a usable image; the message names the file.</exception>
    public Prediction Predict(string imagePath, int topK = 5)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(imagePath);
        return PredictOne(static (chw, s) => ImagePixels.DecodeFile(s.Path, s.Spec, chw, s.Options), (Path: imagePath, Spec: _pixels, Options: _decode), topK, imagePath);
    }

    /// <summary>Classifies an encoded image (JPEG, PNG, GIF, BMP, WebP, TIFF, TGA, PBM) read from a stream.</summary>
    /// <param name="image">Stream positioned at the start of the encoded image; read to its end, not disposed.</param>
    /// <param name="topK">How many classes to list in <see cref="Prediction.Top"/> (at least 1).</param>
    /// <returns>The prediction (no <see cref="Prediction.Source"/>).</returns>
    /// <exception cref="InvalidImageException">The content is not a usable image.</exception>
    public Prediction Predict(Stream image, int topK = 5)
    {
        ArgumentNullException.ThrowIfNull(image);
        return PredictOne(static (chw, s) => ImagePixels.DecodeStream(s.Image, s.Spec, chw, s.Options), (Image: image, Spec: _pixels, Options: _decode), topK, null);
    }

    /// <summary>Classifies an image already in memory (EXIF orientation applied; the image is not changed).</summary>
    /// <param name="image">The image.</param>
    /// <param name="topK">How many classes to list in <see cref="Prediction.Top"/> (at least 1).</param>
    /// <returns>The prediction (no <see cref="Prediction.Source"/>).</returns>
    public Prediction Predict(Image<Rgb24> image, int topK = 5)
    {
        ArgumentNullException.ThrowIfNull(image);
        return PredictOne(static (chw, s) => ImagePixels.FromImage(s.Image, s.Spec, chw, s.Options), (Image: image, Spec: _pixels, Options: _decode), topK, null);
    }

    /// <summary>
    /// Classifies many image files, <paramref name="batchSize"/> per ONNX Runtime call; images are decoded on
    /// <see cref="ImageClassifierOptions.DecodeThreads"/> threads while the previous batch runs.
    /// </summary>
    /// <param name="imagePaths">The image files.</param>
    /// <param name="topK">How many classes to list in <see cref="Prediction.Top"/> (at least 1).</param>
    /// <param name="batchSize">Images per ONNX Runtime call (at least 1).</param>
    /// <param name="cancellationToken">Stops between batches, and interrupts a running batch.</param>
    /// <returns>One prediction per path, in order, each with its <see cref="Prediction.Source"/>.</returns>
    /// <exception cref="InvalidImageException">A file cannot be read or is not a usable image; the message names the file.</exception>
    public IReadOnlyList<Prediction> Predict(IEnumerable<string> imagePaths, int topK = 5, int batchSize = 32, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(imagePaths);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(topK);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        var samples = new List<ImageSample>();
        foreach (var path in imagePaths)
        {
            if (string.IsNullOrWhiteSpace(path))
            {
                throw new ArgumentException($"Image path {samples.Count} is null or empty.", nameof(imagePaths));
            }

            samples.Add(new ImageSample(path, 0));
        }

        var results = new List<Prediction>(samples.Count);
        if (samples.Count == 0)
        {
            return results;
        }

        var loaderOptions = new ImageLoaderOptions
        {
            BatchSize = Math.Min(batchSize, _maxBatch), // a model with N fixed at 1 runs one image at a time
            DegreeOfParallelism = _decodeThreads,
            PrefetchBatches = 1,
            Decode = _decode,
        };
        using var loader = new ImageLoader(new ImageDataset(AnyClass, samples), _pixels, loaderOptions);
        foreach (var batch in loader.Batches(0, cancellationToken))
        {
            using (batch)
            {
                using var input = NewInput(batch.Count);
                batch.Pixels.CopyTo(input.GetTensorMutableDataAsSpan<float>());
                results.AddRange(Run(input, batch.Count, topK, [.. batch.Paths], cancellationToken));
            }
        }

        return results;
    }

    /// <summary>Releases the ONNX Runtime session. Call it once no prediction is running.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _session.Dispose();
            _sessionOptions.Dispose();
        }
    }

    private static ImageClassifier Create(Func<SessionOptions, InferenceSession> open, string modelName, ImageClassifierOptions? options)
    {
        options ??= new ImageClassifierOptions();
        var sessionOptions = new SessionOptions
        {
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
            ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
            IntraOpNumThreads = options.IntraOpThreads,
            InterOpNumThreads = 1,
            LogId = "TransferLearning.Inference",
            LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR,
        };
        InferenceSession? session = null;
        try
        {
            try
            {
                session = open(sessionOptions);
            }
            catch (OnnxRuntimeException ex)
            {
                throw new InvalidModelException(modelName, $"ONNX Runtime cannot load it as an ONNX model ({ex.Message.Trim()})", ex);
            }

            var contract = ModelContract.Read(session, modelName);
            return new ImageClassifier(session, sessionOptions, modelName, contract, options);
        }
        catch
        {
            session?.Dispose();
            sessionOptions.Dispose();
            throw;
        }
    }

    private OrtValue NewInput(int count) =>
        OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, TensorElementType.Float, [count, 3, InputHeight, InputWidth]);

    private Prediction PredictOne<TState>(FillAction<TState> fill, TState state, int topK, string? source)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(topK);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        using var input = NewInput(1);
        fill(input.GetTensorMutableDataAsSpan<float>(), state);
        return Run(input, 1, topK, [source], CancellationToken.None)[0];
    }

    /// <summary>Runs one batch and turns each row of <c>probabilities</c> into a <see cref="Prediction"/>.</summary>
    private List<Prediction> Run(OrtValue input, int count, int topK, string?[] sources, CancellationToken cancellationToken)
    {
        InputObserver?.Invoke(input.GetTensorDataAsSpan<float>().ToArray());
        using var runOptions = new RunOptions();
        using var cancel = cancellationToken.CanBeCanceled ? cancellationToken.Register(() => runOptions.Terminate = true) : default;
        IDisposableReadOnlyCollection<OrtValue> outputs;
        try
        {
            outputs = _session.Run(runOptions, InputNames, [input], OutputNames);
        }
        catch (OnnxRuntimeException) when (cancellationToken.IsCancellationRequested)
        {
            throw new OperationCanceledException(cancellationToken);
        }

        using (outputs)
        {
            var probabilities = outputs[0];
            var shape = probabilities.GetTensorTypeAndShape().Shape;
            if (shape is not [var n, var c] || n != count || c != Classes.Count)
            {
                throw new InvalidModelException(_modelName,
                    $"output '{ModelContract.ProbabilitiesName}' has shape [{string.Join(", ", shape)}] for {count} image(s); expected [{count}, {Classes.Count}]", null);
            }

            var values = probabilities.GetTensorDataAsSpan<float>();
            var results = new List<Prediction>(count);
            for (var i = 0; i < count; i++)
            {
                results.Add(Prediction.FromProbabilities(Classes, values.Slice(i * Classes.Count, Classes.Count), topK, sources[i]));
            }

            return results;
        }
    }

    private delegate void FillAction<TState>(Span<float> chw, TState state);
}
