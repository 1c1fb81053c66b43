using TransferLearning.Datasets;

namespace TransferLearning.Training;

/// <summary>The optimizer that updates the trainable weights.</summary>
public enum OptimizerKind
{
    /// <summary>Adam (the article's choice).</summary>
    Adam,

    /// <summary>Stochastic gradient descent with momentum (<see cref="TrainingOptions.Momentum"/>).</summary>
    Sgd,
}

/// <summary>How the learning rate changes from epoch to epoch.</summary>
public abstract record LearningRateSchedule
{
    private protected LearningRateSchedule()
    {
    }

    /// <summary>The same rate every epoch.</summary>
    public static LearningRateSchedule Constant { get; } = new ConstantSchedule();

    /// <summary>Multiplies the rate by <paramref name="factor"/> every <paramref name="everyEpochs"/> epochs.</summary>
    /// <param name="everyEpochs">Epochs between decays (&gt; 0).</param>
    /// <param name="factor">Multiplier in (0, 1].</param>
    public static LearningRateSchedule StepDecay(int everyEpochs, double factor)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(everyEpochs);
        if (!(factor > 0 && factor <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(factor), factor, "The decay factor must be in (0, 1].");
        }

        return new StepSchedule(everyEpochs, factor);
    }

    /// <summary>Cosine annealing from the base rate to <paramref name="minimum"/> over the epochs of one fit.</summary>
    /// <param name="minimum">Rate reached at the last epoch (≥ 0).</param>
    public static LearningRateSchedule Cosine(double minimum = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(minimum);
        return new CosineSchedule(minimum);
    }

    /// <summary>The rate for a 0-based epoch of a fit of <paramref name="epochs"/> epochs.</summary>
    /// <param name="baseRate">The configured learning rate.</param>
    /// <param name="epoch">0-based epoch within this fit.</param>
    /// <param name="epochs">Epochs in this fit.</param>
    public abstract double RateAt(double baseRate, int epoch, int epochs);

    private sealed record ConstantSchedule : LearningRateSchedule
    {
        public override double RateAt(double baseRate, int epoch, int epochs) => baseRate;
    }

    private sealed record StepSchedule(int EveryEpochs, double Factor) : LearningRateSchedule
    {
        public override double RateAt(double baseRate, int epoch, int epochs) => baseRate * Math.Pow(Factor, epoch / EveryEpochs);
    }

    private sealed record CosineSchedule(double Minimum) : LearningRateSchedule
    {
        public override double RateAt(double baseRate, int epoch, int epochs) =>
            epochs <= 1 ? baseRate : Minimum + ((baseRate - Minimum) * 0.5 * (1 + Math.Cos(Math.PI * epoch / (epochs - 1))));
    }
}

/// <summary>Random changes applied to training images only (never to validation or prediction).</summary>
public sealed record Augmentation
{
    /// <summary>No augmentation.</summary>
    public static Augmentation None { get; } = new();

    /// <summary>Mirror left-right with probability 0.5.</summary>
    public bool HorizontalFlip { get; init; }

    /// <summary>Rotate by a uniform random angle in ±this many degrees (0 = off).</summary>
    public double RotationDegrees { get; init; }

    /// <summary>Zoom in by a uniform random factor in [1, 1 + this] (0 = off), cropping around the centre.</summary>
    public double Zoom { get; init; }

    /// <summary>True when any change is switched on.</summary>
    public bool IsEnabled => HorizontalFlip || RotationDegrees != 0 || Zoom != 0;

    internal void Validate()
    {
        if (!(RotationDegrees >= 0 && RotationDegrees <= 180))
        {
            throw new ArgumentOutOfRangeException(nameof(RotationDegrees), RotationDegrees, "RotationDegrees must be in [0, 180].");
        }

        if (!(Zoom >= 0 && Zoom <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(Zoom), Zoom, "Zoom must be in [0, 1].");
        }
    }
}

