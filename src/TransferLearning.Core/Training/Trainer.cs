using System.Diagnostics;
using TorchSharp.Modules;
using TransferLearning.Backbones;
using TransferLearning.Datasets;
using TransferLearning.Models;
using TransferLearning.Native;
using static TorchSharp.torch;

namespace TransferLearning.Training;

/// <summary>The training loop: epochs of optimizer steps on backbone + head, validation, history, early stopping.</summary>
internal sealed class Trainer
{
    private readonly Backbone _backbone;
    private readonly nn.Module<Tensor, Tensor> _head;
    private readonly Device _device;
    private readonly TrainingOptions _options;
    private readonly Tensor? _classWeights;
    private readonly InputSpec _spec;

    // While a fit trains the backbone in bf16 (TrainingOptions.Bf16Backbone on an unfrozen backbone): its float masters.
    private Bf16Training? _mixed;

    public Trainer(Backbone backbone, nn.Module<Tensor, Tensor> head, Device device, TrainingOptions options, Tensor? classWeights, InputSpec? spec = null)
    {
        _backbone = backbone;
        _head = head;
        _device = device;
        _options = options;
        _classWeights = classWeights;
        _spec = spec ?? backbone.InputSpec;
    }

    /// <summary>
    /// Trains for <paramref name="epochs"/> epochs, appending to <paramref name="history"/>. When
    /// <paramref name="inputsAreFeatures"/> is true the sources yield cached backbone features and only the head runs.
    /// </summary>
    /// <returns>
    /// The validation pass of the weights the head and backbone hold on return: the last epoch's, or the best epoch's
    /// when early stopping restored them (after a fit that trained the backbone in bf16, a pass of the float weights
    /// returned); null without validation data.
    /// </returns>
    public ValidationPass? Fit(
        IBatchSource train,
        IBatchSource? validation,
        bool inputsAreFeatures,
        int epochs,
        History history,
        IProgress<TrainingProgress>? progress,
        CancellationToken cancellationToken)
    {
        if (!_options.Bf16Backbone || inputsAreFeatures || _backbone.IsFrozen)
        {
            return FitEpochs(train, validation, inputsAreFeatures, epochs, history, progress, cancellationToken);
        }

        ValidationPass? pass;
        using (var mixed = new Bf16Training(_backbone))
        {
            _mixed = mixed;
            try
            {
                pass = FitEpochs(train, validation, inputsAreFeatures, epochs, history, progress, cancellationToken);
            }
            finally
            {
                _mixed = null;
            }
        }

        // The epochs' validation passes ran in bf16; the pass returned describes the float model the fit hands back.
        return pass is null || validation is null ? pass : MeasurePass(validation, inputsAreFeatures, history.Count, progress, cancellationToken);
    }

    private ValidationPass? FitEpochs(
        IBatchSource train,
        IBatchSource? validation,
        bool inputsAreFeatures,
        int epochs,
        History history,
        IProgress<TrainingProgress>? progress,
        CancellationToken cancellationToken)
    {
        var groups = ParameterGroups(inputsAreFeatures);
        using var optimizer = CreateOptimizer(groups);
        var rateFactors = groups.Select(g => g.RateFactor).ToArray();
        var trainable = groups.SelectMany(g => g.Parameters).ToList();
        using var augmentationRandom = new Generator(TensorBatchSource.SeedFor(_options.Seed, -1), CPU);

        var stopping = _options.EarlyStopping;
        var best = double.NaN;
        var bestCount = history.Count;
        var sinceBest = 0;
        Dictionary<string, Tensor>? bestWeights = null;
        ValidationPass? lastPass = null;
        ValidationPass? bestPass = null;
        var firstEpoch = history.Count;

        try
        {
            for (var e = 0; e < epochs; e++)
            {
                var epochNumber = firstEpoch + e + 1;
                var rate = _options.Schedule.RateAt(_options.LearningRate, e, epochs);
                var clock = Stopwatch.StartNew();
                var schedule = new StepRates(optimizer, rateFactors, _options, e, epochs);
                var (loss, accuracy) = TrainEpoch(train, inputsAreFeatures, optimizer, trainable, schedule, augmentationRandom, firstEpoch + e, epochNumber, progress, cancellationToken);
                lastPass = validation is { Count: > 0 }
                    ? MeasurePass(validation, inputsAreFeatures, epochNumber, progress, cancellationToken)
                    : null;
                var (valLoss, valAccuracy) = lastPass is null ? (double.NaN, double.NaN) : (lastPass.Loss, lastPass.Accuracy);
                var metrics = new EpochMetrics(epochNumber, loss, accuracy, valLoss, valAccuracy, rate, clock.Elapsed.TotalSeconds, _backbone.IsFrozen);
                history.Add(metrics);
                progress?.Report(new TrainingProgress(TrainingPhase.EpochEnd, epochNumber, train.Count, train.Count, metrics));

                if (stopping is null)
                {
                    continue;
                }

                var value = history[stopping.Monitor][^1];
                var improved = double.IsNaN(best) ||
                    (stopping.HigherIsBetter ? value > best + stopping.MinDelta : value < best - stopping.MinDelta);
                if (improved && !double.IsNaN(value))
                {
                    best = value;
                    bestCount = history.Count;
                    sinceBest = 0;
                    if (stopping.RestoreBestWeights)
                    {
                        DisposeAll(bestWeights);
                        bestWeights = Snapshot(inputsAreFeatures);
                        bestPass = lastPass;
                    }
                }
                else if (++sinceBest > stopping.Patience)
                {
                    break;
                }
            }

            if (bestWeights is not null && bestCount < history.Count)
            {
                Restore(bestWeights, inputsAreFeatures);
                return bestPass;
            }

            return lastPass;
        }
        finally
        {
            DisposeAll(bestWeights);
        }
    }

