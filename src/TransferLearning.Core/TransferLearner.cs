using TransferLearning.Backbones;
using TransferLearning.Datasets;
using TransferLearning.Downloads;
using TransferLearning.Heads;
using TransferLearning.Hub;
using TransferLearning.Models;
using TransferLearning.Native;
using TransferLearning.Training;

namespace TransferLearning;

/// <summary>
/// Builds and trains an image classifier on a pretrained backbone, Keras-style:
/// <code>var (model, history) = TransferLearner.From("resnet18").Freeze().AddHead(data.Classes).Fit(data, epochs: 6);</code>
/// </summary>
/// <remarks>
/// The learner only records what it is told: each setting has one method, whose argument is checked when it is given.
/// <c>Fit</c> checks the whole configuration against the data before anything is changed or used up, then trains;
/// freezing and unfreezing take effect there, so a learner that never fits changes nothing (not even a model passed to
/// <see cref="From(TrainedModel)"/>). A learner fits once. It owns the backbone until <c>Fit</c> hands it to the
/// model; dispose an unused learner, or one whose <c>Fit</c> failed or was cancelled, to free it.
/// </remarks>
public sealed class TransferLearner : IDisposable
{
    private readonly Backbone _backbone;
    private readonly TrainedModel? _continued;
    private readonly TrainingOptions _options = new();
    private IReadOnlyList<string>? _classes;
    private HeadOptions? _headOptions;
    private Trainability? _trainability;
    private readonly HashSet<string> _explicit = new(StringComparer.Ordinal);
    private bool _used;
    private bool _handedOff;
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

    /// <summary>The backbone that will be trained (see <see cref="Backbones.Backbone.Blocks"/> for what <c>Unfreeze</c> accepts).</summary>
    public Backbone Backbone => _backbone;

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
    /// trained further (when <c>Fit</c> runs) and its history continues; it keeps its head, classes and input size.
    /// </summary>
    /// <param name="model">The model to keep training; the caller keeps owning it.</param>
    public static TransferLearner From(TrainedModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return new TransferLearner(model.Backbone, model);
    }

    /// <summary>Freezes the whole backbone when <c>Fit</c> runs: no gradients, BatchNorm in inference mode (Keras's <c>trainable = False</c>).</summary>
    public TransferLearner Freeze()
    {
        EnsureUsable();
        _trainability = Trainability.Frozen;
        return this;
    }

    /// <summary>Makes the whole backbone trainable when <c>Fit</c> runs (fine-tuning).</summary>
    public TransferLearner Unfreeze() => Unfreeze(0);

    /// <summary>Makes the backbone trainable from the named block on when <c>Fit</c> runs; earlier blocks stay frozen.</summary>
    /// <param name="fromBlock">A name from <see cref="Backbones.Backbone.Blocks"/>.</param>
    public TransferLearner Unfreeze(string fromBlock)
    {
        EnsureUsable();
        ArgumentException.ThrowIfNullOrWhiteSpace(fromBlock);
        var blocks = _backbone.Blocks;
        var index = blocks.ToList().IndexOf(fromBlock);
        if (index < 0)
        {
            throw new ArgumentException(
                $"The backbone has no block named '{fromBlock}'. Its blocks are: {string.Join(", ", blocks)}.", nameof(fromBlock));
        }

        _trainability = Trainability.FromBlock(index);
        return this;
    }

    /// <summary>Makes the backbone trainable from the block at this index on when <c>Fit</c> runs; earlier blocks stay frozen.</summary>
    /// <param name="fromBlock">Index into <see cref="Backbones.Backbone.Blocks"/> (0 unfreezes everything).</param>
    public TransferLearner Unfreeze(int fromBlock)
    {
        EnsureUsable();
        var count = _backbone.Blocks.Count;
        if (fromBlock < 0 || (fromBlock > 0 && fromBlock >= count))
        {
            throw new ArgumentOutOfRangeException(
                nameof(fromBlock), fromBlock, $"The backbone has {count} blocks; give an index from 0 to {Math.Max(0, count - 1)}.");
        }

        _trainability = Trainability.FromBlock(fromBlock);
        return this;
    }

