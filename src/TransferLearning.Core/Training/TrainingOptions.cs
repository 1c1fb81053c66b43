using TransferLearning.Datasets;

namespace TransferLearning.Training;

/// <summary>The optimizer that updates the trainable weights.</summary>
public enum OptimizerKind
{
    /// <summary>Adam (the default).</summary>
    Adam,

    /// <summary>Stochastic gradient descent with momentum.</summary>
    Sgd,

    /// <summary>Adam with decoupled weight decay (the weight decay shrinks weights directly instead of adding to the gradient).</summary>
    AdamW,
}

/// <summary>
/// How the learning rate changes over a fit: per epoch (<see cref="Constant"/>, <see cref="StepDecay"/>,
/// <see cref="Cosine"/>) or per optimizer step (<see cref="OneCycle"/>, <see cref="WarmupCosine"/>).
/// </summary>
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

    /// <summary>
    /// One cycle (as PyTorch's <c>OneCycleLR</c> and fastai's <c>fit_one_cycle</c>), per step: the rate rises along a
    /// cosine from base / <paramref name="startDivisor"/> to the base rate over the first <paramref name="warmupFraction"/>
    /// of the fit, then falls along a cosine to base / (<paramref name="startDivisor"/> · <paramref name="endDivisor"/>).
    /// </summary>
    /// <param name="warmupFraction">Share of the fit spent rising, in (0, 1).</param>
    /// <param name="startDivisor">Base rate ÷ starting rate (≥ 1).</param>
    /// <param name="endDivisor">Starting rate ÷ final rate (≥ 1).</param>
    public static LearningRateSchedule OneCycle(double warmupFraction = 0.3, double startDivisor = 25, double endDivisor = 1e4)
    {
        if (!(warmupFraction > 0 && warmupFraction < 1))
        {
            throw new ArgumentOutOfRangeException(nameof(warmupFraction), warmupFraction, "The warm-up fraction must be in (0, 1).");
        }

        if (!(startDivisor >= 1) || !(endDivisor >= 1) || !double.IsFinite(startDivisor) || !double.IsFinite(endDivisor))
        {
            throw new ArgumentOutOfRangeException(nameof(startDivisor), "The divisors must be finite and at least 1.");
        }

        return new OneCycleSchedule(warmupFraction, startDivisor, endDivisor);
    }

    /// <summary>Per step: a linear warm-up from 0 to the base rate over <paramref name="warmupFraction"/> of the fit, then cosine annealing to <paramref name="minimum"/>.</summary>
    /// <param name="warmupFraction">Share of the fit spent warming up, in [0, 1).</param>
    /// <param name="minimum">Rate reached at the end (≥ 0).</param>
    public static LearningRateSchedule WarmupCosine(double warmupFraction = 0.1, double minimum = 0)
    {
        if (!(warmupFraction >= 0 && warmupFraction < 1))
        {
            throw new ArgumentOutOfRangeException(nameof(warmupFraction), warmupFraction, "The warm-up fraction must be in [0, 1).");
        }

        ArgumentOutOfRangeException.ThrowIfNegative(minimum);
        return new WarmupCosineSchedule(warmupFraction, minimum);
    }

    /// <summary>The rate at a point of a fit of <paramref name="epochs"/> epochs.</summary>
    /// <param name="baseRate">The configured learning rate.</param>
    /// <param name="epoch">0-based position within this fit, in epochs (2.5 = halfway through the third epoch); per-epoch schedules use its whole part.</param>
    /// <param name="epochs">Epochs in this fit.</param>
    public abstract double RateAt(double baseRate, double epoch, int epochs);

    private static double CosineBetween(double from, double to, double progress) =>
        to + ((from - to) * 0.5 * (1 + Math.Cos(Math.PI * Math.Clamp(progress, 0, 1))));

    private sealed record ConstantSchedule : LearningRateSchedule
    {
        public override double RateAt(double baseRate, double epoch, int epochs) => baseRate;
    }

    private sealed record StepSchedule(int EveryEpochs, double Factor) : LearningRateSchedule
    {
        public override double RateAt(double baseRate, double epoch, int epochs) => baseRate * Math.Pow(Factor, (int)Math.Floor(epoch) / EveryEpochs);
    }

    private sealed record CosineSchedule(double Minimum) : LearningRateSchedule
    {
        public override double RateAt(double baseRate, double epoch, int epochs) =>
            epochs <= 1 ? baseRate : CosineBetween(baseRate, Minimum, Math.Floor(epoch) / (epochs - 1));
    }

    private sealed record OneCycleSchedule(double WarmupFraction, double StartDivisor, double EndDivisor) : LearningRateSchedule
    {
        public override double RateAt(double baseRate, double epoch, int epochs)
        {
            var progress = epochs <= 0 ? 1 : epoch / epochs;
            var start = baseRate / StartDivisor;
            return progress < WarmupFraction
                ? CosineBetween(start, baseRate, progress / WarmupFraction)
                : CosineBetween(baseRate, start / EndDivisor, (progress - WarmupFraction) / (1 - WarmupFraction));
        }
    }

    private sealed record WarmupCosineSchedule(double WarmupFraction, double Minimum) : LearningRateSchedule
    {
        public override double RateAt(double baseRate, double epoch, int epochs)
        {
            var progress = epochs <= 0 ? 1 : epoch / epochs;
            return progress < WarmupFraction
                ? baseRate * progress / WarmupFraction
                : CosineBetween(baseRate, Minimum, (progress - WarmupFraction) / (1 - WarmupFraction));
        }
    }
}