    private (double Loss, double Accuracy) TrainEpoch(
        IBatchSource source,
        bool inputsAreFeatures,
        optim.Optimizer optimizer,
        IReadOnlyList<Parameter> trainable,
        StepRates rates,
        Generator augmentationRandom,
        int epochIndex,
        int epochNumber,
        IProgress<TrainingProgress>? progress,
        CancellationToken cancellationToken)
    {
        _head.train();
        if (!inputsAreFeatures)
        {
            _backbone.SetTrainingMode(_options.UpdateBatchNormStatistics);
        }

        var backboneFrozen = _backbone.IsFrozen;
        double lossSum = 0;
        long correct = 0;
        var seen = 0;
        var backboneTraining = !inputsAreFeatures && !backboneFrozen;
        foreach (var batch in InScopes(source, epochIndex, cancellationToken, backboneTraining))
        {
            rates.Apply((double)seen / Math.Max(1, source.Count));
            var inputs = batch.Inputs.to(_device);
            var labels = batch.Labels.to(_device);
            if (!inputsAreFeatures)
            {
                inputs = Augmenter.Apply(inputs, _options.Augmentation, _spec, augmentationRandom);
            }

            foreach (var p in trainable)
            {
                p.grad = null; // as PyTorch's zero_grad(set_to_none=True): backward writes fresh gradients, no zeroing and adding
            }

            var (logits, loss) = inputsAreFeatures || backboneFrozen || _options.UpdateBatchNormStatistics
                ? WholeBatchStep(inputs, labels, inputsAreFeatures, backboneFrozen)
                : SlicedStep(inputs, labels);
            optimizer.step();
            _mixed?.CopyMastersToModule();

            var n = (int)labels.shape[0];
            lossSum += loss.item<float>() * n;
            correct += logits.argmax(1).eq(labels).sum().item<long>();
            seen += n;
            progress?.Report(new TrainingProgress(TrainingPhase.Training, epochNumber, seen, source.Count));
        }

        if (seen == 0)
        {
            throw NoTrainingImages(source.Count, source.Skipped);
        }

        return (lossSum / seen, (double)correct / seen);
    }

    /// <summary>Forward and backward over the whole batch; returns its logits and mean loss.</summary>
    internal (Tensor Logits, Tensor Loss) WholeBatchStep(Tensor inputs, Tensor labels, bool inputsAreFeatures, bool backboneFrozen)
    {
        Tensor features;
        if (inputsAreFeatures)
        {
            features = inputs;
        }
        else if (backboneFrozen)
        {
            using var noGrad = no_grad();
            features = _backbone.Forward(inputs);
        }
        else
        {
            features = BackboneForward(inputs);
        }

        var logits = _head.forward(features);
        var loss = Loss(logits, labels);
        loss.backward();
        _mixed?.AccumulateGradients();
        return (logits, loss);
    }

