using TransferLearning.Backbones.Onnx;
using TransferLearning.Backbones.Onnx.Export;
using TransferLearning.Backbones.TorchVision;
using TransferLearning.Datasets;
using static TorchSharp.torch;

namespace TransferLearning.Backbones;

/// <summary>
/// A pretrained network cut at its pooled feature vector: a TorchSharp module mapping a float batch
/// <c>[N, 3, H, W]</c> (prepared as <see cref="InputSpec"/> says) to features <c>[N, FeatureSize]</c>.
/// Its top-level child modules, in forward order, are its <see cref="Blocks"/>; freezing works per block.
/// </summary>
/// <remarks>The backbone owns its module and the native memory behind it; dispose it (or the model that took it).</remarks>
public sealed class Backbone : IDisposable
{
    private readonly List<(string Name, nn.Module Module)> _blocks;
    private int _firstTrainableBlock;
    private bool _disposed;

    // For a network that is not an ONNX graph (torchvision, TF.js): its own ONNX export, imported again, which runs in
    // int8 while the network's weights stay frozen. Made on the first QuantizeInt8/EnableInt8, dropped by Unfreeze.
    private OnnxGraphModule? _int8Graph;

    // The network's ONNX form in bf16 (weights folded in float, then rounded), while EnableBf16 is on.
    private OnnxGraphModule? _bf16Graph;

