using TorchSharp;
using TransferLearning.Backbones;
using TransferLearning.Datasets.Pipeline;
using TransferLearning.Datasets;
using TransferLearning.Downloads;
using TransferLearning.Heads;
using TransferLearning.Hub;
using TransferLearning.Models;
using TransferLearning.Training;
using static TorchSharp.torch;

namespace TransferLearning;

/// <summary>The result of <see cref="TransferLearner.Fit(DatasetSplit, int)"/>: deconstructs into <c>(model, history)</c>.</summary>
/// <param name="Model">The trained model (owns the backbone; dispose it).</param>
/// <param name="History">Every epoch of the model so far, including earlier fits.</param>
public sealed record FitResult(TrainedModel Model, History History)
{
    /// <summary>
    /// How the returned <see cref="Model"/> does on the validation images (accuracy, loss, per-class precision/recall/F1,
    /// confusion matrix), taken from the validation pass the fit already made: the last epoch's, or, when early
    /// stopping restored the best weights, the best epoch's. It equals <c>Model.Evaluate(data.Validation)</c> without
    /// running the backbone over the validation images again. Null when the split has no validation images.
    /// </summary>
    public Evaluation? ValidationEvaluation { get; init; }

    /// <summary>
    /// Training, validation and int8-calibration images that could not be read or decoded and were left out, ordered by
    /// path (see <see cref="TrainingOptions.BadImages"/>); empty when every image was used.
    /// </summary>
    public IReadOnlyList<SkippedImage> SkippedImages { get; init; } = [];
}

/// <summary>
/// Builds and trains an image classifier on a pretrained backbone, Keras-style:
/// <code>var (model, history) = TransferLearner.From("resnet18").Freeze().AddHead(data.Classes).Fit(data, epochs: 6);</code>
/// </summary>
/// <remarks>
/// A learner is single-use: arguments are checked when given, the whole configuration when <c>Fit</c> runs, and after
/// <c>Fit</c> the learner cannot be used again. It owns the backbone until <c>Fit</c> hands it to the model; dispose an
/// unused learner to free it.
/// </remarks>
public sealed class TransferLearner : IDisposable
{
    private readonly Backbone _backbone;
    private readonly TrainedModel? _continued;
    private readonly TrainingOptions _options = new();
    private IReadOnlyList<string>? _classes;
    private HeadOptions? _headOptions;
    private bool _used;
    private bool _disposed;

    private TransferLearner(Backbone backbone, TrainedModel? continued)
    {
        _backbone = backbone;
        _continued = continued;
        if (continued is not null)
        {
            _classes = continued.Classes;
            _headOptions = continued.HeadOptions;
        }
    }

    /// <summary>The backbone being trained.</summary>
    public Backbone Backbone => _backbone;

    /// <summary>The training options (a live object: changes apply to the next <c>Fit</c>).</summary>
    public TrainingOptions Options => _options;

    /// <summary>Starts from a backbone given by short name (<c>resnet18</c>), file path or http(s) URL.</summary>
    /// <param name="source">Short name, path or URL of the pretrained model.</param>
    /// <param name="options">How to load it (architecture, feature node, expected hash, cache folder).</param>
    public static TransferLearner From(string source, BackboneLoadOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(source);
        return new TransferLearner(ModelHub.LoadBackbone(source, options), null);
    }

    /// <summary>Starts from a backbone at a URL (downloaded once into the hub cache).</summary>
    /// <param name="source">http(s) or file URL of the pretrained model.</param>
    /// <param name="options">How to load it.</param>
    public static TransferLearner From(Uri source, BackboneLoadOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(source);
        return From(source.IsFile ? source.LocalPath : source.AbsoluteUri, options);
    }

    /// <summary>Starts from a backbone, downloading it with progress and cancellation.</summary>
    /// <param name="source">Short name, path or URL of the pretrained model.</param>
    /// <param name="options">How to load it.</param>
    /// <param name="progress">Receives download progress.</param>
    /// <param name="cancellationToken">Cancels the download.</param>
    public static async Task<TransferLearner> FromAsync(
        string source,
        BackboneLoadOptions? options = null,
        IProgress<DownloadProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(source);
        var backbone = await ModelHub.LoadBackboneAsync(source, options, progress, cancellationToken).ConfigureAwait(false);
        return new TransferLearner(backbone, null);
    }

    /// <summary>Starts from a backbone you built (the learner takes ownership).</summary>
    /// <param name="backbone">The backbone.</param>
    public static TransferLearner From(Backbone backbone)
    {
        ArgumentNullException.ThrowIfNull(backbone);
        return new TransferLearner(backbone, null);
    }