    /// <summary>Adds the default head: one Dense layer from the features to the classes (softmax at prediction).</summary>
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

    /// <summary>Sets the base learning rate (default 1e-3).</summary>
    /// <param name="learningRate">A finite positive rate.</param>
    public TransferLearner WithLearningRate(double learningRate) => Set(o => o.LearningRate = learningRate);

    /// <summary>Chooses the optimizer and, optionally, its learning rate.</summary>
    /// <param name="optimizer">Adam (default) or SGD with momentum.</param>
    /// <param name="learningRate">Base learning rate; null keeps the current one.</param>
    /// <param name="momentum">SGD momentum in [0, 1); null keeps the current one (default 0.9).</param>
    public TransferLearner WithOptimizer(OptimizerKind optimizer, double? learningRate = null, double? momentum = null)
    {
        if (!Enum.IsDefined(optimizer))
        {
            throw new ArgumentOutOfRangeException(nameof(optimizer), optimizer, "Unknown optimizer.");
        }

        return Set(o =>
        {
            var copy = o.Clone();
            copy.Optimizer = optimizer;
            copy.LearningRate = learningRate ?? copy.LearningRate;
            copy.Momentum = momentum ?? copy.Momentum;
            o.Optimizer = copy.Optimizer;
            o.LearningRate = copy.LearningRate;
            o.Momentum = copy.Momentum;
        });
    }

    /// <summary>Sets L2 weight decay (default 0).</summary>
    /// <param name="weightDecay">A finite non-negative factor.</param>
    public TransferLearner WithWeightDecay(double weightDecay) => Set(o => o.WeightDecay = weightDecay);

    /// <summary>Sets the batch size (default 32).</summary>
    /// <param name="batchSize">Images per batch.</param>
    public TransferLearner WithBatchSize(int batchSize) => Set(o => o.BatchSize = batchSize);

    /// <summary>Sets the seed for initialisation, shuffling, dropout and augmentation (default 42).</summary>
    /// <param name="seed">The seed.</param>
    public TransferLearner WithSeed(int seed) => Set(o => o.Seed = seed);

    /// <summary>Sets the square input size; the backbone must accept it (default: the backbone's own size).</summary>
    /// <param name="size">Pixels (at least 32).</param>
    public TransferLearner WithImageSize(int size) => Set(o => o.ImageSize = size);

    /// <summary>Sets how images are brought to the input size (default: the backbone's own mode).</summary>
    /// <param name="resizeMode">Stretch, or scale the shorter side and cut the centre.</param>
    public TransferLearner WithResizeMode(ResizeMode resizeMode)
    {
        if (!Enum.IsDefined(resizeMode))
        {
            throw new ArgumentOutOfRangeException(nameof(resizeMode), resizeMode, "Unknown resize mode.");
        }

        return Set(o => o.ResizeMode = resizeMode);
    }

    /// <summary>
    /// Turns on random training-time augmentation. A frozen backbone then either runs on freshly augmented images every
    /// epoch, or, with <see cref="Augmentation.CachedViews"/>, featurizes that many augmented views once.
    /// </summary>
    /// <param name="augmentation">Crop, flip, rotation, zoom, brightness and contrast settings.</param>
    public TransferLearner WithAugmentation(Augmentation augmentation) => Set(o => o.Augmentation = augmentation);

    /// <summary>Smooths the training targets: 1 − ε on the true class, ε spread evenly over all classes (default 0).</summary>
    /// <param name="epsilon">In [0, 1).</param>
    public TransferLearner WithLabelSmoothing(double epsilon) => Set(o => o.LabelSmoothing = epsilon);

    /// <summary>
    /// Discriminative learning rates for the backbone: its first trained block learns at the base rate times
    /// <paramref name="lowestFactor"/>, its last at the base rate, the blocks between on a geometric scale (early layers
    /// hold general features that need little change). The head learns at the base rate.
    /// </summary>
    /// <param name="lowestFactor">In (0, 1]; 1 turns it off.</param>
    public TransferLearner WithDiscriminativeLearningRates(double lowestFactor = FineTuneRecipe.LowestBlockRateFactor) =>
        Set(o => o.LowestBlockRateFactor = lowestFactor);

