using System.Buffers;
using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using TorchSharp;
using TransferLearning.Datasets.Decoding;
using TransferLearning.Datasets.Pipeline;

namespace TransferLearning.Datasets;

/// <summary>
/// Turns an <see cref="ImageDataset"/> into batches of tensors: per-epoch seeded shuffling, parallel decoding on
/// worker threads with bounded prefetch (decoding overlaps the consumer's work), optional in-memory cache of decoded
/// images, and a bad-image policy. Every image goes through the same path as <see cref="ImageTensor"/>.
/// Tensors are created on the thread that enumerates the batches.
/// </summary>
public sealed class ImageLoader : IDisposable
{
    private readonly ImageDecodeOptions decodeOptions;
    private readonly ConcurrentDictionary<int, byte[]> cache = new();
    private readonly ConcurrentDictionary<int, string> badFiles = new();
    private int active;
    private bool disposed;

    /// <summary>Creates a loader.</summary>
    /// <param name="data">The samples.</param>
    /// <param name="spec">Input size, value range, channel order and normalisation.</param>
    /// <param name="options">Options; null for defaults.</param>
    public ImageLoader(ImageDataset data, InputSpec spec, ImageLoaderOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(spec);
        options ??= new ImageLoaderOptions();
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.BatchSize, "options.BatchSize");
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.DegreeOfParallelism, "options.DegreeOfParallelism");
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.PrefetchBatches, "options.PrefetchBatches");
        Data = data;
        Spec = spec;
        Options = new ImageLoaderOptions
        {
            BatchSize = options.BatchSize,
            Shuffle = options.Shuffle,
            Seed = options.Seed,
            DropLast = options.DropLast,
            DegreeOfParallelism = options.DegreeOfParallelism,
            PrefetchBatches = options.PrefetchBatches,
            CacheDecoded = options.CacheDecoded,
            BadImages = options.BadImages,
            Decode = options.Decode,
        };
        var baseDecode = options.Decode ?? ImageDecodeOptions.Default;
        // Parallel across images, so one thread inside each decode (unless the caller chose a configuration).
        decodeOptions = baseDecode.Configuration is not null || options.DegreeOfParallelism == 1
            ? baseDecode
            : baseDecode with { Configuration = ImageDecoding.Serial };
    }

    /// <summary>The samples.</summary>
    public ImageDataset Data { get; }

    /// <summary>The input spec every image is brought to.</summary>
    public InputSpec Spec { get; }

    /// <summary>A copy of the options in force.</summary>
    public ImageLoaderOptions Options { get; }

    /// <summary>Number of batches in one epoch when no image is skipped.</summary>
    public int BatchCount => Options.DropLast ? Data.Count / Options.BatchSize : (Data.Count + Options.BatchSize - 1) / Options.BatchSize;

    /// <summary>Number of decoded images held in the cache.</summary>
    public int CachedCount => cache.Count;

    /// <summary>Files that failed to decode and were skipped (under <see cref="BadImagePolicy.Skip"/>), ordered by path.</summary>
    public IReadOnlyList<SkippedImage> Skipped =>
        [.. badFiles.Select(kv => new SkippedImage(Data.Samples[kv.Key].Path, kv.Value)).OrderBy(s => s.Path, StringComparer.Ordinal)];

    /// <summary>The sample order of an epoch: dataset order, or a permutation seeded by (<see cref="ImageLoaderOptions.Seed"/>, epoch).</summary>
    /// <param name="epoch">The epoch.</param>
    /// <returns>Sample indices in delivery order.</returns>
    public IReadOnlyList<int> EpochOrder(int epoch)
    {
        var order = Enumerable.Range(0, Data.Count).ToArray();
        if (Options.Shuffle)
        {
            SplitMix64.ForStream(Options.Seed, epoch).Shuffle(order);
        }

        return order;
    }

    /// <summary>Enumerates the batches of one epoch on the calling thread.</summary>
    /// <param name="epoch">Epoch number (selects the shuffle).</param>
    /// <param name="cancellationToken">Stops the pass; enumeration then throws <see cref="OperationCanceledException"/>.</param>
    /// <returns>Batches; dispose each one.</returns>
    /// <exception cref="InvalidImageException">An image fails to decode under <see cref="BadImagePolicy.Fail"/>.</exception>
    public IEnumerable<ImageBatch> Batches(int epoch = 0, CancellationToken cancellationToken = default) =>
        Batches(epoch, null, cancellationToken);

    /// <summary>Enumerates the batches of one epoch on the calling thread, reporting progress.</summary>
    /// <param name="epoch">Epoch number (selects the shuffle).</param>
    /// <param name="progress">Receives a report after each batch; null for none.</param>
    /// <param name="cancellationToken">Stops the pass.</param>
    /// <returns>Batches; dispose each one.</returns>
    public IEnumerable<ImageBatch> Batches(int epoch, IProgress<LoaderProgress>? progress, CancellationToken cancellationToken = default)
    {
        using var run = Start(epoch, cancellationToken);
        for (var b = 0; b < run.BatchCount; b++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var slot = run.Slots[b];
            try
            {
                slot.Done.Task.Wait(cancellationToken);
            }
            catch (AggregateException ex) when (ex.InnerExceptions.Count == 1)
            {
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(ex.InnerExceptions[0]).Throw();
            }

            var batch = run.Take(b, progress);
            if (batch is not null)
            {
                yield return batch;
            }
        }
    }

    /// <summary>Enumerates the batches of one epoch asynchronously.</summary>
    /// <param name="epoch">Epoch number (selects the shuffle).</param>
    /// <param name="progress">Receives a report after each batch; null for none.</param>
    /// <param name="cancellationToken">Stops the pass.</param>
    /// <returns>Batches; dispose each one.</returns>
    public async IAsyncEnumerable<ImageBatch> BatchesAsync(
        int epoch = 0,
        IProgress<LoaderProgress>? progress = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        using var run = Start(epoch, cancellationToken);
        for (var b = 0; b < run.BatchCount; b++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            await run.Slots[b].Done.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
            var batch = run.Take(b, progress);
            if (batch is not null)
            {
                yield return batch;
            }
        }
    }

    /// <summary>Drops the cache.</summary>
    public void Dispose()
    {
        disposed = true;
        cache.Clear();
    }

    private Run Start(int epoch, CancellationToken ct)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        if (Interlocked.Exchange(ref active, 1) == 1)
        {
            throw new InvalidOperationException("This ImageLoader is already enumerating an epoch; finish or dispose that enumeration first.");
        }

        try
        {
            return new Run(this, epoch, ct);
        }
        catch
        {
            Volatile.Write(ref active, 0);
            throw;
        }
    }

    /// <summary>
    /// Decodes one sample into normalised float CHW values in <paramref name="destination"/>, using the cache. The file
    /// bytes and, unless they are cached, the resized RGB pixels live in pooled buffers that are back in the pool on
    /// return, so a pass leaves no per-image garbage; cached pixels get their own array.
    /// </summary>
    private void DecodeSample(int sampleIndex, Span<float> destination)
    {
        if (cache.TryGetValue(sampleIndex, out var cached))
        {
            ImageTensor.Normalize(cached, Spec, destination);
            return;
        }

        var path = Data.Samples[sampleIndex].Path;
        var size = 3 * Spec.Width * Spec.Height;
        if (Options.CacheDecoded)
        {
            var rgb = new byte[size];
            ImageTensor.DecodeFileResized(path, Spec, decodeOptions, rgb);
            ImageTensor.Normalize(rgb, Spec, destination);
            cache.TryAdd(sampleIndex, rgb);
            return;
        }

        ImageTensor.DecodeFile(path, Spec, decodeOptions, destination);
    }

    private sealed class Slot(int start, int count, int chw)
    {
        private readonly Lock gate = new();
        private float[]? data;

        public int Start { get; } = start;

        public int Count { get; } = count;

        public int Remaining = count;

        /// <summary>The batch buffer, rented when the first image of the batch is decoded.</summary>
        public float[] Buffer
        {
            get
            {
                if (Volatile.Read(ref data) is { } d)
                {
                    return d;
                }

                lock (gate)
                {
                    return data ??= ArrayPool<float>.Shared.Rent(Count * chw);
                }
            }
        }

        /// <summary>Returns the buffer to the pool (idempotent).</summary>
        public void ReleaseBuffer()
        {
            lock (gate)
            {
                if (data is { } d)
                {
                    data = null;
                    ArrayPool<float>.Shared.Return(d);
                }
            }
        }

        public string?[] Bad { get; } = new string?[count];

        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    /// <summary>One pass: worker threads pull samples in delivery order, bounded by a window of prefetched images.</summary>
    private sealed class Run : IDisposable
    {
        private readonly ImageLoader owner;
        private readonly int epoch;
        private readonly int[] order;
        private readonly int chw;
        private readonly SemaphoreSlim window;
        private readonly CancellationTokenSource cts;
        private readonly Task[] workers;
        private int next = -1;
        private volatile bool stop;
        private int delivered;
        private int deliveredBatches;
        private int skipped;

        public Run(ImageLoader owner, int epoch, CancellationToken ct)
        {
            this.owner = owner;
            this.epoch = epoch;
            var bs = owner.Options.BatchSize;
            order = [.. owner.EpochOrder(epoch)];
            var total = owner.Options.DropLast ? order.Length / bs * bs : order.Length;
            chw = 3 * owner.Spec.Width * owner.Spec.Height;
            BatchCount = (total + bs - 1) / bs;
            Total = total;
            Slots = new Slot[BatchCount];
            for (var b = 0; b < BatchCount; b++)
            {
                Slots[b] = new Slot(b * bs, Math.Min(bs, total - (b * bs)), chw);
            }

            window = new SemaphoreSlim(owner.Options.PrefetchBatches * bs);
            cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
            var n = Math.Min(owner.Options.DegreeOfParallelism, Math.Max(1, total));
            workers = new Task[n];
            for (var w = 0; w < n; w++)
            {
                workers[w] = Task.Factory.StartNew(Work, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
            }
        }

        public int BatchCount { get; }

        public int Total { get; }

        public Slot[] Slots { get; }

        /// <summary>Builds the tensors of a finished batch on the calling thread; null when every image in it was skipped.</summary>
        public ImageBatch? Take(int b, IProgress<LoaderProgress>? progress)
        {
            var slot = Slots[b];
            try
            {
                var paths = new List<string>(slot.Count);
                var labels = new List<int>(slot.Count);
                var kept = 0;
                for (var k = 0; k < slot.Count; k++)
                {
                    if (slot.Bad[k] is not null)
                    {
                        continue;
                    }

                    if (kept != k)
                    {
                        var data = slot.Buffer;
                        Array.Copy(data, k * chw, data, kept * chw, chw);
                    }

                    var sample = owner.Data.Samples[order[slot.Start + k]];
                    paths.Add(sample.Path);
                    labels.Add(sample.Label);
                    kept++;
                }

                skipped += slot.Count - kept;
                delivered += kept;
                if (kept == 0)
                {
                    return null;
                }

                deliveredBatches++;
                var images = ImageTensor.CopyToTensor(slot.Buffer, kept * chw, [kept, 3, owner.Spec.Height, owner.Spec.Width]);
                torch.Tensor? labelTensor = null;
                try
                {
                    labelTensor = torch.tensor(labels.Select(l => (long)l).ToArray(), torch.int64);
                    images.DetachFromDisposeScope();
                    labelTensor.DetachFromDisposeScope();
                    var batch = new ImageBatch(b, images, labelTensor, paths, labels);
                    progress?.Report(new LoaderProgress(epoch, deliveredBatches, delivered, Total, skipped));
                    return batch;
                }
                catch
                {
                    images.Dispose();
                    labelTensor?.Dispose();
                    throw;
                }
            }
            finally
            {
                slot.ReleaseBuffer();
                window.Release(slot.Count);
            }
        }

        public void Dispose()
        {
            stop = true;
            cts.Cancel();
            try
            {
                Task.WaitAll(workers);
            }
            catch (AggregateException)
            {
                // Workers record their own failures in the slots; nothing else to report here.
            }

            foreach (var slot in Slots)
            {
                slot.ReleaseBuffer();
            }

            cts.Dispose();
            window.Dispose();
            Volatile.Write(ref owner.active, 0);
        }

        private void Work()
        {
            var bs = owner.Options.BatchSize;
            while (!stop)
            {
                try
                {
                    window.Wait(cts.Token);
                }
                catch (OperationCanceledException)
                {
                    return;
                }

                var i = Interlocked.Increment(ref next);
                if (i >= Total || stop)
                {
                    return;
                }

                var slot = Slots[i / bs];
                var k = i - slot.Start;
                try
                {
                    var sampleIndex = order[i];
                    if (owner.badFiles.TryGetValue(sampleIndex, out var knownBad) && owner.Options.BadImages == BadImagePolicy.Skip)
                    {
                        slot.Bad[k] = knownBad;
                    }
                    else
                    {
                        owner.DecodeSample(sampleIndex, slot.Buffer.AsSpan(k * chw, chw));
                    }
                }
                catch (InvalidImageException ex) when (owner.Options.BadImages == BadImagePolicy.Skip)
                {
                    owner.badFiles[order[i]] = ex.Reason;
                    slot.Bad[k] = ex.Reason;
                }
                catch (Exception ex)
                {
                    stop = true;
                    slot.Done.TrySetException(ex);
                    return;
                }

                if (Interlocked.Decrement(ref slot.Remaining) == 0)
                {
                    slot.Done.TrySetResult();
                }
            }
        }
    }
}
