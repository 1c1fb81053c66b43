using TorchSharp;
using TransferLearning.Datasets;
using TransferLearning.Datasets.Pipeline;
using TransferLearning.Heads;
using TransferLearning.Models;
using static TorchSharp.torch;

namespace TransferLearning.Training;

/// <summary>
/// Carries out a <see cref="FitPlan"/>: applies freezing, builds the head and the model, wires the image loaders,
/// calibrates int8, caches features when it can and runs the <see cref="Trainer"/>. When it fails, what it created
/// (the new head) is disposed; the backbone stays with its owner.
/// </summary>
internal static class FitRun
{
    public static FitResult Execute(FitPlan plan, IProgress<TrainingProgress>? progress, CancellationToken cancellationToken)
    {
        NativeHeap.ConfigureAllocator(); // before int8 calibration's float passes too
        var backbone = plan.Backbone;
        var options = plan.Options;
        plan.Trainability?.ApplyTo(backbone);

        nn.Module<Tensor, Tensor>? newHead = null;
        try
        {
            TrainedModel model;
            if (plan.Continued is { } continued)
            {
                model = continued;
            }
            else
            {
                manual_seed(options.Seed); // dropout draws from the global generator
                newHead = HeadFactory.Create(backbone.FeatureSize, plan.Classes.Count, plan.HeadOptions, options.Seed);
                model = new TrainedModel(backbone, newHead, plan.Classes, plan.Spec, plan.HeadOptions, new History(), plan.Device);
            }

            backbone.Module.to(plan.Device);
            model.Head.to(plan.Device);
            using var classWeights = plan.ClassWeights is { } w ? tensor(w).to(plan.Device) : null;
            var trainer = new Trainer(backbone, model.Head, plan.Device, options, classWeights, plan.Spec);

            var loaderOptions = new ImageLoaderOptions
            {
                BatchSize = options.BatchSize,
                Shuffle = true,
                Seed = options.Seed,
                DegreeOfParallelism = options.DegreeOfParallelism,
                BadImages = options.BadImages,
                ChannelsLast = true, // the backbone runs channels-last: no reordering copy per batch
            };
            using var trainLoader = new ImageLoader(plan.Train, plan.Spec, loaderOptions);
            using var validationLoader = plan.Validation is { } validation
                ? new ImageLoader(validation, plan.Spec, new ImageLoaderOptions { BatchSize = options.BatchSize, DegreeOfParallelism = options.DegreeOfParallelism, BadImages = options.BadImages, ChannelsLast = true })
                : null;
            IBatchSource trainImages = new ImageBatchSource(trainLoader, plan.Train.Count);
            IBatchSource? validationImages = validationLoader is null ? null : new ImageBatchSource(validationLoader, plan.Validation!.Count);

            IReadOnlyList<SkippedImage> calibrationSkipped = [];
            if (options.Int8Backbone && !backbone.IsInt8)
            {
                calibrationSkipped = Quantize(plan, cancellationToken);
            }

            if (options.Bf16Backbone && backbone.IsFrozen && !backbone.IsBf16)
            {
                backbone.EnableBf16();
            }

            ValidationPass? pass;
            var augmentation = options.Augmentation;
            if (!FitPlan.UsesCachedFeatures(options, backbone.IsFrozen))
            {
                pass = trainer.Fit(trainImages, validationImages, inputsAreFeatures: false, plan.Epochs, model.History, progress, cancellationToken);
            }
            else
            {
                var trainFeatures = augmentation.IsEnabled
                    ? FeaturizeViews(trainer, trainImages, augmentation, options.Seed, progress, cancellationToken)
                    : (IBatchSource)trainer.Featurize(trainImages, shuffle: true, progress, cancellationToken);
                using var ownedFeatures = (IDisposable)trainFeatures;
                if (trainFeatures.Count == 0)
                {
                    throw Trainer.NoTrainingImages(plan.Train.Count, trainLoader.Skipped);
                }

                using var validationFeatures = validationImages is null ? null : trainer.Featurize(validationImages, shuffle: false, progress, cancellationToken);
                using var standardization = options.StandardizeFeatures
                    ? Standardize(trainFeatures, validationFeatures, model.Head, newHead: plan.Continued is null)
                    : null;
                try
                {
                    pass = trainer.Fit(trainFeatures, validationFeatures, inputsAreFeatures: true, plan.Epochs, model.History, progress, cancellationToken);
                }
                finally
                {
                    standardization?.FoldInto(model.Head);
                }
            }

            var evaluation = pass is null || validationLoader is null ? null : Evaluation.FromConfusion(model.Classes, pass.Confusion, pass.LossSum, validationLoader.Skipped);
            return new FitResult(model, model.History)
            {
                ValidationEvaluation = evaluation,
                SkippedImages = [.. trainLoader.Skipped.Concat(validationLoader?.Skipped ?? []).Concat(calibrationSkipped)
                    .DistinctBy(s => s.Path, StringComparer.Ordinal).OrderBy(s => s.Path, StringComparer.Ordinal)],
            };
        }
        catch
        {
            newHead?.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Standardises the cached training and validation features in place with the training features' statistics. A
    /// continued model's head is rewritten to take standardised features first, so it computes what it did before.
    /// </summary>
    private static FeatureStandardization Standardize(IBatchSource train, TensorBatchSource? validation, nn.Module head, bool newHead)
    {
        var trainInputs = train switch
        {
            CachedViewsSource views => views.Views.Select(v => v.Inputs).ToList(),
            TensorBatchSource cached => [cached.Inputs],
            _ => throw new InvalidOperationException("Feature standardisation needs cached features."),
        };
        var standardization = FeatureStandardization.Of(trainInputs);
        try
        {
            if (!newHead)
            {
                standardization.UnfoldFrom(head);
            }

            trainInputs.ForEach(standardization.Apply);
            if (validation is not null)
            {
                standardization.Apply(validation.Inputs);
            }

            return standardization;
        }
        catch
        {
            standardization.Dispose();
            throw;
        }
    }

    /// <summary>Features of <see cref="Augmentation.CachedViews"/> augmented views of every training image, each view drawn from its own seeded generator.</summary>
    private static CachedViewsSource FeaturizeViews(Trainer trainer, IBatchSource images, Augmentation augmentation, int seed, IProgress<TrainingProgress>? progress, CancellationToken cancellationToken)
    {
        var views = new List<TensorBatchSource>();
        try
        {
            for (var v = 0; v < augmentation.CachedViews; v++)
            {
                using var random = new Generator(TensorBatchSource.SeedFor(seed, -2 - v), CPU);
                views.Add(trainer.Featurize(images, shuffle: true, progress, cancellationToken, augmentation, random));
            }

            return new CachedViewsSource(views);
        }
        catch
        {
            views.ForEach(view => view.Dispose());
            throw;
        }
    }

    /// <summary><paramref name="count"/> samples at even steps through <paramref name="samples"/>.</summary>
    internal static IEnumerable<ImageSample> CalibrationSamples(IReadOnlyList<ImageSample> samples, int count) =>
        Enumerable.Range(0, count).Select(i => samples[(int)((long)i * samples.Count / count)]);

    /// <summary>
    /// Calibrates int8 on training images spread evenly over the data set's order (which is sorted by class, so every
    /// class contributes) and switches the backbone to it.
    /// </summary>
    /// <returns>The calibration images that were skipped as unreadable.</returns>
    private static IReadOnlyList<SkippedImage> Quantize(FitPlan plan, CancellationToken cancellationToken)
    {
        var options = plan.Options;
        var count = Math.Min(options.Int8CalibrationImages, plan.Train.Count);
        var calibration = new ImageDataset(plan.Train.Classes, [.. CalibrationSamples(plan.Train.Samples, count)]);
        using var loader = new ImageLoader(calibration, plan.Spec, new ImageLoaderOptions { BatchSize = options.BatchSize, DegreeOfParallelism = options.DegreeOfParallelism, BadImages = options.BadImages, ChannelsLast = true });
        plan.Backbone.QuantizeInt8(Images(loader, cancellationToken));
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
}