    /// <summary>Stops training when a monitored metric stops improving.</summary>
    /// <param name="earlyStopping">Monitor, patience, minimum delta, restore-best.</param>
    public TransferLearner WithEarlyStopping(EarlyStopping earlyStopping)
    {
        ArgumentNullException.ThrowIfNull(earlyStopping);
        return Set(o => o.EarlyStopping = earlyStopping);
    }

    /// <summary>Sets the learning-rate schedule.</summary>
    /// <param name="schedule">E.g. <see cref="LearningRateSchedule.Cosine(double)"/>.</param>
    public TransferLearner WithSchedule(LearningRateSchedule schedule)
    {
        ArgumentNullException.ThrowIfNull(schedule);
        return Set(o => o.Schedule = schedule);
    }

    /// <summary>Weighs the loss per class (classes not listed weigh 1); the names are checked against the head's classes at <c>Fit</c>.</summary>
    /// <param name="weights">Weight by class name: finite and non-negative.</param>
    public TransferLearner WithClassWeights(IReadOnlyDictionary<string, double> weights)
    {
        ArgumentNullException.ThrowIfNull(weights);
        if (weights.Values.Any(w => !(w >= 0) || !double.IsFinite(w)))
        {
            throw new ArgumentException("Class weights must be finite and non-negative.", nameof(weights));
        }

        var copy = new Dictionary<string, double>(weights, StringComparer.Ordinal);
        return Set(o =>
        {
            o.ClassWeights = copy;
            o.BalanceClasses = false;
        });
    }

    /// <summary>Weighs the loss per class inversely to the class's share of the training images (Keras/scikit-learn "balanced").</summary>
    public TransferLearner WithBalancedClassWeights() => Set(o =>
    {
        o.ClassWeights = null;
        o.BalanceClasses = true;
    });

    /// <summary>
    /// Runs the backbone in bfloat16 on CPUs with native bf16 kernels (AVX-512 BF16 or AMX): a frozen backbone while
    /// featurizing and in the trained model; a backbone that trains (after <see cref="Unfreeze()"/>, or the second phase
    /// of <see cref="FineTune(DatasetSplit, int, int)"/>) in its forward and backward passes, with float master weights
    /// (every family the library loads; a module wrapped by hand is refused). Checked when Fit starts: on other CPUs Fit
    /// throws a <see cref="NotSupportedException"/> naming the missing CPU feature (bf16 would be emulated there, slower
    /// than float).
    /// </summary>
    public TransferLearner WithBf16Backbone() => Set(o => o.Bf16Backbone = true);

    /// <summary>
    /// Runs the frozen backbone in int8 while featurizing and in the trained model: faster on CPUs, features a few
    /// percent off the float ones. Activation ranges come from training images spread evenly over every class. Works for
    /// every backbone family (ONNX graphs, torchvision checkpoints, TF.js layers models).
    /// </summary>
    /// <param name="calibrationImages">Training images that set the activation ranges (default 32).</param>
    /// <exception cref="NotSupportedException">The backbone cannot run in int8 (a module wrapped by hand).</exception>
    public TransferLearner WithInt8Backbone(int calibrationImages = TrainingOptions.DefaultInt8CalibrationImages)
    {
        if (!_backbone.SupportsInt8)
        {
            throw new NotSupportedException(
                $"Int8 inference is available for backbones loaded from ONNX (such as 'resnet18'), torchvision checkpoints or TF.js layers models; '{_backbone.Source}' is a module wrapped by hand.");
        }

        return Set(o =>
        {
            o.Int8CalibrationImages = calibrationImages;
            o.Int8Backbone = true;
        });
    }

    /// <summary>
    /// Lets an unfrozen backbone's BatchNorm layers use batch statistics and update their moving averages while
    /// training. Without it (the default, as Keras's fine-tuning guide recommends) the backbone runs in inference mode
    /// while its weights are trained, so small fine-tuning batches do not disturb the pretrained statistics.
    /// </summary>
    public TransferLearner WithBatchNormStatisticsUpdates() => Set(o => o.UpdateBatchNormStatistics = true);