    /// <summary>
    /// Continues training a trained model, e.g. to fine-tune after a frozen fit:
    /// <c>TransferLearner.From(model).Unfreeze().WithLearningRate(1e-5).Fit(data, 4)</c>. The same model object is
    /// trained further and its history continues.
    /// </summary>
    /// <param name="model">The model to keep training; it keeps its head and classes.</param>
    public static TransferLearner From(TrainedModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return new TransferLearner(model.Backbone, model);
    }

    /// <summary>Freezes the whole backbone: no gradients, BatchNorm in inference mode (Keras's <c>trainable = False</c>).</summary>
    public TransferLearner Freeze()
    {
        EnsureUsable();
        _backbone.Freeze();
        return this;
    }

    /// <summary>Makes the whole backbone trainable (fine-tuning).</summary>
    public TransferLearner Unfreeze()
    {
        EnsureUsable();
        _backbone.Unfreeze();
        return this;
    }

    /// <summary>Makes the backbone trainable from the named block on; earlier blocks stay frozen.</summary>
    /// <param name="fromBlock">A name from <see cref="Backbones.Backbone.Blocks"/>.</param>
    public TransferLearner Unfreeze(string fromBlock)
    {
        EnsureUsable();
        _backbone.Unfreeze(fromBlock);
        return this;
    }

    /// <summary>Makes the backbone trainable from the block at this index on; earlier blocks stay frozen.</summary>
    /// <param name="fromBlock">Index into <see cref="Backbones.Backbone.Blocks"/>.</param>
    public TransferLearner Unfreeze(int fromBlock)
    {
        EnsureUsable();
        _backbone.Unfreeze(fromBlock);
        return this;
    }

    /// <summary>Adds the article's head: one Dense layer from the features to the classes (softmax at prediction).</summary>
    /// <param name="classes">Class names in label order (e.g. <c>data.Classes</c>).</param>
    public TransferLearner AddHead(IReadOnlyList<string> classes) => AddHead(classes, new HeadOptions());

    /// <summary>Adds a classification head with hidden layers, dropout and activation as configured.</summary>
    /// <param name="classes">Class names in label order (e.g. <c>data.Classes</c>).</param>
    /// <param name="options">Hidden units, dropout, activation.</param>
    public TransferLearner AddHead(IReadOnlyList<string> classes, HeadOptions options)
    {
        EnsureUsable();
        ArgumentNullException.ThrowIfNull(classes);
        ArgumentNullException.ThrowIfNull(options);
        if (_classes is not null)
        {
            throw new InvalidOperationException(_continued is not null
                ? "This model already has a head; continue training it without AddHead, or start from a backbone to train a new head."
                : "AddHead was already called; a learner has one head.");
        }

        if (classes.Count < 2)
        {
            throw new ArgumentException($"A classifier needs at least 2 classes; got {classes.Count}.", nameof(classes));
        }

        if (classes.Any(string.IsNullOrWhiteSpace) || classes.Distinct(StringComparer.Ordinal).Count() != classes.Count)
        {
            throw new ArgumentException("Class names must be non-empty and distinct.", nameof(classes));
        }

        _classes = [.. classes];
        _headOptions = options.Clone();
        return this;
    }

    /// <summary>Changes any training option.</summary>
    /// <param name="configure">Sets options on the learner's <see cref="TrainingOptions"/>.</param>
    public TransferLearner Configure(Action<TrainingOptions> configure)
    {
        EnsureUsable();
        ArgumentNullException.ThrowIfNull(configure);
        configure(_options);
        return this;
    }

    /// <summary>Sets the base learning rate (default 1e-3).</summary>
    /// <param name="learningRate">A finite positive rate.</param>
    public TransferLearner WithLearningRate(double learningRate) => Configure(o => o.LearningRate = learningRate);

    /// <summary>Chooses the optimizer and, optionally, its learning rate.</summary>
    /// <param name="optimizer">Adam (default) or SGD with momentum.</param>
    /// <param name="learningRate">Base learning rate; null keeps the current one.</param>
    public TransferLearner WithOptimizer(OptimizerKind optimizer, double? learningRate = null) => Configure(o =>
    {
        o.Optimizer = optimizer;
        if (learningRate is { } rate)
        {
            o.LearningRate = rate;
        }
    });

    /// <summary>Sets the batch size (default 32).</summary>
    /// <param name="batchSize">Images per batch.</param>
    public TransferLearner WithBatchSize(int batchSize) => Configure(o => o.BatchSize = batchSize);

