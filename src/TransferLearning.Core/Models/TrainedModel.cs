using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using TransferLearning.Backbones;
using TransferLearning.Datasets.Pipeline;
using TransferLearning.Datasets;
using TransferLearning.Heads;
using TransferLearning.Native;
using TransferLearning.Training;
using static TorchSharp.torch;

namespace TransferLearning.Models;

/// <summary>Options for <see cref="TrainedModel.Evaluate(ImageDataset, EvaluateOptions?, IProgress{int}?, CancellationToken)"/>.</summary>
public sealed class EvaluateOptions
{
    private int _batchSize = 32;

    /// <summary>Images per batch. Default 32.</summary>
    public int BatchSize
    {
        get => _batchSize;
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegativeOrZero(value);
            _batchSize = value;
        }
    }

    /// <summary>What to do with unreadable images. Default: fail naming the file.</summary>
    public BadImagePolicy BadImages { get; set; } = BadImagePolicy.Fail;

    /// <summary>
    /// Test-time augmentation: score each image and its mirror image and average the two probability vectors (the loss
    /// and accuracy are those of the averages). Costs a second backbone pass. Default false.
    /// </summary>
    public bool TestTimeAugmentation { get; set; }
}

/// <summary>Options for the <c>Predict</c> overloads of <see cref="TrainedModel"/>. Setters check their value.</summary>
public sealed class PredictOptions
{
    /// <summary>Default number of classes listed in <see cref="Prediction.Top"/>.</summary>
    public const int DefaultTopK = 5;

    /// <summary>Default images per forward pass when predicting many files.</summary>
    public const int DefaultBatchSize = 32;

    private int _topK = DefaultTopK;
    private int _batchSize = DefaultBatchSize;

    /// <summary>How many classes to list in <see cref="Prediction.Top"/> (at least 1; default 5).</summary>
    public int TopK
    {
        get => _topK;
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegativeOrZero(value);
            _topK = value;
        }
    }

    /// <summary>Images per forward pass when predicting many files (at least 1; default 32).</summary>
    public int BatchSize
    {
        get => _batchSize;
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegativeOrZero(value);
            _batchSize = value;
        }
    }

    /// <summary>
    /// Test-time augmentation: average the probabilities of the image and of its mirror image (twice the backbone work;
    /// often slightly more accurate). Default false.
    /// </summary>
    public bool TestTimeAugmentation { get; set; }
}

/// <summary>Options for <see cref="TrainedModel.Load(string, ModelLoadOptions?)"/>.</summary>
public sealed class ModelLoadOptions
{
    /// <summary>
    /// Builds the backbone architecture from the source recorded in the file; null (default) resolves it through the
    /// model hub. Needed for backbones that were wrapped by hand rather than loaded from the hub.
    /// </summary>
    public Func<string, Backbone>? BackboneFactory { get; set; }

    private string _device = "cpu";

    /// <summary>Device to load onto: <c>cpu</c> (default), <c>cuda</c> or <c>cuda:N</c>.</summary>
    public string Device
    {
        get => _device;
        set
        {
            ArgumentException.ThrowIfNullOrWhiteSpace(value);
            _ = TorchDevices.Parse(value, checkAvailable: false);
            _device = value;
        }
    }
}

/// <summary>
/// A backbone with a trained head: predicts, evaluates, saves and loads. Holds native memory: dispose it.
/// </summary>
public sealed class TrainedModel : IDisposable
{
    private bool _disposed;

    internal TrainedModel(
        Backbone backbone,
        nn.Module<Tensor, Tensor> head,
        IReadOnlyList<string> classes,
        InputSpec inputSpec,
        HeadOptions headOptions,
        History history,
        Device device)
    {
        Backbone = backbone;
        Head = head;
        Classes = classes;
        InputSpec = inputSpec;
        HeadOptions = headOptions;
        History = history;
        Device = device;
    }

    /// <summary>The feature extractor (possibly fine-tuned).</summary>
    public Backbone Backbone { get; }

    /// <summary>Class names in label order.</summary>
    public IReadOnlyList<string> Classes { get; }

    /// <summary>How images are prepared for this model (size, range, channel order, normalisation, resize mode).</summary>
    public InputSpec InputSpec { get; }

    /// <summary>Every epoch this model was trained for, across fits.</summary>
    public History History { get; }

    internal nn.Module<Tensor, Tensor> Head { get; }