    /// <summary>
    /// Forward and backward in slices of <see cref="Backbone.InferenceSliceSize"/> images, gradients accumulated: the
    /// same gradients as one pass over the batch when no layer mixes images (BatchNorm in inference mode), with every
    /// activation small enough for the native heap to reuse (see <see cref="Backbone.InferenceSliceSize"/>). Each
    /// slice's loss is its summed loss divided by the whole batch's normaliser (the image count, or the sum of the
    /// labels' class weights), so the slices add up to the batch's mean loss.
    /// </summary>
    /// <returns>The batch's logits and mean loss, both detached.</returns>
    internal (Tensor Logits, Tensor Loss) SlicedStep(Tensor inputs, Tensor labels)
    {
        var count = inputs.shape[0];
        var slice = _options.TrainingSliceSize ?? Backbone.InferenceSliceSize(inputs.shape[2], inputs.shape[3]);
        using var normaliser = _classWeights is null ? tensor((float)count, device: _device) : _classWeights.index_select(0, labels).sum();
        var logits = new List<Tensor>();
        var loss = zeros(1, device: _device);
        try
        {
            for (long start = 0; start < count; start += slice)
            {
                using var scope = NewDisposeScope();
                var length = Math.Min(slice, count - start);
                var sliceLogits = _head.forward(BackboneForward(inputs.narrow(0, start, length)));
                var sliceLoss = Loss(sliceLogits, labels.narrow(0, start, length), nn.Reduction.Sum).div(normaliser);
                sliceLoss.backward();
                _mixed?.AccumulateGradients(); // into float: the slices' gradients add up in float
                logits.Add(sliceLogits.detach().MoveToOuterDisposeScope());
                loss.add_(sliceLoss.detach(), KeptScalars.One);
            }

            return (cat(logits, 0), loss);
        }
        finally
        {
            DisposeAll(logits);
        }
    }

    /// <summary>The backbone's features of float images: in bf16 while it trains so (see <see cref="Bf16Training"/>), else as it runs.</summary>
    private Tensor BackboneForward(Tensor images) => _mixed?.Forward(images) ?? _backbone.Forward(images);

    /// <summary>The error of a fit whose every training image was skipped as unreadable.</summary>
    public static InvalidDataException NoTrainingImages(int count, IReadOnlyList<SkippedImage> skipped)
    {
        var example = skipped.Count > 0 ? $" (e.g. '{skipped[0].Path}': {skipped[0].Reason})" : string.Empty;
        return new InvalidDataException(
            $"No training image could be used: all {count} were skipped as unreadable{example}. Check the image files (see TransferLearner.WithBadImages).");
    }

    /// <summary>Loss, accuracy and confusion matrix of the current weights on a source, in inference mode.</summary>
    public ValidationPass MeasurePass(IBatchSource source, bool inputsAreFeatures, int epochNumber, IProgress<TrainingProgress>? progress, CancellationToken cancellationToken)
    {
        _head.eval();
        _backbone.SetTrainingMode(false);
        using var noGrad = no_grad();
        double lossSum = 0;
        int[,]? confusion = null;
        var seen = 0;
        foreach (var batch in InScopes(source, 0, cancellationToken))
        {
            var inputs = batch.Inputs.to(_device);
            var labels = batch.Labels.to(_device);
            var logits = _head.forward(inputsAreFeatures ? inputs : BackboneForward(inputs));
            lossSum += nn.functional.cross_entropy(logits, labels, reduction: nn.Reduction.Sum).item<float>();
            var classes = (int)logits.shape[1];
            confusion ??= new int[classes, classes];
            seen += Evaluation.AddToConfusion(confusion, logits, labels);
            progress?.Report(new TrainingProgress(TrainingPhase.Validating, epochNumber, seen, source.Count));
        }

        return new ValidationPass(confusion ?? new int[0, 0], lossSum, seen);
    }

