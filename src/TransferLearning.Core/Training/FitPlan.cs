using TransferLearning.Backbones;
using TransferLearning.Datasets;
using TransferLearning.Heads;
using TransferLearning.Models;
using TransferLearning.Native;
using static TorchSharp.torch;

namespace TransferLearning.Training;

/// <summary>
/// A learner's configuration checked against the data: everything a <see cref="FitRun"/> needs, built before anything
/// is changed or used up. <see cref="Create"/> throws on the first problem it finds.
/// </summary>
internal sealed class FitPlan
{
    private FitPlan(
        Backbone backbone,
        TrainedModel? continued,
        IReadOnlyList<string> classes,
        HeadOptions headOptions,
        Trainability? trainability,
        TrainingOptions options,
        ImageDataset train,
        ImageDataset? validation,
        int epochs,
        InputSpec spec,
        Device device,
        float[]? classWeights)
    {
        Backbone = backbone;
        Continued = continued;
        Classes = classes;
        HeadOptions = headOptions;
        Trainability = trainability;
        Options = options;
        Train = train;
        Validation = validation;
        Epochs = epochs;
        Spec = spec;
        Device = device;
        ClassWeights = classWeights;
    }

    public Backbone Backbone { get; }

    /// <summary>The model being trained further, or null for a new head.</summary>
    public TrainedModel? Continued { get; }

    public IReadOnlyList<string> Classes { get; }

    public HeadOptions HeadOptions { get; }

    /// <summary>What to freeze or unfreeze when the run starts; null leaves the backbone as it is.</summary>
    public Trainability? Trainability { get; }

    /// <summary>A private copy of the learner's options.</summary>
    public TrainingOptions Options { get; }

    public ImageDataset Train { get; }

    /// <summary>The validation images, or null when there are none.</summary>
    public ImageDataset? Validation { get; }

    public int Epochs { get; }

    /// <summary>How images are prepared: the model's (continued) or the backbone's, with the size and resize settings.</summary>
    public InputSpec Spec { get; }

    public Device Device { get; }

    /// <summary>Loss weight per class (label order), or null for none.</summary>
    public float[]? ClassWeights { get; }

    /// <summary>This plan, continuing <paramref name="model"/> (made by an earlier phase with the same backbone and classes).</summary>
    public FitPlan Continuing(TrainedModel model) =>
        new(Backbone, model, Classes, HeadOptions, Trainability, Options, Train, Validation, Epochs, Spec, Device, ClassWeights);

    /// <summary>True when no backbone weight will be trained.</summary>
    public bool BackboneFrozen => Trainability?.IsFrozen ?? Backbone.IsFrozen;

