using TransferLearning.Datasets;
using TransferLearning.Datasets.Pipeline;
using static TorchSharp.torch;

namespace TransferLearning.Training;

/// <summary>A batch of inputs (images or cached features) and their labels. Owned by the caller's dispose scope.</summary>
internal readonly record struct LabeledBatch(Tensor Inputs, Tensor Labels);

/// <summary>Yields the batches of one epoch. Tensors are made inside <c>MoveNext</c>, so the caller's scope owns them.</summary>
internal interface IBatchSource
{
    int Count { get; }

    /// <summary>Images left out as unreadable so far.</summary>
    IReadOnlyList<SkippedImage> Skipped { get; }

    IEnumerable<LabeledBatch> Batches(int epoch, CancellationToken cancellationToken);
}

/// <summary>Batches of decoded images from the Datasets pipeline.</summary>
internal sealed class ImageBatchSource(ImageLoader loader, int count) : IBatchSource
{
    public int Count { get; } = count;

    public IReadOnlyList<SkippedImage> Skipped => loader.Skipped;

    public IEnumerable<LabeledBatch> Batches(int epoch, CancellationToken cancellationToken)
    {
        foreach (var batch in loader.Batches(epoch, cancellationToken))
        {
            using (batch)
            {
                yield return new LabeledBatch(ImageTensor.FromBatch(batch), ImageTensor.LabelsOf(batch));
            }
        }
    }
}

/// <summary>Batches sliced from tensors held in memory (cached features), optionally shuffled per epoch.</summary>
internal sealed class TensorBatchSource : IBatchSource, IDisposable
{
    private readonly Tensor _inputs;
    private readonly Tensor _labels;
    private readonly int _batchSize;
    private readonly bool _shuffle;
    private readonly int _seed;

    /// <summary>Takes ownership of <paramref name="inputs"/> and <paramref name="labels"/>.</summary>
    public TensorBatchSource(Tensor inputs, Tensor labels, int batchSize, bool shuffle, int seed)
    {
        _inputs = inputs;
        _labels = labels;
        _batchSize = batchSize;
        _shuffle = shuffle;
        _seed = seed;
    }

    public int Count => (int)_inputs.shape[0];

    /// <summary>The held inputs, [N, …] (owned by this source).</summary>
    public Tensor Inputs => _inputs;

    public IReadOnlyList<SkippedImage> Skipped => [];

    public IEnumerable<LabeledBatch> Batches(int epoch, CancellationToken cancellationToken)
    {
        var count = Count;
        long[] order;
        if (_shuffle)
        {
            using var generator = new Generator(SeedFor(_seed, epoch), CPU);
            using var permutation = randperm(count, generator: generator);
            order = permutation.data<long>().ToArray();
        }
        else
        {
            order = [.. Enumerable.Range(0, count).Select(i => (long)i)];
        }

        for (var start = 0; start < count; start += _batchSize)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var take = Math.Min(_batchSize, count - start);
            var index = tensor(order.AsSpan(start, take).ToArray(), device: _inputs.device);
            yield return new LabeledBatch(_inputs.index_select(0, index), _labels.index_select(0, index));
        }
    }

    /// <summary>Mixes a seed and an epoch into a generator seed (same inputs, same seed, on every machine).</summary>
    internal static ulong SeedFor(int seed, int epoch) => unchecked((ulong)((seed * 1_000_003L) + epoch + 1));

    public void Dispose()
    {
        _inputs.Dispose();
        _labels.Dispose();
    }
}

/// <summary>Cached features of several augmented views of the same images: epoch e uses view e mod the view count.</summary>
internal sealed class CachedViewsSource(IReadOnlyList<TensorBatchSource> views) : IBatchSource, IDisposable
{
    public int Count => views[0].Count;

    public int ViewCount => views.Count;

    /// <summary>The cached features of each view.</summary>
    public IReadOnlyList<TensorBatchSource> Views => views;

    public IReadOnlyList<SkippedImage> Skipped => [];

    public IEnumerable<LabeledBatch> Batches(int epoch, CancellationToken cancellationToken) =>
        views[((epoch % views.Count) + views.Count) % views.Count].Batches(epoch, cancellationToken);

    public void Dispose()
    {
        foreach (var view in views)
        {
            view.Dispose();
        }
    }
}