/// <summary>Stop training when a monitored metric stops improving.</summary>
public sealed record EarlyStopping
{
    /// <summary>Creates an early-stopping rule.</summary>
    /// <param name="monitor">A <see cref="History"/> metric: <c>val_loss</c> (default), <c>val_accuracy</c>, <c>loss</c> or <c>accuracy</c>.</param>
    /// <param name="patience">Epochs without improvement before stopping (≥ 0).</param>
    /// <param name="minDelta">Smallest change that counts as an improvement (≥ 0).</param>
    /// <param name="restoreBestWeights">Put back the weights of the best epoch when stopping or finishing.</param>
    public EarlyStopping(string monitor = History.ValLoss, int patience = 3, double minDelta = 0, bool restoreBestWeights = true)
    {
        if (monitor is not (History.Loss or History.Accuracy or History.ValLoss or History.ValAccuracy))
        {
            throw new ArgumentException(
                $"Cannot monitor '{monitor}'. Use one of: {History.Loss}, {History.Accuracy}, {History.ValLoss}, {History.ValAccuracy}.", nameof(monitor));
        }

        ArgumentOutOfRangeException.ThrowIfNegative(patience);
        ArgumentOutOfRangeException.ThrowIfNegative(minDelta);
        Monitor = monitor;
        Patience = patience;
        MinDelta = minDelta;
        RestoreBestWeights = restoreBestWeights;
    }

    /// <summary>The monitored metric.</summary>
    public string Monitor { get; }

    /// <summary>Epochs without improvement before stopping.</summary>
    public int Patience { get; }

    /// <summary>Smallest change that counts as an improvement.</summary>
    public double MinDelta { get; }

    /// <summary>Whether the best epoch's weights are restored at the end.</summary>
    public bool RestoreBestWeights { get; }

    internal bool HigherIsBetter => Monitor is History.Accuracy or History.ValAccuracy;
}

/// <summary>Everything about how <c>Fit</c> trains. Defaults follow the article (Adam, 1e-3, batch 32).</summary>
public sealed class TrainingOptions
{
    private int _batchSize = 32;
    private double _learningRate = 1e-3;
    private double _momentum = 0.9;
    private double _weightDecay;
    private int? _imageSize;
    private Augmentation _augmentation = Augmentation.None;
    private string _device = "cpu";
    private int _int8CalibrationImages = 64;
    private int _degreeOfParallelism = Environment.ProcessorCount;