    /// <summary>
    /// Runs the backbone once over every image (inference mode) and keeps the features in memory; with an
    /// augmentation, over augmented images (one cached view, drawn from <paramref name="augmentationRandom"/>).
    /// </summary>
    public TensorBatchSource Featurize(
        IBatchSource images,
        bool shuffle,
        IProgress<TrainingProgress>? progress,
        CancellationToken cancellationToken,
        Augmentation? augmentation = null,
        Generator? augmentationRandom = null)
    {
        _backbone.SetTrainingMode(false);
        using var noGrad = no_grad();

        // One block for all features and labels, filled batch by batch: small tensors kept per batch, between the
        // batches' large short-lived ones, fragmented the native heap (it grew ~37 MB a batch until trimmed, and every
        // trimmed page was faulted in again).
        Tensor? allFeatures = null;
        var allLabels = empty(images.Count, ScalarType.Int64, device: _device);
        try
        {
            var seen = 0;
            foreach (var batch in InScopes(images, 0, cancellationToken))
            {
                var inputs = batch.Inputs.to(_device);
                if (augmentation is not null && augmentationRandom is not null)
                {
                    inputs = Augmenter.Apply(inputs, augmentation, _spec, augmentationRandom);
                }

                var features = _backbone.Forward(inputs);
                var n = features.shape[0];
                allFeatures ??= empty([images.Count, .. features.shape[1..]], features.dtype, _device).DetachFromDisposeScope();

                allFeatures.narrow(0, seen, n).copy_(features);
                allLabels.narrow(0, seen, n).copy_(batch.Labels);
                seen += (int)n;
                progress?.Report(new TrainingProgress(TrainingPhase.Featurizing, 0, seen, images.Count));
            }

            allFeatures ??= zeros(images.Count, _backbone.FeatureSize, device: _device);
            if (seen == images.Count)
            {
                return new TensorBatchSource(allFeatures, allLabels, _options.BatchSize, shuffle, _options.Seed);
            }

            // Skipped images: keep only the rows filled.
            using (allFeatures)
            using (allLabels)
            using (var keptFeatures = allFeatures.narrow(0, 0, seen))
            using (var keptLabels = allLabels.narrow(0, 0, seen))
            {
                return new TensorBatchSource(keptFeatures.clone(), keptLabels.clone(), _options.BatchSize, shuffle, _options.Seed);
            }
        }
        catch
        {
            allFeatures?.Dispose();
            allLabels.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The trained parameters in groups with their learning-rate factor: the head at 1, and, when the backbone trains,
    /// its trainable blocks from the first (factor <see cref="TrainingOptions.LowestBlockRateFactor"/>) to the last
    /// (factor 1) on a geometric scale; backbone parameters outside any block at 1.
    /// </summary>
    internal List<(List<Parameter> Parameters, double RateFactor)> ParameterGroups(bool headOnly)
    {
        var groups = new List<(List<Parameter>, double)> { (_head.parameters().ToList(), 1.0) };
        if (headOnly)
        {
            return groups;
        }

        var blocks = _backbone.BlockModules
            .Select(b => b.parameters().Where(p => p.requires_grad).ToList())
            .Where(ps => ps.Count > 0)
            .ToList();
        var inBlocks = blocks.SelectMany(ps => ps).ToHashSet(ReferenceEqualityComparer.Instance);
        var rest = _backbone.Module.parameters().Where(p => p.requires_grad && !inBlocks.Contains(p)).ToList();
        for (var i = 0; i < blocks.Count; i++)
        {
            var depth = blocks.Count == 1 ? 1.0 : (double)i / (blocks.Count - 1);
            groups.Add((blocks[i], Math.Pow(_options.LowestBlockRateFactor, 1 - depth)));
        }

        if (rest.Count > 0)
        {
            groups.Add((rest, 1.0));
        }

        // Training in bf16: the optimizer updates the float masters (the head has none and stays as it is).
        return _mixed is { } mixed ? groups.Select(g => (g.Item1.Select(mixed.MasterOf).ToList(), g.Item2)).ToList() : groups;
    }

    /// <summary>The training loss: cross-entropy with the class weights and label smoothing in force (mean over the batch, or summed).</summary>
    internal Tensor Loss(Tensor logits, Tensor labels, nn.Reduction reduction = nn.Reduction.Mean) =>
        nn.functional.cross_entropy(logits, labels, _classWeights, reduction: reduction, label_smoothing: _options.LabelSmoothing);

    /// <summary>
    /// The optimizer over <paramref name="groups"/> (from <see cref="ParameterGroups"/>: the head and the backbone's
    /// trainable parameters only, so frozen blocks get neither gradients nor optimizer state), each group at its rate.
    /// </summary>
    internal optim.Optimizer CreateOptimizer(List<(List<Parameter> Parameters, double RateFactor)> groups)
    {
        var o = _options;
        return o.Optimizer switch
        {
            OptimizerKind.Sgd => optim.SGD(groups.Select(g => new SGD.ParamGroup(g.Parameters, o.LearningRate * g.RateFactor, o.Momentum, 0, o.WeightDecay, false, false)), o.LearningRate, o.Momentum, weight_decay: o.WeightDecay),
            OptimizerKind.AdamW => optim.AdamW(groups.Select(g => new AdamW.ParamGroup(g.Parameters, o.LearningRate * g.RateFactor, 0.9, 0.999, 1e-8, o.WeightDecay, false, false)), o.LearningRate, weight_decay: o.WeightDecay),
            _ => optim.Adam(groups.Select(g => new Adam.ParamGroup(g.Parameters, o.LearningRate * g.RateFactor, 0.9, 0.999, 1e-8, o.WeightDecay, false, false)), o.LearningRate, weight_decay: o.WeightDecay),
        };
    }

    /// <summary>Sets every parameter group's rate for a point of the epoch (the schedule times the group's factor).</summary>
    internal sealed class StepRates(optim.Optimizer optimizer, double[] factors, TrainingOptions options, int epoch, int epochs)
    {
        public void Apply(double fractionOfEpoch)
        {
            var rate = options.Schedule.RateAt(options.LearningRate, epoch + fractionOfEpoch, epochs);
            var i = 0;
            foreach (var group in optimizer.ParamGroups)
            {
                group.LearningRate = rate * factors[Math.Min(i++, factors.Length - 1)];
            }
        }
    }

    /// <summary>
    /// Yields the batches of an epoch, each made and used inside its own dispose scope: every tensor created while
    /// fetching or processing a batch is freed when the caller moves to the next one.
    /// </summary>
    private static IEnumerable<LabeledBatch> InScopes(IBatchSource source, int epoch, CancellationToken cancellationToken, bool backboneTraining = false)
    {
        using var batches = source.Batches(epoch, cancellationToken).GetEnumerator();
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            using (var scope = NewDisposeScope())
            {
                if (!batches.MoveNext())
                {
                    yield break;
                }

                yield return batches.Current;
            }

            NativeHeap.TrimThrottled(backboneTraining); // the batch's tensors are freed: hand their pages back (see NativeHeap)
        }
    }

    private Dictionary<string, Tensor> Snapshot(bool headOnly)
    {
        using var scope = NewDisposeScope();
        var snapshot = new Dictionary<string, Tensor>();
        foreach (var (name, value) in _head.state_dict())
        {
            snapshot["head." + name] = value.detach().clone().MoveToOuterDisposeScope();
        }

        if (!headOnly && !_backbone.IsFrozen)
        {
            var backbone = _mixed?.FloatStateDict() ?? _backbone.Module.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone());
            foreach (var (name, value) in backbone)
            {
                snapshot["backbone." + name] = value.MoveToOuterDisposeScope();
            }
        }

        return snapshot;
    }