    /// <summary>
    /// Runs the backbone on every batch of every epoch even when it is frozen, instead of once per image with the head
    /// trained on cached features (the default). Only useful to measure or to bound memory on huge data sets.
    /// </summary>
    public TransferLearner WithoutFeatureCache() => Set(o => o.CacheFeatures = false);

    /// <summary>
    /// Trains the head on standardised cached features: each feature gets zero mean and unit variance over the training
    /// images (a feature constant on them is only centred), and after the fit the transform is folded into the head's
    /// first Dense layer, so the model takes raw features and saves and exports as usual. It helps when features differ
    /// in scale, as <see cref="BackboneFeatures.MultiStage"/> ones do. Needs cached features: a frozen backbone, the
    /// feature cache on and no augmentation other than cached views; in <see cref="FineTune"/> it applies to the head phase.
    /// </summary>
    public TransferLearner WithStandardizedFeatures() => Set(o => o.StandardizeFeatures = true);

    /// <summary>
    /// Sets what the fit does with an image that cannot be read or decoded. Default <see cref="BadImagePolicy.Skip"/>:
    /// it is left out and listed in <see cref="FitResult.SkippedImages"/> (an unreadable photo is found only while the
    /// backbone runs, possibly minutes into a fit, and one among thousands should not cost the run; a fit whose every
    /// training image is unreadable still fails). <see cref="BadImagePolicy.Fail"/> stops the fit with an
    /// <see cref="InvalidImageException"/> naming the file.
    /// </summary>
    /// <param name="policy">Skip or Fail.</param>
    public TransferLearner WithBadImages(BadImagePolicy policy) => Set(o => o.BadImages = policy);

    /// <summary>Sets how many images are decoded in parallel (default: the processor count).</summary>
    /// <param name="threads">At least 1.</param>
    public TransferLearner WithDecodeThreads(int threads) => Set(o => o.DegreeOfParallelism = threads);

