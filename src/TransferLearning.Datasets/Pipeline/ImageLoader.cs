using System.Buffers;
using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using TransferLearning.Datasets.Decoding;

namespace TransferLearning.Datasets.Pipeline;

/// <summary>
/// Turns an <see cref="ImageDataset"/> into batches of normalised pixels: per-epoch seeded shuffling, parallel decoding
/// on worker threads with bounded prefetch (decoding overlaps the consumer's work), optional in-memory cache of decoded
/// images, and a bad-image policy. Every image goes through <see cref="ImagePixels"/>, the one decode path.
/// </summary>
public sealed class ImageLoader : IDisposable
{
    private readonly ImageLoaderOptions _options;
    private readonly ImageDecodeOptions _decodeOptions;
    private readonly ConcurrentDictionary<int, byte[]> _cache = new();
    private readonly ConcurrentDictionary<int, string> _badFiles = new();
    private int _active;
    private bool _disposed;

    /// <summary>Creates a loader.</summary>
    /// <param name="data">The samples.</param>
    /// <param name="spec">Input size, value range, channel order and normalisation.</param>
    /// <param name="options">Options; null for defaults.</param>
    public ImageLoader(ImageDataset data, InputSpec spec, ImageLoaderOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(spec);
        Data = data;
        Spec = spec;
        _options = (options ?? new ImageLoaderOptions()).Clone();
        var batchValues = (long)_options.BatchSize * 3 * spec.Width * spec.Height;
        if (batchValues > Array.MaxLength)
        {
            throw new ArgumentOutOfRangeException(
                "options.BatchSize",
                _options.BatchSize,
                $"A batch of {_options.BatchSize:N0} images of 3 × {spec.Height} × {spec.Width} values needs {batchValues:N0} floats, more than one " +
                $"array can hold ({Array.MaxLength:N0}); use a smaller batch size (at most {Array.MaxLength / (3L * spec.Width * spec.Height):N0}).");
        }

        var decode = _options.Decode?.Clone() ?? new ImageDecodeOptions();
        if (decode.Configuration is null && _options.DegreeOfParallelism > 1)
        {
            // Parallel across images, so one thread inside each decode (unless the caller chose a configuration).
            decode.Configuration = ImageDecoding.Serial;
        }

        _decodeOptions = decode;
    }

    /// <summary>The samples.</summary>
    public ImageDataset Data { get; }

    /// <summary>The input spec every image is brought to.</summary>
    public InputSpec Spec { get; }

    /// <summary>A copy of the options in force (changing it does not change the loader).</summary>
    public ImageLoaderOptions Options => _options.Clone();

    /// <summary>Number of batches in one epoch when no image is skipped.</summary>
    public int BatchCount => _options.DropLast ? Data.Count / _options.BatchSize : (Data.Count + _options.BatchSize - 1) / _options.BatchSize;

    /// <summary>Number of decoded images held in the cache.</summary>
    public int CachedCount => _cache.Count;

    /// <summary>Files that failed to decode and were skipped (under <see cref="BadImagePolicy.Skip"/>), ordered by path.</summary>
    public IReadOnlyList<SkippedImage> Skipped =>
        [.. _badFiles.Select(kv => new SkippedImage(Data.Samples[kv.Key].Path, kv.Value)).OrderBy(s => s.Path, StringComparer.Ordinal)];