/// <summary>
/// Random changes applied to training images only (never to validation, evaluation or prediction), as batched tensor
/// operations seeded by the fit's seed. Setters check their value.
/// </summary>
public sealed class Augmentation
{
    /// <summary>Largest number of cached views.</summary>
    public const int MaxCachedViews = 64;

    private double _rotationDegrees;
    private double _zoom;
    private double _cropScaleMin = 0.08;
    private double _cropScaleMax = 1;
    private double _cropRatioMin = 3.0 / 4;
    private double _cropRatioMax = 4.0 / 3;
    private double _brightness;
    private double _contrast;
    private int _cachedViews;

    /// <summary>No augmentation (a new instance each time).</summary>
    public static Augmentation None => new();

    /// <summary>
    /// What the fine-tuning recipe uses (a new instance each time): horizontal flips, random resized crops (area 35–100 %
    /// of the image, aspect ratio 3:4 to 4:3) and brightness and contrast changes of up to ±20 %.
    /// </summary>
    public static Augmentation Standard => new()
    {
        HorizontalFlip = true,
        RandomResizedCrop = true,
        CropScaleMin = 0.35,
        Brightness = 0.2,
        Contrast = 0.2,
    };

    /// <summary>Mirror left-right with probability 0.5. Default false.</summary>
    public bool HorizontalFlip { get; set; }

    /// <summary>Rotate by a uniform random angle in ±this many degrees (0 to 180; default 0 = off).</summary>
    public double RotationDegrees
    {
        get => _rotationDegrees;
        set => _rotationDegrees = InRange(value, 0, 180, nameof(RotationDegrees));
    }

    /// <summary>Zoom in by a uniform random factor in [1, 1 + this] (0 to 1; default 0 = off), cropping around the centre.</summary>
    public double Zoom
    {
        get => _zoom;
        set => _zoom = InRange(value, 0, 1, nameof(Zoom));
    }

    /// <summary>
    /// Cut a random window (area a uniform share in [<see cref="CropScaleMin"/>, <see cref="CropScaleMax"/>] of the image,
    /// aspect ratio log-uniform in [<see cref="CropRatioMin"/>, <see cref="CropRatioMax"/>], anywhere inside it) and stretch
    /// it to the input size, as torchvision's <c>RandomResizedCrop</c>. Default false.
    /// </summary>
    public bool RandomResizedCrop { get; set; }

    /// <summary>Smallest crop area as a share of the image (in (0, 1]; default 0.08 as torchvision).</summary>
    public double CropScaleMin
    {
        get => _cropScaleMin;
        set => _cropScaleMin = Positive(value, 1, nameof(CropScaleMin));
    }

    /// <summary>Largest crop area as a share of the image (in (0, 1]; default 1).</summary>
    public double CropScaleMax
    {
        get => _cropScaleMax;
        set => _cropScaleMax = Positive(value, 1, nameof(CropScaleMax));
    }

    /// <summary>Smallest crop aspect ratio, width ÷ height (in (0, 10]; default 3/4 as torchvision).</summary>
    public double CropRatioMin
    {
        get => _cropRatioMin;
        set => _cropRatioMin = Positive(value, 10, nameof(CropRatioMin));
    }

    /// <summary>Largest crop aspect ratio, width ÷ height (in (0, 10]; default 4/3 as torchvision).</summary>
    public double CropRatioMax
    {
        get => _cropRatioMax;
        set => _cropRatioMax = Positive(value, 10, nameof(CropRatioMax));
    }

    /// <summary>Multiply pixel values by a uniform factor in [1 − this, 1 + this] (0 to 1; default 0 = off).</summary>
    public double Brightness
    {
        get => _brightness;
        set => _brightness = InRange(value, 0, 1, nameof(Brightness));
    }