    internal HeadOptions HeadOptions { get; }

    internal Device Device { get; }

    /// <summary>Classifies an image file.</summary>
    /// <param name="imagePath">Path of the image.</param>
    /// <param name="topK">How many classes to list in <see cref="Prediction.Top"/> (at least 1).</param>
    public Prediction Predict(string imagePath, int topK = PredictOptions.DefaultTopK) => Predict(imagePath, new PredictOptions { TopK = topK });

    /// <summary>Classifies an image file, optionally with test-time augmentation.</summary>
    /// <param name="imagePath">Path of the image.</param>
    /// <param name="options">Top-k and test-time augmentation.</param>
    public Prediction Predict(string imagePath, PredictOptions options)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(imagePath);
        ArgumentNullException.ThrowIfNull(options);
        using var scope = NewDisposeScope();
        return Predict(ImageTensor.FromFile(imagePath, InputSpec).unsqueeze(0), options, [imagePath])[0];
    }

    /// <summary>Classifies an encoded image (JPEG, PNG, …) read from a stream.</summary>
    /// <param name="image">The encoded image.</param>
    /// <param name="topK">How many classes to list in <see cref="Prediction.Top"/> (at least 1).</param>
    public Prediction Predict(Stream image, int topK = PredictOptions.DefaultTopK) => Predict(image, new PredictOptions { TopK = topK });

    /// <summary>Classifies an encoded image read from a stream, optionally with test-time augmentation.</summary>
    /// <param name="image">The encoded image.</param>
    /// <param name="options">Top-k and test-time augmentation.</param>
    public Prediction Predict(Stream image, PredictOptions options)
    {
        ArgumentNullException.ThrowIfNull(image);
        ArgumentNullException.ThrowIfNull(options);
        using var scope = NewDisposeScope();
        return Predict(ImageTensor.FromStream(image, InputSpec).unsqueeze(0), options, [null])[0];
    }

    /// <summary>Classifies an image already in memory.</summary>
    /// <param name="image">The image.</param>
    /// <param name="topK">How many classes to list in <see cref="Prediction.Top"/> (at least 1).</param>
    public Prediction Predict(Image<Rgb24> image, int topK = PredictOptions.DefaultTopK) => Predict(image, new PredictOptions { TopK = topK });

    /// <summary>Classifies an image already in memory, optionally with test-time augmentation.</summary>
    /// <param name="image">The image.</param>
    /// <param name="options">Top-k and test-time augmentation.</param>
    public Prediction Predict(Image<Rgb24> image, PredictOptions options)
    {
        ArgumentNullException.ThrowIfNull(image);
        ArgumentNullException.ThrowIfNull(options);
        using var scope = NewDisposeScope();
        return Predict(ImageTensor.FromImage(image, InputSpec).unsqueeze(0), options, [null])[0];
    }

    /// <summary>Classifies many image files, batch by batch.</summary>
    /// <param name="imagePaths">Paths of the images.</param>
    /// <param name="topK">How many classes to list in <see cref="Prediction.Top"/> (at least 1).</param>
    /// <param name="batchSize">Images per forward pass.</param>
    /// <param name="cancellationToken">Stops between batches.</param>
    public IReadOnlyList<Prediction> Predict(IEnumerable<string> imagePaths, int topK = PredictOptions.DefaultTopK, int batchSize = PredictOptions.DefaultBatchSize, CancellationToken cancellationToken = default) =>
        Predict(imagePaths, new PredictOptions { TopK = topK, BatchSize = batchSize }, cancellationToken);

    /// <summary>Classifies many image files, batch by batch, optionally with test-time augmentation.</summary>
    /// <param name="imagePaths">Paths of the images.</param>
    /// <param name="options">Top-k, batch size and test-time augmentation.</param>
    /// <param name="cancellationToken">Stops between batches.</param>
    public IReadOnlyList<Prediction> Predict(IEnumerable<string> imagePaths, PredictOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(imagePaths);
        ArgumentNullException.ThrowIfNull(options);
        var results = new List<Prediction>();
        foreach (var chunk in imagePaths.Chunk(options.BatchSize))
        {
            cancellationToken.ThrowIfCancellationRequested();
            using var scope = NewDisposeScope();
            var images = stack(chunk.Select(p => ImageTensor.FromFile(p, InputSpec)).ToArray());
            results.AddRange(Predict(images, options, chunk));
        }

        return results;
    }

    /// <summary>Class probabilities for a prepared batch <c>[N, 3, H, W]</c> (see <see cref="InputSpec"/>).</summary>
    /// <param name="images">The batch.</param>
    /// <returns>Probabilities <c>[N, classes]</c> on the CPU; the caller owns the tensor.</returns>
    public Tensor PredictProbabilities(Tensor images) => PredictProbabilities(images, testTimeAugmentation: false);

    /// <summary>Class probabilities for a prepared batch, optionally averaged with those of the mirrored images.</summary>
    /// <param name="images">The batch <c>[N, 3, H, W]</c>.</param>
    /// <param name="testTimeAugmentation">Average with the probabilities of the left-right mirrored images.</param>
    /// <returns>Probabilities <c>[N, classes]</c> on the CPU; the caller owns the tensor.</returns>
    public Tensor PredictProbabilities(Tensor images, bool testTimeAugmentation)
    {
        ArgumentNullException.ThrowIfNull(images);
        ObjectDisposedException.ThrowIf(_disposed, this);
        using var scope = NewDisposeScope();
        return Probabilities(images, testTimeAugmentation).cpu().MoveToOuterDisposeScope();
    }

    /// <summary>Accuracy, loss, per-class precision/recall/F1 and the confusion matrix on labelled data.</summary>
    /// <param name="data">Images with labels; its class names must all be classes of this model.</param>
    /// <param name="options">Batch size and bad-image policy.</param>
    /// <param name="progress">Receives the number of images done.</param>
    /// <param name="cancellationToken">Stops between batches.</param>
    public Evaluation Evaluate(ImageDataset data, EvaluateOptions? options = null, IProgress<int>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(data);
        ObjectDisposedException.ThrowIf(_disposed, this);
        options ??= new EvaluateOptions();
        var unknown = data.Classes.Where(c => !Classes.Contains(c)).ToList();
        if (unknown.Count > 0)
        {
            throw new ArgumentException(
                $"The data has classes the model does not know: {string.Join(", ", unknown)}. The model's classes are: {string.Join(", ", Classes)}.",
                nameof(data));
        }

        var toModel = data.Classes.Select(c => (long)IndexOf(c)).ToArray();
        var confusion = new int[Classes.Count, Classes.Count];
        double lossSum = 0;
        var done = 0;
        using var remap = tensor(toModel);
        using var loader = new ImageLoader(data, InputSpec, new ImageLoaderOptions { BatchSize = options.BatchSize, BadImages = options.BadImages });
        using var noGrad = no_grad();
        foreach (var batch in loader.Batches(0, cancellationToken))
        {
            using var scope = NewDisposeScope();
            using (batch)
            {
                var images = ImageTensor.FromBatch(batch);
                var labels = remap.index_select(0, ImageTensor.LabelsOf(batch)).to(Device);
                Tensor scores, loss;
                if (options.TestTimeAugmentation)
                {
                    scores = Probabilities(images, testTimeAugmentation: true);
                    loss = nn.functional.nll_loss(scores.clamp_min(1e-45f).log(), labels, reduction: nn.Reduction.Sum);
                }
                else
                {
                    scores = Logits(images); // the same loss as the training loop's validation pass
                    loss = nn.functional.cross_entropy(scores, labels, reduction: nn.Reduction.Sum);
                }

                lossSum += loss.item<float>();
                done += Evaluation.AddToConfusion(confusion, scores, labels);
                progress?.Report(done);
            }
        }

        return new Evaluation(Classes, confusion, lossSum, loader.Skipped);
    }

    /// <summary>
    /// Writes the model to one file: weights, class names, backbone source, input spec and history. The write is atomic:
    /// an existing file is replaced only once the new one is complete.
    /// </summary>
    /// <param name="path">Destination file (conventionally <c>.tlmodel</c>).</param>
    public void Save(string path)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ModelFile.Save(this, path);
    }

    /// <summary>
    /// Writes the model as an ONNX classifier (opset 17) for ONNX Runtime, ML.NET's <c>ApplyOnnxModel</c> or any other
    /// ONNX consumer. See <see cref="ExportOnnx(string, OnnxExportOptions)"/> for the graph's contract.
    /// </summary>
    /// <param name="path">Destination file (conventionally <c>.onnx</c>); replaced atomically.</param>
    /// <exception cref="NotSupportedException">The backbone (e.g. one wrapped by hand around an arbitrary module) or one of its layers has no ONNX form; the message names it.</exception>
    public void ExportOnnx(string path) => ExportOnnx(path, new OnnxExportOptions());

    /// <summary>
    /// Writes the model as an ONNX classifier (opset 17, IR 8), with the current weights (fine-tuned ones included).
    /// <list type="bullet">
    /// <item>Input <c>image</c>: float32 <c>[N, 3, H, W]</c> (<c>N</c> dynamic), RGB, values 0..255, each image already
    /// resized to <see cref="InputSpec"/>'s size as the <c>resize</c> metadata says. Everything else the network needs
    /// (value range, mean/std, RGB→BGR, a mean image) happens inside the graph.</item>
    /// <item>Outputs <c>probabilities</c> (softmax) and <c>logits</c> (unless <see cref="OnnxExportOptions.IncludeLogits"/>
    /// is false): float32 <c>[N, classes]</c>.</item>
    /// <item><c>metadata_props</c>: <c>classes</c> (JSON array in label order), <c>input_size</c> (JSON <c>[H, W]</c>),
    /// <c>resize</c> (<c>stretch</c> or <c>center-crop</c>), <c>source</c> (the backbone's source),
    /// <c>transferlearning_version</c>, then <see cref="OnnxExportOptions.Metadata"/>.</item>
    /// </list>
    /// An int8 backbone (<see cref="Backbone.IsInt8"/>) is exported in float: the graph holds the float weights the
    /// int8 backbone was made from, so it computes what the model computes without <c>WithInt8Backbone()</c> (quantization
    /// is not written as ONNX QDQ nodes). The file is written to a temporary file and moved into place, so a failed export
    /// leaves no file and an existing one unchanged.
    /// </summary>
    /// <param name="path">Destination file (conventionally <c>.onnx</c>).</param>
    /// <param name="options">Outputs, metadata and description.</param>
    /// <exception cref="NotSupportedException">The backbone or a layer in it has no ONNX form; the message names the backbone and the layer and says why.</exception>
    /// <exception cref="ArgumentException"><paramref name="options"/> sets a metadata key the export writes itself.</exception>
    public void ExportOnnx(string path, OnnxExportOptions options)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        ArgumentNullException.ThrowIfNull(options);
        ObjectDisposedException.ThrowIf(_disposed, this);
        OnnxExport.Write(this, path, options);
    }

    /// <summary>Reads a model written by <see cref="Save(string)"/>.</summary>
    /// <param name="path">The model file.</param>
    /// <param name="options">How to rebuild the backbone and where to load.</param>
    /// <exception cref="ModelFileException">The file is truncated, tampered with or not a model file.</exception>
    public static TrainedModel Load(string path, ModelLoadOptions? options = null) => ModelFile.Load(path, options ?? new ModelLoadOptions());

    /// <inheritdoc />
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        Head.Dispose();
        Backbone.Dispose();
    }

    internal Tensor Logits(Tensor images)
    {
        Head.eval();
        Backbone.SetTrainingMode(false);
        using var noGrad = no_grad();
        return Head.forward(Backbone.Forward(images.to(Device)));
    }

    /// <summary>Softmax probabilities; with test-time augmentation, the mean of those of the images and their mirror images.</summary>
    internal Tensor Probabilities(Tensor images, bool testTimeAugmentation)
    {
        var probabilities = Logits(images).softmax(1);
        if (!testTimeAugmentation)
        {
            return probabilities;
        }

        using var mirrored = images.flip(3);
        return (probabilities + Logits(mirrored).softmax(1)) / 2;
    }

    private int IndexOf(string label)
    {
        for (var i = 0; i < Classes.Count; i++)
        {
            if (Classes[i] == label)
            {
                return i;
            }
        }

        return -1;
    }

    private List<Prediction> Predict(Tensor images, PredictOptions options, string?[] sources)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        using var probabilities = Probabilities(images, options.TestTimeAugmentation).cpu();
        var all = probabilities.data<float>().ToArray();
        var results = new List<Prediction>(sources.Length);
        for (var n = 0; n < sources.Length; n++)
        {
            results.Add(Prediction.FromProbabilities(Classes, all.AsSpan(n * Classes.Count, Classes.Count), options.TopK, sources[n]));
        }

        return results;
    }
}