    /// <summary>Trains on a device: <c>cpu</c> (default), <c>cuda</c> or <c>cuda:N</c>.</summary>
    /// <param name="device">The device name.</param>
    public TransferLearner OnDevice(string device)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(device);
        _ = TorchDevices.Parse(device, checkAvailable: false);
        return Set(o => o.Device = device);
    }

    /// <summary>Trains for <paramref name="epochs"/> epochs, validating after each.</summary>
    /// <param name="data">Training and validation images (e.g. <c>ImageFolder.Load(dir).Split(0.7, seed: 42)</c>).</param>
    /// <param name="epochs">Epochs to train (at least 1).</param>
    public FitResult Fit(DatasetSplit data, int epochs) => Run(Plan(data, epochs), null, CancellationToken.None);

    /// <summary>Trains for <paramref name="epochs"/> epochs on a thread-pool thread, with progress and cancellation.</summary>
    /// <param name="data">Training and validation images.</param>
    /// <param name="epochs">Epochs to train (at least 1).</param>
    /// <param name="progress">Receives featurizing, training, validation and end-of-epoch reports.</param>
    /// <param name="cancellationToken">Stops within one batch; the learner is then used up and nothing is saved.</param>
    public Task<FitResult> FitAsync(DatasetSplit data, int epochs, IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var plan = Plan(data, epochs);
        return Task.Factory.StartNew(
            () => Run(plan, progress, cancellationToken),
            cancellationToken,
            TaskCreationOptions.LongRunning,
            TaskScheduler.Default);
    }

    /// <summary>
    /// The fine-tuning recipe in one call (as fastai's <c>fine_tune</c>): <paramref name="freezeEpochs"/> epochs of the
    /// head on the frozen backbone (features cached: one backbone pass, then milliseconds per epoch), then
    /// <paramref name="epochs"/> epochs with the backbone trained too (all of it, or from the block given to
    /// <c>Unfreeze</c>). The second phase uses, unless set on the learner, the settings in <see cref="FineTuneRecipe"/>:
    /// AdamW with weight decay, a one-cycle schedule, discriminative learning rates, label smoothing and
    /// <see cref="Augmentation.Standard"/>. History holds both phases.
    /// </summary>
    /// <param name="data">Training and validation images.</param>
    /// <param name="epochs">Epochs with the backbone trained (at least 1).</param>
    /// <param name="freezeEpochs">Epochs of the head alone first (0 skips them when continuing a trained model).</param>
    public FitResult FineTune(DatasetSplit data, int epochs, int freezeEpochs = FineTuneRecipe.FreezeEpochs) =>
        RunFineTune(PlanFineTune(data, epochs, freezeEpochs), null, CancellationToken.None);

    /// <summary>The fine-tuning recipe on a thread-pool thread, with progress and cancellation (see <see cref="FineTune"/>).</summary>
    /// <param name="data">Training and validation images.</param>
    /// <param name="epochs">Epochs with the backbone trained (at least 1).</param>
    /// <param name="freezeEpochs">Epochs of the head alone first.</param>
    /// <param name="progress">Receives featurizing, training, validation and end-of-epoch reports.</param>
    /// <param name="cancellationToken">Stops within one batch; the learner is then used up and nothing is saved.</param>
    public Task<FitResult> FineTuneAsync(
        DatasetSplit data,
        int epochs,
        int freezeEpochs = FineTuneRecipe.FreezeEpochs,
        IProgress<TrainingProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var plans = PlanFineTune(data, epochs, freezeEpochs);
        return Task.Factory.StartNew(
            () => RunFineTune(plans, progress, cancellationToken),
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
        if (!_handedOff && _continued is null)
        {
            _backbone.Dispose();
        }
    }

    /// <summary>Checks the whole configuration against the data; nothing is changed or used up when it throws.</summary>
    private FitPlan Plan(DatasetSplit data, int epochs)
    {
        EnsureUsable();
        return FitPlan.Create(_backbone, _continued, _classes, _headOptions, _trainability, _options, data, epochs);
    }

    /// <summary>Plans both phases of the recipe; nothing is changed or used up when it throws.</summary>
    private (FitPlan? Head, FitPlan Tune) PlanFineTune(DatasetSplit data, int epochs, int freezeEpochs)
    {
        EnsureUsable();
        ArgumentOutOfRangeException.ThrowIfNegative(freezeEpochs);
        var head = freezeEpochs == 0 ? null : FitPlan.Create(_backbone, _continued, _classes, _headOptions, Trainability.Frozen, FineTuneRecipe.HeadPhase(_options), data, freezeEpochs);
        var tune = FitPlan.Create(_backbone, _continued, _classes, _headOptions, _trainability is { IsFrozen: false } t ? t : Trainability.FromBlock(0),
            FineTuneRecipe.BackbonePhase(_options, _explicit), data, epochs);
        return (head, tune);
    }

    private FitResult RunFineTune((FitPlan? Head, FitPlan Tune) plans, IProgress<TrainingProgress>? progress, CancellationToken cancellationToken)
    {
        EnsureUsable();
        _used = true;
        if (plans.Head is null)
        {
            var only = FitRun.Execute(plans.Tune, progress, cancellationToken);
            _handedOff = true;
            return only;
        }

        var first = FitRun.Execute(plans.Head, progress, cancellationToken);
        _handedOff = true; // the model owns the backbone from here on
        try
        {
            return FitRun.Execute(plans.Tune.Continuing(first.Model), progress, cancellationToken);
        }
        catch when (_continued is null)
        {
            first.Model.Dispose(); // the learner made this model; nobody else will free it
            throw;
        }
    }

    private FitResult Run(FitPlan plan, IProgress<TrainingProgress>? progress, CancellationToken cancellationToken)
    {
        EnsureUsable();
        _used = true;
        var result = FitRun.Execute(plan, progress, cancellationToken);
        _handedOff = true;
        return result;
    }

    private TransferLearner Set(Action<TrainingOptions> set, [System.Runtime.CompilerServices.CallerMemberName] string setting = "")
    {
        EnsureUsable();
        set(_options);
        _explicit.Add(setting);
        return this;
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