    /// <summary>Wraps a TorchSharp module as a backbone.</summary>
    /// <param name="source">Where it came from (URL, path or short name); recorded in saved models.</param>
    /// <param name="module">Module mapping <c>[N, 3, H, W]</c> to <c>[N, featureSize]</c>. The backbone takes ownership.</param>
    /// <param name="featureSize">Length of the feature vector.</param>
    /// <param name="inputSpec">How images must be prepared for this module.</param>
    public Backbone(string source, nn.Module<Tensor, Tensor> module, int featureSize, InputSpec inputSpec)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(source);
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(inputSpec);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(featureSize);
        Source = source;
        Module = module;
        FeatureSize = featureSize;
        InputSpec = inputSpec;
        _blocks = module.named_children().Select(c => (c.name, c.module)).ToList();
    }

    /// <summary>Where the backbone came from (URL, path or short name).</summary>
    public string Source { get; }

    /// <summary>The network: <c>[N, 3, H, W]</c> → <c>[N, FeatureSize]</c>.</summary>
    public nn.Module<Tensor, Tensor> Module { get; }

    /// <summary>Length of the feature vector.</summary>
    public int FeatureSize { get; }

    /// <summary>How images must be prepared for this network.</summary>
    public InputSpec InputSpec { get; }

    /// <summary>
    /// True when the network only accepts <see cref="InputSpec"/>'s exact size (e.g. a graph with a fixed mean image);
    /// false when any size of at least 32 pixels works (convolutions followed by global pooling).
    /// </summary>
    public bool FixedInputSize { get; init; }

    /// <summary>
    /// How a saved model rebuilds this network without its source: what the module says about itself when it can (ONNX
    /// graphs, torchvision architectures, TF.js networks); null for any other module.
    /// </summary>
    internal BackboneArchitecture? Architecture => (Module as IRebuildableModule)?.Describe(this);

    /// <summary>The top-level blocks' modules in forward order (for per-block learning rates).</summary>
    internal IReadOnlyList<nn.Module> BlockModules => _blocks.Select(b => b.Module).ToList();

    /// <summary>Names of the top-level blocks in forward order (what <see cref="Unfreeze(string)"/> accepts).</summary>
    public IReadOnlyList<string> Blocks => _blocks.Select(b => b.Name).ToList();

    /// <summary>True when no parameter of the backbone is trainable.</summary>
    public bool IsFrozen => !Module.parameters().Any(p => p.requires_grad);

    /// <summary>Freezes every weight: no gradients, BatchNorm in inference mode (as Keras's <c>trainable = False</c>).</summary>
    public void Freeze()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        foreach (var p in Module.parameters())
        {
            p.requires_grad = false;
        }

        _firstTrainableBlock = _blocks.Count;
        BatchNormFolding.Invalidate(Module); // folded again from the current weights at the next forward
    }

    /// <summary>Makes every weight trainable.</summary>
    public void Unfreeze() => Unfreeze(0);

    /// <summary>Makes the blocks from <paramref name="fromBlock"/> (inclusive) to the end trainable; earlier blocks stay frozen.</summary>
    /// <param name="fromBlock">Index into <see cref="Blocks"/> (0 unfreezes everything).</param>
    public void Unfreeze(int fromBlock)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (fromBlock < 0 || (fromBlock > 0 && fromBlock >= _blocks.Count))
        {
            throw new ArgumentOutOfRangeException(
                nameof(fromBlock), fromBlock, $"The backbone has {_blocks.Count} blocks; give an index from 0 to {Math.Max(0, _blocks.Count - 1)}.");
        }

        (Module as IInt8Module)?.DisableInt8(); // trainable weights run in float
        _int8Graph?.Dispose();
        _int8Graph = null;
        _bf16Graph?.Dispose();
        _bf16Graph = null;
        BatchNormFolding.Invalidate(Module); // trainable pairs fold on every forward, with gradients
        for (var i = 0; i < _blocks.Count; i++)
        {
            foreach (var p in _blocks[i].Module.parameters())
            {
                p.requires_grad = i >= fromBlock;
            }
        }

        if (_blocks.Count == 0)
        {
            foreach (var p in Module.parameters())
            {
                p.requires_grad = true;
            }
        }

        _firstTrainableBlock = fromBlock;
    }

    /// <summary>Makes the blocks from the one named <paramref name="fromBlock"/> to the end trainable.</summary>
    /// <param name="fromBlock">A name from <see cref="Blocks"/>.</param>
    public void Unfreeze(string fromBlock)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(fromBlock);
        var index = _blocks.FindIndex(b => b.Name == fromBlock);
        if (index < 0)
        {
            throw new ArgumentException(
                $"The backbone has no block named '{fromBlock}'. Its blocks are: {string.Join(", ", _blocks.Select(b => b.Name))}.", nameof(fromBlock));
        }

        Unfreeze(index);
    }

    /// <summary>Sets training or inference mode; frozen blocks always stay in inference mode.</summary>
    /// <param name="training">True for training mode.</param>
    public void SetTrainingMode(bool training)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!training || IsFrozen)
        {
            Module.eval();
            return;
        }

        Module.train();
        for (var i = 0; i < _firstTrainableBlock && i < _blocks.Count; i++)
        {
            _blocks[i].Module.eval();
        }
    }

    /// <summary>
    /// Whether <see cref="QuantizeInt8"/> works for this backbone: every backbone loaded from ONNX, torchvision checkpoints
    /// or TF.js layers models (not a module wrapped by hand).
    /// </summary>
    public bool SupportsInt8 => Module is IInt8Module or IOnnxExportable;

    /// <summary>True while inference runs in int8 (after <see cref="QuantizeInt8"/>, until <see cref="Unfreeze()"/>).</summary>
    public bool IsInt8 => Int8Module?.Int8Parameters is not null;

    /// <summary>
    /// Switches inference to int8: weights quantized per output channel, activations per tensor with ranges observed on
    /// <paramref name="calibrationBatches"/> (prepared as <see cref="InputSpec"/> says; a few batches of real images).
    /// Convolutions (depthwise included, with BatchNorm folded and ReLU/ReLU6 fused), additions, ReLU, HardSwish, zero
    /// padding and max pooling then run on 8-bit tensors (LibTorch's x86 kernels); the rest (sigmoid, squeeze-excitation
    /// products, pooling) in float. A torchvision or TF.js network runs as its ONNX export in int8. The backbone must be
    /// frozen; <see cref="Unfreeze()"/> returns to float.
    /// </summary>
    /// <param name="calibrationBatches">Image batches <c>[N, 3, H, W]</c>.</param>
    /// <exception cref="NotSupportedException">The network has no ONNX form (a module wrapped by hand, or a layer the export cannot write).</exception>
    /// <exception cref="InvalidOperationException">The backbone is not frozen.</exception>
    public void QuantizeInt8(IEnumerable<Tensor> calibrationBatches)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(calibrationBatches);
        var graph = Int8Graph();
        graph.DisableInt8();
        SetTrainingMode(false);
        graph.EnableInt8(graph.Calibrate(InSlices(calibrationBatches), ChannelsLast));
    }

    /// <summary>
    /// Each batch as views of <see cref="InferenceSliceSize"/> images: calibration runs the float graph, whose activations
    /// for whole batches exceed the native heap's mmap threshold and were mapped, faulted in and unmapped for every
    /// convolution (observing 64 flower photos in a fit took 3.8 s in batches of 32, 2.7 s in slices of 8).
    /// </summary>
    private static IEnumerable<Tensor> InSlices(IEnumerable<Tensor> batches)
    {
        foreach (var batch in batches)
        {
            var slice = batch.dim() == 4 ? InferenceSliceSize(batch.shape[2], batch.shape[3]) : int.MaxValue;
            if (batch.shape[0] <= slice)
            {
                yield return batch;
                continue;
            }

            for (long start = 0; start < batch.shape[0]; start += slice)
            {
                using var part = batch.narrow(0, start, Math.Min(slice, batch.shape[0] - start));
                yield return part;
            }
        }
    }

    /// <summary>The int8 parameters in use (saved with a model), or null when running in float.</summary>
    internal Int8Parameters? Int8Parameters => Int8Module?.Int8Parameters;

    /// <summary>The module that runs int8 (the network itself, or its re-imported ONNX export), if there is one yet.</summary>
    internal IInt8Module? Int8Module => Module as IInt8Module ?? _int8Graph;

    /// <summary>Switches to int8 with saved parameters.</summary>
    internal void EnableInt8(Int8Parameters parameters)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var graph = Int8Graph();
        SetTrainingMode(false);
        graph.EnableInt8(parameters);
    }

    private IInt8Module Int8Graph()
    {
        if (Module is not (IInt8Module or IOnnxExportable))
        {
            throw new NotSupportedException(
                $"Int8 inference is available for backbones loaded from ONNX (such as 'resnet18'), torchvision checkpoints or TF.js layers models; '{Source}' is a {Module.GetType().Name} wrapped by hand.");
        }

        if (!IsFrozen)
        {
            throw new InvalidOperationException($"Int8 inference needs a frozen backbone: call Freeze() first ('{Source}' has trainable weights).");
        }

        if (IsBf16)
        {
            throw new InvalidOperationException($"The backbone '{Source}' runs in bf16; use int8 or bf16, not both.");
        }

        if (Module is IInt8Module graph)
        {
            return graph;
        }

        if (_int8Graph is null)
        {
            // The network's own ONNX form (its current weights) imported as a graph with frozen weights: the same
            // computation, which the int8 lowering knows. Names are deterministic, so saved activation scales match it.
            var exported = OnnxBackboneExport.ToModel(this);
            var imported = new OnnxGraphModule(exported, Source, weightsTrainable: false) { FlattenOutput = true };
            imported.eval();
            _int8Graph = imported;
        }

        return _int8Graph;
    }

    /// <summary>True while inference runs in bf16 (after <see cref="EnableBf16"/>, until <see cref="Unfreeze()"/>).</summary>
    public bool IsBf16 => _bf16Graph is not null;

    /// <summary>
    /// Runs inference in bfloat16 on CPUs with native bf16 kernels (AVX-512 BF16 or AMX): a copy of the network with its
    /// weights (BatchNorm folded in float) rounded to bf16; features come back as float. The backbone must be frozen and
    /// support the ONNX export (every loaded family does); <see cref="Unfreeze()"/> returns to float.
    /// </summary>
    /// <exception cref="NotSupportedException">
    /// This CPU has no native bf16 kernels (the message names the missing CPU feature or the oneDNN cap), or the network
    /// has no ONNX form.
    /// </exception>
    /// <exception cref="InvalidOperationException">The backbone is not frozen, or runs in int8.</exception>
    public void EnableBf16()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (Bf16Kernels.Unavailable is { } reason)
        {
            throw new NotSupportedException($"Bf16 inference is not available on this machine: {reason}");
        }

        EnableBf16Unchecked();
    }

    /// <summary><see cref="EnableBf16"/> without the CPU check (tests compare bf16 with float on any CPU, slowly).</summary>
    internal void EnableBf16Unchecked()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (Module is not IOnnxExportable)
        {
            throw new NotSupportedException(
                $"Bf16 inference is available for backbones loaded from ONNX (such as 'resnet18'), torchvision checkpoints or TF.js layers models; '{Source}' is a {Module.GetType().Name} wrapped by hand.");
        }

        if (!IsFrozen)
        {
            throw new InvalidOperationException($"Bf16 inference needs a frozen backbone: call Freeze() first ('{Source}' has trainable weights).");
        }

        if (IsInt8)
        {
            throw new InvalidOperationException($"The backbone '{Source}' runs in int8; use int8 or bf16, not both.");
        }

        if (_bf16Graph is null)
        {
            var exported = OnnxBackboneExport.ToModel(this);
            var imported = new OnnxGraphModule(exported, Source, weightsTrainable: false, floatType: ScalarType.BFloat16) { FlattenOutput = true };
            imported.eval();
            _bf16Graph = imported;
        }

        SetTrainingMode(false);
    }

    private static Tensor ChannelsLast(Tensor images) =>
        images.dim() == 4 ? images.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2) : images;

    /// <summary>Runs the network on a prepared batch.</summary>
    /// <param name="images">Float tensor <c>[N, 3, H, W]</c>.</param>
    /// <returns>Features <c>[N, FeatureSize]</c>.</returns>
    /// <remarks>
    /// In inference (evaluation mode, no gradients recorded) a large batch runs in slices of
    /// <see cref="InferenceSliceSize"/> images, each in its own dispose scope: the features are the same, and every
    /// activation stays small enough for the native heap to reuse its memory from slice to slice (see
    /// <see cref="InferenceSliceSize"/>). The first call sets the native heap's parameters for such activations
    /// (once per process, glibc only, unless <c>GLIBC_TUNABLES</c> sets malloc parameters; see
    /// <c>NativeHeap.ConfigureAllocator</c>): memory freed by inference then stays with the process up to 1 GB.
    /// </remarks>
    public Tensor Forward(Tensor images)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(images);
        Training.NativeHeap.ConfigureAllocator();
        if (images.dim() != 4)
        {
            return Module.forward(images);
        }

        var slice = InferenceSliceSize(images.shape[2], images.shape[3]);
        if (Module.training || is_grad_enabled() || images.shape[0] <= slice)
        {
            return ForwardWhole(images);
        }

        var parts = images.split(slice);
        var features = new List<Tensor>();
        try
        {
            foreach (var part in parts)
            {
                using var scope = NewDisposeScope();
                features.Add(ForwardWhole(part).MoveToOuterDisposeScope());
            }

            return cat(features, 0);
        }
        finally
        {
            foreach (var t in features.Concat(parts))
            {
                t.Dispose();
            }
        }
    }

    /// <summary>
    /// How many images of <paramref name="height"/> × <paramref name="width"/> one inference slice holds: 8 at 224 × 224,
    /// fewer for larger images, at least 1.
    /// </summary>
    /// <remarks>
    /// glibc serves blocks above 32 MB (its largest mmap threshold) with fresh mappings that are unmapped again when
    /// freed, so each later batch page-faults them in anew, and a thread-pool thread's heap cannot hold blocks above
    /// 64 MB at all. A ResNet's first activation is 3.2 MB per 224 × 224 image (102 MB for a batch of 32). A
    /// MobileNetV2's largest is 4.8 MB, so 8 of them (38 MB) are still above the threshold: in its fine-tuning step,
    /// slices of 6 had about a quarter fewer page faults but no measurable gain in time (one noisy run). Measured on flowers (fit bench, <c>--limit 200</c>, 1,000 photos, ResNet18, Zen 5,
    /// 2 threads): featurizing in slices of 8 took 28.9 s with 0.36 million minor page faults, in whole batches of 32
    /// 45.5 s with 2.3 million; slices of 4 took 30.1 s.
    /// </remarks>
    internal static int InferenceSliceSize(long height, long width) =>
        (int)Math.Clamp(8L * 224 * 224 / Math.Max(1, height * width), 1, 8);

    private Tensor ForwardWhole(Tensor images)
    {
        // Channels-last memory layout (same values, NHWC strides): LibTorch's CPU convolutions run it ~1.2–1.7× faster.
        using var nhwc = images.permute(0, 2, 3, 1).contiguous();
        var channelsLast = nhwc.permute(0, 3, 1, 2);
        Tensor features;
        if (_bf16Graph is { } bf16 && !Module.training)
        {
            using var scope = NewDisposeScope();
            features = bf16.forward(channelsLast.to(ScalarType.BFloat16)).to(ScalarType.Float32).MoveToOuterDisposeScope();
        }
        else
        {
            features = _int8Graph is { Int8Parameters: not null } int8 && !Module.training ? int8.forward(channelsLast) : Module.forward(channelsLast);
        }

        if (!ReferenceEquals(features, channelsLast))
        {
            channelsLast.Dispose();
        }

        return features;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        _int8Graph?.Dispose();
        _bf16Graph?.Dispose();
        Module.Dispose();
    }
}