    public static FitPlan Create(
        Backbone backbone,
        TrainedModel? continued,
        IReadOnlyList<string>? classes,
        HeadOptions? headOptions,
        Trainability? trainability,
        TrainingOptions options,
        DatasetSplit data,
        int epochs)
    {
        ArgumentNullException.ThrowIfNull(data);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(epochs);
        if (classes is null || headOptions is null)
        {
            throw new InvalidOperationException("Call AddHead(classes) before Fit: the model has no classification head.");
        }

        var train = data.Train;
        var validation = data.Validation is { Count: > 0 } v ? v : null;
        if (!train.Classes.SequenceEqual(classes, StringComparer.Ordinal))
        {
            throw new ArgumentException(
                $"The head was built for {classes.Count} classes ({string.Join(", ", classes)}) but the data has {train.Classes.Count} " +
                $"({string.Join(", ", train.Classes)}). Pass the data's classes to AddHead.", nameof(data));
        }

        if (validation is not null && !validation.Classes.SequenceEqual(classes, StringComparer.Ordinal))
        {
            throw new ArgumentException(
                $"The validation data has classes ({string.Join(", ", validation.Classes)}) that differ from the training data's ({string.Join(", ", classes)}).", nameof(data));
        }

        if (train.Count == 0)
        {
            throw new ArgumentException("The training data is empty: add images to the class folders or change the split.", nameof(data));
        }

        var frozen = trainability?.IsFrozen ?? backbone.IsFrozen;
        if (options.Int8Backbone && !frozen)
        {
            throw new InvalidOperationException(
                "Int8Backbone needs a frozen backbone: call Freeze() before Fit (fine-tuning trains unfrozen layers in float).");
        }

        if (options.StandardizeFeatures && !UsesCachedFeatures(options, frozen))
        {
            throw new InvalidOperationException(
                "WithStandardizedFeatures() needs cached features: freeze the backbone, keep the feature cache on and use no augmentation " +
                "other than cached views, or remove WithStandardizedFeatures().");
        }

        if (options.Bf16Backbone)
        {
            if (options.Int8Backbone)
            {
                throw new InvalidOperationException("Int8Backbone and Bf16Backbone both ask for a faster backbone; choose one.");
            }

            if (!frozen && !Bf16Training.Supports(backbone))
            {
                throw new NotSupportedException(
                    $"Bf16Backbone trains a backbone in bf16 when it was loaded from ONNX, a torchvision checkpoint or a TF.js layers model; '{backbone.Source}' is a {backbone.Module.GetType().Name} wrapped by hand. " +
                    "Remove WithBf16Backbone() to train it in float.");
            }

            if (Bf16Kernels.Unavailable is { } reason)
            {
                throw new NotSupportedException($"Bf16Backbone cannot speed up this machine: {reason}");
            }
        }

        var spec = ResolveInputSpec(backbone, continued, options);
        var device = TorchDevices.Parse(options.Device);
        if (options.Bf16Backbone && device.type != TorchSharp.DeviceType.CPU)
        {
            throw new NotSupportedException($"Bf16Backbone is for CPUs; the device is '{options.Device}'.");
        }
        var weights = ResolveClassWeights(classes, train, options);
        return new FitPlan(backbone, continued, classes, headOptions, trainability, options.Clone(), train, validation, epochs, spec, device, weights);
    }

    /// <summary>Whether the head trains on features cached once per image (or per cached view) instead of running the backbone every epoch.</summary>
    internal static bool UsesCachedFeatures(TrainingOptions options, bool backboneFrozen) =>
        options.CacheFeatures && backboneFrozen && (!options.Augmentation.IsEnabled || options.Augmentation.CachedViews > 0);

    private static InputSpec ResolveInputSpec(Backbone backbone, TrainedModel? continued, TrainingOptions options)
    {
        var spec = continued?.InputSpec ?? backbone.InputSpec;
        if (options.ImageSize is { } size && (size != spec.Width || size != spec.Height))
        {
            if (backbone.FixedInputSize)
            {
                throw new InvalidOperationException(
                    $"The backbone '{backbone.Source}' only accepts {backbone.InputSpec.Width}×{backbone.InputSpec.Height} images, " +
                    $"not {size}×{size}. Remove the image size setting or choose a backbone that accepts other sizes.");
            }

            spec = spec.WithSize(size, size);
        }

        return options.ResizeMode is { } mode ? spec.WithResizeMode(mode) : spec;
    }

    private static float[]? ResolveClassWeights(IReadOnlyList<string> classes, ImageDataset train, TrainingOptions options)
    {
        if (options.ClassWeights is { } byName)
        {
            var unknown = byName.Keys.Where(k => !classes.Contains(k)).ToList();
            if (unknown.Count > 0)
            {
                throw new ArgumentException(
                    $"Class weights name unknown classes: {string.Join(", ", unknown)}. Classes: {string.Join(", ", classes)}.");
            }

            return [.. classes.Select(c => byName.TryGetValue(c, out var w) ? (float)w : 1f)];
        }

        if (!options.BalanceClasses)
        {
            return null;
        }

        var counts = train.CountPerClass();
        return [.. counts.Select(n => n == 0 ? 0f : (float)train.Count / (classes.Count * n))];
    }
}