    /// <summary>Scale each image's deviation from its mean grey by a uniform factor in [1 − this, 1 + this] (0 to 1; default 0 = off).</summary>
    public double Contrast
    {
        get => _contrast;
        set => _contrast = InRange(value, 0, 1, nameof(Contrast));
    }

    /// <summary>
    /// For a frozen backbone: the number of augmented views of each training image that go through the backbone once and
    /// are cached, so that head epochs stay cheap (epoch e trains on view e mod this). 0 (default) runs the backbone on
    /// freshly augmented images every epoch instead. Memory: views × training images × feature length × 4 bytes
    /// (8 views of 2,325 images with 512 features: 38 MB). 0 to <see cref="MaxCachedViews"/>.
    /// </summary>
    public int CachedViews
    {
        get => _cachedViews;
        set => _cachedViews = (int)InRange(value, 0, MaxCachedViews, nameof(CachedViews));
    }

    /// <summary>True when any change is switched on.</summary>
    public bool IsEnabled => HorizontalFlip || RotationDegrees != 0 || Zoom != 0 || RandomResizedCrop || Brightness != 0 || Contrast != 0;

    /// <summary>A copy of these settings.</summary>
    internal Augmentation Clone() => (Augmentation)MemberwiseClone();

    /// <summary>Checks the settings that depend on each other.</summary>
    internal void Validate()
    {
        if (CropScaleMin > CropScaleMax)
        {
            throw new ArgumentException($"CropScaleMin ({CropScaleMin}) must not exceed CropScaleMax ({CropScaleMax}).");
        }

        if (CropRatioMin > CropRatioMax)
        {
            throw new ArgumentException($"CropRatioMin ({CropRatioMin}) must not exceed CropRatioMax ({CropRatioMax}).");
        }
    }

    private static double Positive(double value, double max, string name) =>
        value > 0 && value <= max
            ? value
            : throw new ArgumentOutOfRangeException(name, value, $"{name} must be in (0, {max}].");

    private static double InRange(double value, double min, double max, string name) =>
        value >= min && value <= max
            ? value
            : throw new ArgumentOutOfRangeException(name, value, $"{name} must be in [{min}, {max}].");
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

/// <summary>
/// Everything about how a fit trains, as recorded by <see cref="TransferLearner"/>'s methods (each setting has one).
/// Setters validate; defaults are the named constants below (Adam at 1e-3 with batches of 32).
/// </summary>
internal sealed class TrainingOptions
{
    /// <summary>Default images per batch.</summary>
    public const int DefaultBatchSize = 32;

    /// <summary>Default base learning rate.</summary>
    public const double DefaultLearningRate = 1e-3;

    /// <summary>Default SGD momentum.</summary>
    public const double DefaultMomentum = 0.9;

    /// <summary>Default seed.</summary>
    public const int DefaultSeed = 42;

    /// <summary>
    /// Default number of calibration images for int8: 32. Measured on flowers (frozen, 6 epochs, 8-bit activations):
    /// validation accuracy with 32 / 64 images 0.9017 / 0.8987 on <c>resnet18</c>, 0.8937 / 0.8907 on the Teachable Machine
    /// MobileNetV2 (float 0.8907), and calibrating takes about half as long.
    /// </summary>
    public const int DefaultInt8CalibrationImages = 32;

    private int _batchSize = DefaultBatchSize;
    private double _learningRate = DefaultLearningRate;
    private double _momentum = DefaultMomentum;
    private double _weightDecay;
    private int? _imageSize;
    private Augmentation _augmentation = Augmentation.None;
    private string _device = "cpu";
    private int _int8CalibrationImages = DefaultInt8CalibrationImages;
    private int _degreeOfParallelism = Environment.ProcessorCount;
    private double _labelSmoothing;
    private double _lowestBlockRateFactor = 1;
    private BadImagePolicy _badImages = BadImagePolicy.Skip;

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

    /// <summary>L2 weight decay (≥ 0, finite). Default 0.</summary>
    public double WeightDecay
    {
        get => _weightDecay;
        set
        {
            if (!(value >= 0) || !double.IsFinite(value))
            {
                throw new ArgumentOutOfRangeException(nameof(value), value, "The weight decay must be a finite non-negative number.");
            }

            _weightDecay = value;
        }
    }

    /// <summary>Learning-rate schedule. Default <see cref="LearningRateSchedule.Constant"/>.</summary>
    public LearningRateSchedule Schedule { get; set; } = LearningRateSchedule.Constant;