    private void Restore(Dictionary<string, Tensor> snapshot, bool headOnly)
    {
        using var noGrad = no_grad();
        foreach (var (name, value) in _head.state_dict())
        {
            value.copy_(snapshot["head." + name]);
        }

        if (!headOnly && snapshot.Keys.Any(k => k.StartsWith("backbone.", StringComparison.Ordinal)))
        {
            if (_mixed is { } mixed)
            {
                mixed.LoadFloatStateDict(_backbone.Module.state_dict().Keys.ToDictionary(name => name, name => snapshot["backbone." + name], StringComparer.Ordinal));
                return;
            }

            foreach (var (name, value) in _backbone.Module.state_dict())
            {
                value.copy_(snapshot["backbone." + name]);
            }
        }
    }

    private static void DisposeAll(IEnumerable<Tensor>? tensors)
    {
        foreach (var t in tensors ?? [])
        {
            t.Dispose();
        }
    }

    private static void DisposeAll(Dictionary<string, Tensor>? tensors) => DisposeAll(tensors?.Values);
}

/// <summary>One pass over validation data: the confusion matrix (row = true class, column = predicted) and summed loss.</summary>
internal sealed class ValidationPass(int[,] confusion, double lossSum, int count)
{
    public int[,] Confusion { get; } = confusion;

    public double LossSum { get; } = lossSum;

    public int Count { get; } = count;

    public double Loss => Count == 0 ? double.NaN : LossSum / Count;

    public double Accuracy
    {
        get
        {
            if (Count == 0)
            {
                return double.NaN;
            }

            long correct = 0;
            for (var i = 0; i < Confusion.GetLength(0); i++)
            {
                correct += Confusion[i, i];
            }

            return (double)correct / Count;
        }
    }
}