    /// <summary>Sets the seed for initialisation, shuffling, dropout and augmentation (default 42).</summary>
    /// <param name="seed">The seed.</param>
    public TransferLearner WithSeed(int seed) => Configure(o => o.Seed = seed);

    /// <summary>Sets the square input size; the backbone must accept it.</summary>
    /// <param name="size">Pixels (at least 32).</param>
    public TransferLearner WithImageSize(int size) => Configure(o => o.ImageSize = size);

    /// <summary>Turns on random training-time augmentation (disables feature caching).</summary>
    /// <param name="augmentation">Flip, rotation and zoom settings.</param>
    public TransferLearner WithAugmentation(Augmentation augmentation) => Configure(o => o.Augmentation = augmentation);

    /// <summary>Stops training when a monitored metric stops improving.</summary>
    /// <param name="earlyStopping">Monitor, patience, minimum delta, restore-best.</param>
    public TransferLearner WithEarlyStopping(EarlyStopping earlyStopping) => Configure(o => o.EarlyStopping = earlyStopping);

    /// <summary>Sets the learning-rate schedule.</summary>
    /// <param name="schedule">E.g. <see cref="LearningRateSchedule.Cosine(double)"/>.</param>
    public TransferLearner WithSchedule(LearningRateSchedule schedule) => Configure(o => o.Schedule = schedule ?? throw new ArgumentNullException(nameof(schedule)));

    /// <summary>Weighs the loss per class (classes not listed weigh 1).</summary>
    /// <param name="weights">Weight by class name.</param>
    public TransferLearner WithClassWeights(IReadOnlyDictionary<string, double> weights) => Configure(o => o.ClassWeights = weights ?? throw new ArgumentNullException(nameof(weights)));

    /// <summary>
    /// Runs the frozen backbone in int8 while featurizing and in the trained model (see
    /// <see cref="TrainingOptions.Int8Backbone"/>): faster on CPUs, features a few percent off the float ones.
    /// </summary>
    /// <exception cref="NotSupportedException">The backbone was not imported from ONNX.</exception>
    public TransferLearner WithInt8Backbone()
    {
        if (!_backbone.SupportsInt8)
        {
            throw new NotSupportedException(
                $"Int8 inference is available for backbones imported from ONNX (such as 'resnet18'); '{_backbone.Source}' is not one.");
        }

        return Configure(o => o.Int8Backbone = true);
    }

    /// <summary>Trains on a device: <c>cpu</c> (default), <c>cuda</c> or <c>cuda:N</c>.</summary>
    /// <param name="device">The device name.</param>
    public TransferLearner OnDevice(string device) => Configure(o => o.Device = device);

    /// <summary>Trains for <paramref name="epochs"/> epochs, validating after each.</summary>
    /// <param name="data">Training and validation images (e.g. <c>ImageFolder.Load(dir).Split(0.7, seed: 42)</c>).</param>
    /// <param name="epochs">Epochs to train (at least 1).</param>
    public FitResult Fit(DatasetSplit data, int epochs) => FitCore(data, epochs, null, CancellationToken.None);

    /// <summary>Trains for <paramref name="epochs"/> epochs on a thread-pool thread, with progress and cancellation.</summary>
    /// <param name="data">Training and validation images.</param>
    /// <param name="epochs">Epochs to train (at least 1).</param>
    /// <param name="progress">Receives featurizing, training, validation and end-of-epoch reports.</param>
    /// <param name="cancellationToken">Stops within one batch; the learner is then used up and nothing is saved.</param>
    public Task<FitResult> FitAsync(DatasetSplit data, int epochs, IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return Task.Factory.StartNew(
            () => FitCore(data, epochs, progress, cancellationToken),
            cancellationToken,
            TaskCreationOptions.LongRunning,
            TaskScheduler.Default);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        if (!_used && _continued is null)
        {
            _backbone.Dispose();
        }
    }