    /// <summary>The sample order of an epoch: dataset order, or a permutation seeded by (<see cref="ImageLoaderOptions.Seed"/>, epoch).</summary>
    /// <param name="epoch">The epoch.</param>
    /// <returns>Sample indices in delivery order.</returns>
    public IReadOnlyList<int> EpochOrder(int epoch)
    {
        var order = Enumerable.Range(0, Data.Count).ToArray();
        if (_options.Shuffle)
        {
            SplitMix64.ForStream(_options.Seed, epoch).Shuffle(order);
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
        _disposed = true;
        _cache.Clear();
    }

    private Run Start(int epoch, CancellationToken ct)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (Interlocked.Exchange(ref _active, 1) == 1)
        {
            throw new InvalidOperationException("This ImageLoader is already enumerating an epoch; finish or dispose that enumeration first.");
        }

        try
        {
            return new Run(this, epoch, ct);
        }
        catch
        {
            Volatile.Write(ref _active, 0);
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
        if (_cache.TryGetValue(sampleIndex, out var cached))
        {
            Normalize(cached, destination);
            return;
        }

        var path = Data.Samples[sampleIndex].Path;
        var size = 3 * Spec.Width * Spec.Height;
        if (_options.CacheDecoded)
        {
            var rgb = new byte[size];
            ImagePixels.DecodeFile(path, Spec, rgb, _decodeOptions);
            Normalize(rgb, destination);
            _cache.TryAdd(sampleIndex, rgb);
            return;
        }

        if (_options.ChannelsLast)
        {
            ImagePixels.DecodeFileChannelsLast(path, Spec, destination, _decodeOptions);
        }
        else
        {
            ImagePixels.DecodeFile(path, Spec, destination, _decodeOptions);
        }
    }

    private void Normalize(ReadOnlySpan<byte> rgb, Span<float> destination)
    {
        if (_options.ChannelsLast)
        {
            ImagePixels.NormalizeChannelsLast(rgb, Spec, destination);
        }
        else
        {
            ImagePixels.Normalize(rgb, Spec, destination);
        }
    }

    private sealed class Slot(int start, int count, int chw)
    {
        private readonly Lock _gate = new();
        private float[]? _data;

        public int Start { get; } = start;

        public int Count { get; } = count;

        public int Remaining = count;

        /// <summary>The batch buffer, rented when the first image of the batch is decoded.</summary>
        public float[] Buffer
        {
            get
            {
                if (Volatile.Read(ref _data) is { } d)
                {
                    return d;
                }

                lock (_gate)
                {
                    return _data ??= ArrayPool<float>.Shared.Rent(Count * chw);
                }
            }
        }

        /// <summary>Hands the buffer to a batch, which returns it to the pool when disposed.</summary>
        public float[] DetachBuffer()
        {
            lock (_gate)
            {
                var d = _data ?? throw new InvalidOperationException("The batch buffer was never filled.");
                _data = null;
                return d;
            }
        }

        /// <summary>Returns the buffer to the pool (idempotent).</summary>
        public void ReleaseBuffer()
        {
            lock (_gate)
            {
                if (_data is { } d)
                {
                    _data = null;
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
        private readonly ImageLoader _owner;
        private readonly int _epoch;
        private readonly int[] _order;
        private readonly int _chw;
        private readonly SemaphoreSlim _window;
        private readonly CancellationTokenSource _cts;
        private readonly Task[] _workers;
        private int _next = -1;
        private volatile bool _stop;
        private int _delivered;
        private int _deliveredBatches;
        private int _skipped;

        public Run(ImageLoader owner, int epoch, CancellationToken ct)
        {
            _owner = owner;
            _epoch = epoch;
            var bs = owner._options.BatchSize;
            _order = [.. owner.EpochOrder(epoch)];
            var total = owner._options.DropLast ? _order.Length / bs * bs : _order.Length;
            _chw = 3 * owner.Spec.Width * owner.Spec.Height;
            BatchCount = (total + bs - 1) / bs;
            Total = total;
            Slots = new Slot[BatchCount];
            for (var b = 0; b < BatchCount; b++)
            {
                Slots[b] = new Slot(b * bs, Math.Min(bs, total - (b * bs)), _chw);
            }

            // Images decoded ahead of the consumer; no more than the pass has (and no int overflow for huge batch sizes).
            _window = new SemaphoreSlim((int)Math.Clamp((long)owner._options.PrefetchBatches * bs, 1, Math.Max(1, total)));
            _cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
            var n = Math.Min(owner._options.DegreeOfParallelism, Math.Max(1, total));
            _workers = new Task[n];
            for (var w = 0; w < n; w++)
            {
                _workers[w] = Task.Factory.StartNew(Work, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
            }
        }

        public int BatchCount { get; }

        public int Total { get; }

        public Slot[] Slots { get; }

        /// <summary>Hands a finished batch to the caller; null when every image in it was skipped.</summary>
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
                        Array.Copy(data, k * _chw, data, kept * _chw, _chw);
                    }

                    var sample = _owner.Data.Samples[_order[slot.Start + k]];
                    paths.Add(sample.Path);
                    labels.Add(sample.Label);
                    kept++;
                }

                _skipped += slot.Count - kept;
                _delivered += kept;
                if (kept == 0)
                {
                    return null;
                }

                _deliveredBatches++;
                var batch = new ImageBatch(b, slot.DetachBuffer(), kept, _owner.Spec.Width, _owner.Spec.Height, paths, labels, _owner._options.ChannelsLast);
                progress?.Report(new LoaderProgress(_epoch, _deliveredBatches, _delivered, Total, _skipped));
                return batch;
            }
            finally
            {
                slot.ReleaseBuffer();
                _window.Release(slot.Count);
            }
        }

        public void Dispose()
        {
            _stop = true;
            _cts.Cancel();
            try
            {
                Task.WaitAll(_workers);
            }
            catch (AggregateException)
            {
                // Workers record their own failures in the slots; nothing else to report here.
            }

            foreach (var slot in Slots)
            {
                slot.ReleaseBuffer();
            }

            _cts.Dispose();
            _window.Dispose();
            Volatile.Write(ref _owner._active, 0);
        }

        private void Work()
        {
            var bs = _owner._options.BatchSize;
            while (!_stop)
            {
                try
                {
                    _window.Wait(_cts.Token);
                }
                catch (OperationCanceledException)
                {
                    return;
                }

                var i = Interlocked.Increment(ref _next);
                if (i >= Total || _stop)
                {
                    return;
                }

                var slot = Slots[i / bs];
                var k = i - slot.Start;
                try
                {
                    var sampleIndex = _order[i];
                    if (_owner._badFiles.TryGetValue(sampleIndex, out var knownBad) && _owner._options.BadImages == BadImagePolicy.Skip)
                    {
                        slot.Bad[k] = knownBad;
                    }
                    else
                    {
                        _owner.DecodeSample(sampleIndex, slot.Buffer.AsSpan(k * _chw, _chw));
                    }
                }
                catch (InvalidImageException ex) when (_owner._options.BadImages == BadImagePolicy.Skip)
                {
                    _owner._badFiles[_order[i]] = ex.Reason;
                    slot.Bad[k] = ex.Reason;
                }
                catch (Exception ex)
                {
                    _stop = true;
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