    /// <summary>Seed for weight initialisation, shuffling, dropout and augmentation. Default 42.</summary>
    public int Seed { get; set; } = DefaultSeed;

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
            _augmentation = value.Clone();
        }
    }

    /// <summary>
    /// Label smoothing ε in [0, 1): the loss's target puts 1 − ε on the true class and spreads ε evenly over all classes
    /// (PyTorch's <c>label_smoothing</c>). Default 0.
    /// </summary>
    public double LabelSmoothing
    {
        get => _labelSmoothing;
        set
        {
            if (!(value >= 0 && value < 1))
            {
                throw new ArgumentOutOfRangeException(nameof(value), value, "Label smoothing must be in [0, 1).");
            }

            _labelSmoothing = value;
        }
    }

    /// <summary>
    /// Discriminative learning rates for a trained backbone: the first trained block learns at the base rate times this
    /// factor, the last one at the base rate, the blocks between on a geometric scale, and the head at the base rate.
    /// In (0, 1]; default 1 (every weight at the base rate).
    /// </summary>
    public double LowestBlockRateFactor
    {
        get => _lowestBlockRateFactor;
        set
        {
            if (!(value > 0 && value <= 1))
            {
                throw new ArgumentOutOfRangeException(nameof(value), value, "The lowest block rate factor must be in (0, 1].");
            }

            _lowestBlockRateFactor = value;
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

    /// <summary>
    /// Train the head on standardised cached features: each feature has the training images' mean subtracted and is
    /// divided by their standard deviation (a feature that is constant on them is only centred). After training the
    /// transform is folded into the head's first Dense layer, so the model takes raw features and a saved or exported
    /// model has no extra layer. Needs cached features: a frozen backbone, <see cref="CacheFeatures"/> on, and no
    /// augmentation other than cached views. Default false (the tutorial trains on raw features).
    /// </summary>
    public bool StandardizeFeatures { get; set; }

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

    /// <summary>
    /// What a fit does with a training, validation or int8-calibration image that cannot be read or decoded (truncated,
    /// corrupt, not an image, above the pixel limit). Default <see cref="BadImagePolicy.Skip"/>: the image is left out
    /// and listed in <see cref="FitResult.SkippedImages"/>, because such a file is only found while the backbone runs
    /// over the images, possibly minutes into a fit, and one bad photo among thousands should not cost the run; a fit
    /// whose every training image is unreadable still fails. <c>TrainedModel.Evaluate</c> fails by default instead
    /// (<see cref="Models.EvaluateOptions.BadImages"/>): a metric must say which images it covers.
    /// </summary>
    public BadImagePolicy BadImages
    {
        get => _badImages;
        set
        {
            if (!Enum.IsDefined(value))
            {
                throw new ArgumentOutOfRangeException(nameof(value), value, "Unknown bad-image policy.");
            }

            _badImages = value;
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
    /// featurizing and in the trained model's predictions. Needs a frozen backbone that supports it; activation ranges
    /// come from <see cref="Int8CalibrationImages"/> training images spread evenly over the training set. Default false.
    /// </summary>
    public bool Int8Backbone { get; set; }

    /// <summary>
    /// Run the backbone in bfloat16, on CPUs with native bf16 kernels (AVX-512 BF16 or AMX). A frozen backbone runs in
    /// bf16 while featurizing and in the trained model's predictions. A backbone that trains (fine-tuning) computes its
    /// forward and backward passes in bf16 while the optimizer updates float copies of its weights (mixed precision);
    /// the trained model holds the float weights and predicts in float (the epochs' validation passes run in bf16; the
    /// fit's final evaluation runs the float model). Training in bf16 works for every backbone family the library loads,
    /// not for a module wrapped by hand. Fit refuses (a <see cref="NotSupportedException"/> naming the missing CPU
    /// feature) where bf16 would be emulated, slower than float. Default false.
    /// </summary>
    public bool Bf16Backbone { get; set; }

    /// <summary>Training images whose activation ranges set the int8 scales (see <see cref="Int8Backbone"/>). Default 32.</summary>
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
    /// Images per forward/backward slice of a training step that runs the backbone with BatchNorm in inference mode;
    /// null (default) uses <see cref="Backbones.Backbone.InferenceSliceSize"/>. For benchmarks of the slice size.
    /// </summary>
    internal int? TrainingSliceSize { get; set; }

    /// <summary>A copy of these options (its augmentation settings copied too).</summary>
    public TrainingOptions Clone()
    {
        var copy = (TrainingOptions)MemberwiseClone();
        copy._augmentation = _augmentation.Clone();
        return copy;
    }
}