    /// <summary>Images per batch (&gt; 0). Default 32.</summary>
    public int BatchSize
    {
        get => _batchSize;
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegativeOrZero(value);
            _batchSize = value;
        }
    }

    /// <summary>The optimizer. Default <see cref="OptimizerKind.Adam"/>.</summary>
    public OptimizerKind Optimizer { get; set; } = OptimizerKind.Adam;

    /// <summary>Base learning rate (&gt; 0). Default 1e-3.</summary>
    public double LearningRate
    {
        get => _learningRate;
        set
        {
            if (!(value > 0) || !double.IsFinite(value))
            {
                throw new ArgumentOutOfRangeException(nameof(value), value, "The learning rate must be a finite positive number.");
            }

            _learningRate = value;
        }
    }

    /// <summary>Momentum for <see cref="OptimizerKind.Sgd"/>, in [0, 1). Default 0.9.</summary>
    public double Momentum
    {
        get => _momentum;
        set
        {
            if (!(value >= 0 && value < 1))
            {
                throw new ArgumentOutOfRangeException(nameof(value), value, "Momentum must be in [0, 1).");
            }

            _momentum = value;
        }
    }

    /// <summary>L2 weight decay (≥ 0). Default 0.</summary>
    public double WeightDecay
    {
        get => _weightDecay;
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegative(value);
            _weightDecay = value;
        }
    }

    /// <summary>Learning-rate schedule. Default <see cref="LearningRateSchedule.Constant"/>.</summary>
    public LearningRateSchedule Schedule { get; set; } = LearningRateSchedule.Constant;

    /// <summary>Seed for weight initialisation, shuffling, dropout and augmentation. Default 42.</summary>
    public int Seed { get; set; } = 42;

    /// <summary>Square input size in pixels; null (default) uses the backbone's own size.</summary>
    public int? ImageSize
    {
        get => _imageSize;
        set
        {
            if (value is < 32)
            {
                throw new ArgumentOutOfRangeException(nameof(value), value, "The image size must be at least 32 pixels.");
            }

            _imageSize = value;
        }
    }

    /// <summary>How images are resized; null (default) uses the backbone's own mode.</summary>
    public ResizeMode? ResizeMode { get; set; }

    /// <summary>Random changes applied to training images. Default none (which also allows feature caching).</summary>
    public Augmentation Augmentation
    {
        get => _augmentation;
        set
        {
            ArgumentNullException.ThrowIfNull(value);
            value.Validate();
            _augmentation = value;
        }
    }

    /// <summary>Early stopping; null (default) trains every epoch.</summary>
    public EarlyStopping? EarlyStopping { get; set; }

    /// <summary>Per-class loss weights by class name (classes not listed weigh 1); null for none.</summary>
    public IReadOnlyDictionary<string, double>? ClassWeights { get; set; }

    /// <summary>
    /// When true, computes class weights inversely proportional to class frequency in the training data
    /// (Keras/scikit-learn "balanced"). Ignored when <see cref="ClassWeights"/> is set. Default false.
    /// </summary>
    public bool BalanceClasses { get; set; }

    /// <summary>
    /// Whether an unfrozen backbone's BatchNorm layers use batch statistics and update their moving averages while
    /// training. Default false: the backbone runs in inference mode (moving statistics, no dropout) while its weights,
    /// BatchNorm scale and shift included, are trained, as Keras's fine-tuning guide recommends
    /// (<c>base_model(x, training=False)</c>); small fine-tuning batches then do not disturb the pretrained statistics.
    /// </summary>
    public bool UpdateBatchNormStatistics { get; set; }

    /// <summary>
    /// Run the frozen backbone once per image and train the head on cached features when the backbone is frozen and no
    /// augmentation is on. Default true.
    /// </summary>
    public bool CacheFeatures { get; set; } = true;

    /// <summary>Device name: <c>cpu</c> (default), <c>cuda</c> or <c>cuda:N</c> (needs a CUDA LibTorch runtime).</summary>
    public string Device
    {
        get => _device;
        set
        {
            ArgumentException.ThrowIfNullOrWhiteSpace(value);
            _device = value;
        }
    }

    /// <summary>Images decoded in parallel. Default: the processor count.</summary>
    public int DegreeOfParallelism
    {
        get => _degreeOfParallelism;
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegativeOrZero(value);
            _degreeOfParallelism = value;
        }
    }

    /// <summary>
    /// Run the frozen backbone in int8 (8-bit weights and activations through LibTorch's x86 quantized kernels) while
    /// featurizing and in the trained model's predictions. About 1.8× faster on a 2-core AVX2 CPU for ResNet18; features
    /// differ from the float ones by a few percent, so measure accuracy on your data. Needs a frozen backbone loaded
    /// from ONNX (such as <c>resnet18</c>); activation ranges come from <see cref="Int8CalibrationImages"/> training images
    /// spread evenly over the training set (every class contributes). Unfreezing the model later (fine-tuning) returns
    /// to float. Default false.
    /// </summary>
    public bool Int8Backbone { get; set; }

    /// <summary>Training images whose activation ranges set the int8 scales (see <see cref="Int8Backbone"/>). Default 64.</summary>
    public int Int8CalibrationImages
    {
        get => _int8CalibrationImages;
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegativeOrZero(value);
            _int8CalibrationImages = value;
        }
    }

    /// <summary>
    /// What <c>Fit</c> does with a training, validation or int8-calibration image that cannot be read or decoded
    /// (truncated, corrupt, not an image, above the pixel limit). Default <see cref="BadImagePolicy.Skip"/>: the image is
    /// left out and listed in <see cref="FitResult.SkippedImages"/> (validation images also in the
    /// <see cref="Models.Evaluation.Skipped"/> of <see cref="FitResult.ValidationEvaluation"/>), because such a file is
    /// only found while the backbone runs over the images, possibly minutes into a fit, and one bad photo among thousands
    /// should not cost the run; a fit whose every training image is unreadable still fails. <see cref="BadImagePolicy.Fail"/>
    /// stops the fit with an <see cref="InvalidImageException"/> naming the file. (<c>TrainedModel.Evaluate</c> fails by
    /// default instead, through <see cref="Models.EvaluateOptions.BadImages"/>: a metric must say which images it covers.)
    /// </summary>
    public BadImagePolicy BadImages { get; set; } = BadImagePolicy.Skip;

    /// <summary>A copy of these options.</summary>
    public TrainingOptions Clone() => (TrainingOptions)MemberwiseClone();
}