    private FitResult FitCore(DatasetSplit data, int epochs, IProgress<TrainingProgress>? progress, CancellationToken cancellationToken)
    {
        EnsureUsable();
        ArgumentNullException.ThrowIfNull(data);
        var train = data.Train;
        var validation = data.Validation;

        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(epochs);
        if (_classes is null || _headOptions is null)
        {
            throw new InvalidOperationException("Call AddHead(classes) before Fit: the model has no classification head.");
        }

        if (!train.Classes.SequenceEqual(_classes, StringComparer.Ordinal))
        {
            throw new ArgumentException(
                $"The head was built for {_classes.Count} classes ({string.Join(", ", _classes)}) but the data has {train.Classes.Count} " +
                $"({string.Join(", ", train.Classes)}). Pass the data's classes to AddHead.", nameof(data));
        }

        if (validation is not null && !validation.Classes.SequenceEqual(_classes, StringComparer.Ordinal))
        {
            throw new ArgumentException(
                $"The validation data has classes ({string.Join(", ", validation.Classes)}) that differ from the training data's ({string.Join(", ", _classes)}).", nameof(data));
        }

        if (train.Count == 0)
        {
            throw new ArgumentException("The training data is empty: add images to the class folders or change the split.", nameof(data));
        }

        if (_options.Int8Backbone && !_backbone.IsFrozen)
        {
            throw new InvalidOperationException(
                "Int8Backbone needs a frozen backbone: call Freeze() before Fit (fine-tuning trains unfrozen layers in float).");
        }

        var spec = ResolveInputSpec();
        var device = ResolveDevice(_options.Device);
        _used = true;

        var options = _options.Clone();
        TrainedModel model;
        if (_continued is not null)
        {
            model = _continued;
        }
        else
        {
            manual_seed(options.Seed); // dropout draws from the global generator
            var head = HeadFactory.Create(_backbone.FeatureSize, _classes.Count, _headOptions, options.Seed);
            model = new TrainedModel(_backbone, head, _classes, spec, _headOptions, new History(), device);
        }

        _backbone.Module.to(device);
        model.Head.to(device);
        using var classWeights = ClassWeights(train, options)?.to(device);
        var trainer = new Trainer(_backbone, model.Head, device, options, classWeights);

        var loaderOptions = new ImageLoaderOptions
        {
            BatchSize = options.BatchSize,
            Shuffle = true,
            Seed = options.Seed,
            DegreeOfParallelism = options.DegreeOfParallelism,
            BadImages = options.BadImages,
        };
        using var trainLoader = new ImageLoader(train, spec, loaderOptions);
        using var validationLoader = validation is { Count: > 0 }
            ? new ImageLoader(validation, spec, new ImageLoaderOptions { BatchSize = options.BatchSize, DegreeOfParallelism = options.DegreeOfParallelism, BadImages = options.BadImages })
            : null;
        IBatchSource trainImages = new ImageBatchSource(trainLoader, train.Count);
        IBatchSource? validationImages = validationLoader is null ? null : new ImageBatchSource(validationLoader, validation!.Count);

        IReadOnlyList<SkippedImage> calibrationSkipped = [];
        if (options.Int8Backbone && !_backbone.IsInt8)
        {
            calibrationSkipped = QuantizeBackbone(train, spec, options, cancellationToken);
        }

        var cache = options.CacheFeatures && _backbone.IsFrozen && !options.Augmentation.IsEnabled;
        ValidationPass? pass;
        if (!cache)
        {
            pass = trainer.Fit(trainImages, validationImages, inputsAreFeatures: false, epochs, model.History, progress, cancellationToken);
        }
        else
        {
            using var trainFeatures = trainer.Featurize(trainImages, shuffle: true, progress, cancellationToken);
            if (trainFeatures.Count == 0)
            {
                throw Trainer.NoTrainingImages(train.Count, trainLoader.Skipped);
            }

            using var validationFeatures = validationImages is null ? null : trainer.Featurize(validationImages, shuffle: false, progress, cancellationToken);
            pass = trainer.Fit(trainFeatures, validationFeatures, inputsAreFeatures: true, epochs, model.History, progress, cancellationToken);
        }

        return new FitResult(model, model.History)
        {
            ValidationEvaluation = ToEvaluation(pass, model.Classes, validationLoader),
            SkippedImages = [.. trainLoader.Skipped.Concat(validationLoader?.Skipped ?? []).Concat(calibrationSkipped)
                .DistinctBy(s => s.Path, StringComparer.Ordinal).OrderBy(s => s.Path, StringComparer.Ordinal)],
        };
    }

    /// <summary>The validation pass of the returned weights as an <see cref="Evaluation"/>; null without validation data.</summary>
    private static Evaluation? ToEvaluation(ValidationPass? pass, IReadOnlyList<string> classes, ImageLoader? validationLoader)
    {
        if (pass is null || validationLoader is null)
        {
            return null;
        }

        var confusion = pass.Confusion.GetLength(0) == classes.Count ? pass.Confusion : new int[classes.Count, classes.Count];
        return new Evaluation(classes, confusion, pass.LossSum, validationLoader.Skipped);
    }

