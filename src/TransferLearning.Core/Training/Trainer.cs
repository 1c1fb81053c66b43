using System.Diagnostics;
using TorchSharp.Modules;
using TransferLearning.Backbones;
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

    public Trainer(Backbone backbone, nn.Module<Tensor, Tensor> head, Device device, TrainingOptions options, Tensor? classWeights)
    {
        _backbone = backbone;
        _head = head;
        _device = device;
        _options = options;
        _classWeights = classWeights;
    }

    /// <summary>
    /// Trains for <paramref name="epochs"/> epochs, appending to <paramref name="history"/>. When
    /// <paramref name="inputsAreFeatures"/> is true the sources yield cached backbone features and only the head runs.
    /// </summary>
    /// <returns>
    /// The validation pass of the weights the head and backbone hold on return: the last epoch's, or the best epoch's
    /// when early stopping restored them; null without validation data.
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
        using var optimizer = CreateOptimizer(inputsAreFeatures, out var trainable);
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
                foreach (var group in optimizer.ParamGroups)
                {
                    group.LearningRate = rate;
                }

                var clock = Stopwatch.StartNew();
                var (loss, accuracy) = TrainEpoch(train, inputsAreFeatures, optimizer, trainable, augmentationRandom, firstEpoch + e, epochNumber, progress, cancellationToken);
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

    /// <summary>
    /// The optimizer over the head and, unless only cached features are trained, the backbone's trainable parameters
    /// only: frozen blocks get neither gradients nor optimizer state.
    /// </summary>
    internal optim.Optimizer CreateOptimizer(bool inputsAreFeatures, out IReadOnlyList<Parameter> trainable)
    {
        var parameters = _head.parameters().ToList();
        if (!inputsAreFeatures)
        {
            parameters.AddRange(_backbone.Module.parameters().Where(p => p.requires_grad));
        }

        trainable = parameters;
        return _options.Optimizer == OptimizerKind.Sgd
            ? optim.SGD(parameters, _options.LearningRate, _options.Momentum, weight_decay: _options.WeightDecay)
            : optim.Adam(parameters, _options.LearningRate, weight_decay: _options.WeightDecay);
    }

    private (double Loss, double Accuracy) TrainEpoch(
        IBatchSource source,
        bool inputsAreFeatures,
        optim.Optimizer optimizer,
        IReadOnlyList<Parameter> trainable,
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
        foreach (var batch in InScopes(source, epochIndex, cancellationToken))
        {
            var inputs = batch.Inputs.to(_device);
            var labels = batch.Labels.to(_device);
            Tensor features;
            if (inputsAreFeatures)
            {
                features = inputs;
            }
            else
            {
                inputs = Augmenter.Apply(inputs, _options.Augmentation, augmentationRandom);
                if (backboneFrozen)
                {
                    using var noGrad = no_grad();
                    features = _backbone.Forward(inputs);
                }
                else
                {
                    features = _backbone.Forward(inputs);
                }
            }

            var logits = _head.forward(features);
            var loss = nn.functional.cross_entropy(logits, labels, _classWeights);
            foreach (var p in trainable)
            {
                p.grad = null; // as PyTorch's zero_grad(set_to_none=True): backward writes fresh gradients, no zeroing and adding
            }

            loss.backward();
            optimizer.step();

            var n = (int)labels.shape[0];
            lossSum += loss.item<float>() * n;
            correct += logits.argmax(1).eq(labels).sum().item<long>();
            seen += n;
            progress?.Report(new TrainingProgress(TrainingPhase.Training, epochNumber, seen, source.Count));
        }

        return seen == 0 ? (double.NaN, double.NaN) : (lossSum / seen, (double)correct / seen);
    }

    /// <summary>Mean loss and accuracy of the current weights on a source, in inference mode.</summary>
    public (double Loss, double Accuracy) Measure(IBatchSource source, bool inputsAreFeatures, int epochNumber, IProgress<TrainingProgress>? progress, CancellationToken cancellationToken)
    {
        var pass = MeasurePass(source, inputsAreFeatures, epochNumber, progress, cancellationToken);
        return (pass.Loss, pass.Accuracy);
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
            var logits = _head.forward(inputsAreFeatures ? inputs : _backbone.Forward(inputs));
            lossSum += nn.functional.cross_entropy(logits, labels, reduction: nn.Reduction.Sum).item<float>();
            var classes = (int)logits.shape[1];
            confusion ??= new int[classes, classes];
            var predicted = logits.argmax(1).cpu().data<long>().ToArray();
            var truth = labels.cpu().data<long>().ToArray();
            for (var i = 0; i < truth.Length; i++)
            {
                confusion[truth[i], predicted[i]]++;
            }

            seen += truth.Length;
            progress?.Report(new TrainingProgress(TrainingPhase.Validating, epochNumber, seen, source.Count));
        }

        return new ValidationPass(confusion ?? new int[0, 0], lossSum, seen);
    }

    /// <summary>Runs the backbone once over every image (inference mode) and keeps the features in memory.</summary>
    public TensorBatchSource Featurize(IBatchSource images, bool shuffle, IProgress<TrainingProgress>? progress, CancellationToken cancellationToken)
    {
        _backbone.SetTrainingMode(false);
        using var noGrad = no_grad();
        var features = new List<Tensor>();
        var labels = new List<Tensor>();
        try
        {
            var seen = 0;
            foreach (var batch in InScopes(images, 0, cancellationToken))
            {
                features.Add(_backbone.Forward(batch.Inputs.to(_device)).MoveToOuterDisposeScope());
                labels.Add(batch.Labels.to(_device).MoveToOuterDisposeScope());
                seen += (int)batch.Labels.shape[0];
                progress?.Report(new TrainingProgress(TrainingPhase.Featurizing, 0, seen, images.Count));
            }

            var allFeatures = features.Count == 0 ? zeros(0, _backbone.FeatureSize, device: _device) : cat(features, 0);
            var allLabels = labels.Count == 0 ? zeros(0, ScalarType.Int64, device: _device) : cat(labels, 0);
            return new TensorBatchSource(allFeatures, allLabels, _options.BatchSize, shuffle, _options.Seed);
        }
        finally
        {
            DisposeAll(features);
            DisposeAll(labels);
        }
    }

    /// <summary>
    /// Yields the batches of an epoch, each made and used inside its own dispose scope: every tensor created while
    /// fetching or processing a batch is freed when the caller moves to the next one.
    /// </summary>
    private static IEnumerable<LabeledBatch> InScopes(IBatchSource source, int epoch, CancellationToken cancellationToken)
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

            NativeHeap.TrimThrottled(); // the batch's tensors are freed: hand their pages back (see NativeHeap)
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
            foreach (var (name, value) in _backbone.Module.state_dict())
            {
                snapshot["backbone." + name] = value.detach().clone().MoveToOuterDisposeScope();
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