    /// <summary>
    /// Calibrates int8 on training images spread evenly over the data set's order (which is sorted by class, so every
    /// class contributes) and switches the backbone to it.
    /// </summary>
    /// <returns>The calibration images that were skipped as unreadable.</returns>
    private IReadOnlyList<SkippedImage> QuantizeBackbone(ImageDataset train, InputSpec spec, TrainingOptions options, CancellationToken cancellationToken)
    {
        var count = Math.Min(options.Int8CalibrationImages, train.Count);
        var calibration = new ImageDataset(train.Classes, [.. CalibrationSamples(train.Samples, count)]);
        using var loader = new ImageLoader(calibration, spec, new ImageLoaderOptions { BatchSize = options.BatchSize, DegreeOfParallelism = options.DegreeOfParallelism, BadImages = options.BadImages });
        _backbone.QuantizeInt8(Images(loader, cancellationToken));
        return loader.Skipped;

        static IEnumerable<Tensor> Images(ImageLoader loader, CancellationToken cancellationToken)
        {
            foreach (var batch in loader.Batches(0, cancellationToken))
            {
                using (batch)
                using (var images = ImageTensor.FromBatch(batch))
                {
                    yield return images; // disposed once the next one is requested
                }
            }
        }
    }

    /// <summary><paramref name="count"/> samples at even steps through <paramref name="samples"/>.</summary>
    internal static IEnumerable<ImageSample> CalibrationSamples(IReadOnlyList<ImageSample> samples, int count) =>
        Enumerable.Range(0, count).Select(i => samples[(int)((long)i * samples.Count / count)]);

    private InputSpec ResolveInputSpec()
    {
        var spec = _continued?.InputSpec ?? _backbone.InputSpec;
        if (_options.ImageSize is { } size && (size != spec.Width || size != spec.Height))
        {
            if (_backbone.FixedInputSize)
            {
                throw new InvalidOperationException(
                    $"The backbone '{_backbone.Source}' only accepts {_backbone.InputSpec.Width}×{_backbone.InputSpec.Height} images, " +
                    $"not {size}×{size}. Remove the image size setting or choose a backbone that accepts other sizes.");
            }

            spec = spec.WithSize(size, size);
        }

        return _options.ResizeMode is { } mode ? spec.WithResizeMode(mode) : spec;
    }

    internal static Device ResolveDevice(string name)
    {
        var trimmed = name.Trim().ToLowerInvariant();
        var isCuda = trimmed == "cuda" || (trimmed.StartsWith("cuda:", StringComparison.Ordinal) && int.TryParse(trimmed.AsSpan(5), out var index) && index >= 0);
        if (trimmed != "cpu" && !isCuda)
        {
            throw new ArgumentException($"'{name}' is not a device name; use 'cpu', 'cuda' or 'cuda:N'.", nameof(name));
        }

        if (isCuda && !cuda.is_available())
        {
            throw new InvalidOperationException(
                $"Device '{name}' was requested but CUDA is not available: reference a CUDA LibTorch runtime package and run on a machine with a GPU, or use 'cpu'.");
        }

        return torch.device(trimmed);
    }

    private Tensor? ClassWeights(ImageDataset train, TrainingOptions options)
    {
        var classes = _classes!;
        if (options.ClassWeights is { } byName)
        {
            var unknown = byName.Keys.Where(k => !classes.Contains(k)).ToList();
            if (unknown.Count > 0)
            {
                throw new ArgumentException($"Class weights name unknown classes: {string.Join(", ", unknown)}. Classes: {string.Join(", ", classes)}.", nameof(options));
            }

            if (byName.Values.Any(w => !(w >= 0) || !double.IsFinite(w)))
            {
                throw new ArgumentException("Class weights must be finite and non-negative.", nameof(options));
            }

            return tensor(classes.Select(c => byName.TryGetValue(c, out var w) ? (float)w : 1f).ToArray());
        }

        if (!options.BalanceClasses)
        {
            return null;
        }

        var counts = new int[classes.Count];
        foreach (var sample in train.Samples)
        {
            counts[sample.Label]++;
        }

        return tensor(counts.Select(n => n == 0 ? 0f : (float)train.Count / (classes.Count * n)).ToArray());
    }

    private void EnsureUsable()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_used)
        {
            throw new InvalidOperationException(
                "This TransferLearner was already used by Fit; start a new one with TransferLearner.From(...), or TransferLearner.From(model) to keep training the model.");
        }
    }
}
