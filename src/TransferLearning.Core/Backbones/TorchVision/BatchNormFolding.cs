using TorchSharp;
using TorchSharp.Modules;
using TransferLearning.Backbones.Onnx.Export;
using TransferLearning.Native;
using static TorchSharp.torch;

namespace TransferLearning.Backbones.TorchVision;

/// <summary>A module that runs Conv2d + BatchNorm2d pairs of its own (not its children's) as <see cref="ConvBatchNorm"/>.</summary>
internal interface IBatchNormFolding
{
    /// <summary>The module's own pairs.</summary>
    IEnumerable<ConvBatchNorm> FoldingPairs { get; }
}

/// <summary>Switches and resets folding over a whole network.</summary>
internal static class BatchNormFolding
{
    /// <summary>Every pair in <paramref name="module"/> and its descendants.</summary>
    public static IEnumerable<ConvBatchNorm> Pairs(nn.Module module) =>
        module.modules().Prepend(module).Distinct().OfType<IBatchNormFolding>().SelectMany(m => m.FoldingPairs);

    /// <summary>Turns folding on (the default) or off (every BatchNorm as its own op, for tests and benchmarks).</summary>
    public static void SetEnabled(nn.Module module, bool enabled)
    {
        foreach (var pair in Pairs(module))
        {
            pair.Enabled = enabled;
        }
    }

    /// <summary>Drops cached folded weights; frozen pairs fold again from the current weights at their next forward.</summary>
    public static void Invalidate(nn.Module module)
    {
        foreach (var pair in Pairs(module))
        {
            pair.Invalidate();
        }
    }

    /// <summary>How many pairs hold cached folded weights.</summary>
    public static int CachedCount(nn.Module module) => Pairs(module).Count(p => p.HasCachedWeights);
}

/// <summary>
/// A Conv2d followed by a BatchNorm2d, run as one convolution whenever the BatchNorm is in inference mode:
/// <c>w' = w·γ/√(var+ε)</c>, <c>b' = β + (b − mean)·γ/√(var+ε)</c>. When none of the pair's parameters is trainable the
/// folded weights are computed once and cached (channels-last, as <see cref="Backbone.Forward"/> feeds the network);
/// when some are (fine-tuning with BatchNorm in inference mode, the library's default), they are folded on every
/// forward with autograd, so the gradients of <c>w</c>, <c>γ</c> and <c>β</c> are those of the unfolded pair while the
/// activation-sized BatchNorm pass (forward and backward) disappears. In training mode the pair runs unfolded.
/// </summary>
/// <remarks>Not a module: the conv and norm stay children of their owner, so state-dict names are torchvision's.</remarks>
internal sealed class ConvBatchNorm : IDisposable
{
    private readonly Conv2d _conv;
    private readonly BatchNorm2d _norm;
    private readonly long[] _stride;
    private readonly long[] _padding;
    private readonly long[] _dilation;
    private readonly long _groups;
    private readonly double _eps;
    private Tensor? _weight;
    private Tensor? _bias;

    public ConvBatchNorm(Conv2d conv, BatchNorm2d norm, long stride, long padding, long dilation, long groups, double eps)
    {
        _conv = conv;
        _norm = norm;
        _stride = [stride, stride];
        _padding = [padding, padding];
        _dilation = [dilation, dilation];
        _groups = groups;
        _eps = eps;
    }

    public bool Enabled { get; set; } = true;

    /// <summary>The convolution (a child of the pair's owner).</summary>
    public Conv2d Conv => _conv;

    /// <summary>The BatchNorm after it (a child of the pair's owner).</summary>
    public BatchNorm2d Norm => _norm;

    /// <summary>True while folded weights are cached (frozen pair, inference mode).</summary>
    public bool HasCachedWeights => _weight is not null;

    public Tensor Forward(Tensor x)
    {
        if (!Enabled || _norm.training)
        {
            Invalidate();
            using var y = Conv2dOps.Conv2d(x, _conv.weight!, _conv.bias, _stride, _padding, _dilation, _groups);
            return _norm.forward(y);
        }

        var w = _conv.weight!;
        var b = _conv.bias;
        var gamma = _norm.weight!;
        var beta = _norm.bias!;
        if (w.requires_grad || gamma.requires_grad || beta.requires_grad || (b?.requires_grad ?? false))
        {
            // Trainable: fold with autograd on every forward (weight-sized work); the gradients flow through the fold.
            Invalidate();
            var (fw, fb) = Fold(w, b, gamma, beta);
            using (fw)
            using (fb)
            {
                return Conv2dOps.Conv2d(x, fw, fb, _stride, _padding, _dilation, _groups);
            }
        }

        if (_weight is null || _weight.device_type != x.device_type || _weight.device_index != x.device_index)
        {
            Invalidate();
            using var noGrad = no_grad();
            using var scope = NewDisposeScope();
            var (fw, fb) = Fold(w, b, gamma, beta);
            _weight = fw.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2).DetachFromDisposeScope();
            _bias = fb.DetachFromDisposeScope();
        }

        return Conv2dOps.Conv2d(x, _weight, _bias, _stride, _padding, _dilation, _groups);
    }

    private (Tensor Weight, Tensor Bias) Fold(Tensor w, Tensor? b, Tensor gamma, Tensor beta)
    {
        using var eps = _eps.ToScalar(); // alive until the end of the method (see KeptScalars)
        using var std = _norm.running_var!.add(eps);
        using var inv = std.rsqrt_();
        using var factor = gamma.mul(inv);
        using var factor4 = factor.reshape(-1, 1, 1, 1);
        var fw = w.mul(factor4);
        using var centred = b is null ? _norm.running_mean!.neg() : b.sub(_norm.running_mean!);
        using var scaled = centred.mul(factor);
        var fb = scaled.add(beta, KeptScalars.One);
        return (fw, fb);
    }

    public void Invalidate()
    {
        _weight?.Dispose();
        _bias?.Dispose();
        _weight = null;
        _bias = null;
    }

    public void Dispose() => Invalidate();

    /// <summary>
    /// Writes the pair as ONNX Conv and BatchNormalization nodes named after the owner's children (the export keeps
    /// BatchNorm as its own node, as for every family; numerically the folded convolution this class runs).
    /// </summary>
    public string Export(TorchModuleExporter exporter, string input, string convName, string normName)
    {
        var x = exporter.Emit(_conv, input, convName);
        return exporter.Emit(_norm, x, normName);
    }
}

/// <summary>
/// Runs a list of modules in order, with Conv2d + BatchNorm2d neighbours as <see cref="ConvBatchNorm"/> and ReLU/ReLU6
/// right after them applied in place (their input is then a fresh tensor only they read, and neither a convolution nor
/// a BatchNorm keeps its output for the backward pass). Intermediate results are disposed as soon as they are used.
/// </summary>
internal sealed class FoldingPlan : IDisposable
{
    private readonly List<Step> _steps = [];

    public FoldingPlan(IReadOnlyList<nn.Module<Tensor, Tensor>> modules)
    {
        var producedFresh = false;
        for (var i = 0; i < modules.Count; i++)
        {
            var m = modules[i];
            if (m is Conv2d conv && i + 1 < modules.Count && modules[i + 1] is BatchNorm2d norm && Geometry(conv) is { } g)
            {
                _steps.Add(new Step(null, new ConvBatchNorm(conv, norm, g.Stride, g.Padding, g.Dilation, g.Groups, norm.eps), Activation.None));
                i++;
                producedFresh = true;
                continue;
            }

            var activation = producedFresh ? m switch
            {
                ReLU => Activation.Relu,
                ReLU6 => Activation.Relu6,
                _ => Activation.None,
            } : Activation.None;
            _steps.Add(new Step(m, null, activation));
            producedFresh = m is Conv2d or BatchNorm2d;
        }
    }

    private enum Activation
    {
        None,
        Relu,
        Relu6,
    }

    public IEnumerable<ConvBatchNorm> Pairs => _steps.Where(s => s.Pair is not null).Select(s => s.Pair!);

    /// <summary>Runs the steps; the input is never modified and the result is a new tensor.</summary>
    public Tensor Forward(Tensor input)
    {
        var x = input;
        foreach (var step in _steps)
        {
            Tensor next;
            if (step.Pair is not null)
            {
                next = step.Pair.Forward(x);
            }
            else if (step.InPlace == Activation.Relu)
            {
                x.relu_();
                continue;
            }
            else if (step.InPlace == Activation.Relu6)
            {
                x.hardtanh_(KeptScalars.Zero, KeptScalars.Six);
                continue;
            }
            else
            {
                next = step.Module!.forward(x);
            }

            if (!ReferenceEquals(x, input) && !ReferenceEquals(x, next))
            {
                x.Dispose();
            }

            x = next;
        }

        return ReferenceEquals(x, input) ? input.alias() : x;
    }

    public void Dispose()
    {
        foreach (var pair in Pairs)
        {
            pair.Dispose();
        }
    }

    /// <summary>The conv's square stride/padding/dilation and groups, or null when it is not the plain square kind.</summary>
    private static (long Stride, long Padding, long Dilation, long Groups)? Geometry(Conv2d conv)
    {
        var w = conv.weight!;
        if (w.dim() != 4 || w.shape[2] != w.shape[3] || conv.padding_mode != PaddingModes.Zeros)
        {
            return null;
        }

        if (conv.stride is not { Length: > 0 } stride || conv.padding is not { Length: > 0 } padding || conv.dilation is not { Length: > 0 } dilation
            || stride.Any(s => s != stride[0]) || padding.Any(p => p != padding[0]) || dilation.Any(d => d != dilation[0]))
        {
            return null;
        }

        return (stride[0], padding[0], dilation[0], conv.groups);
    }

    private sealed record Step(nn.Module<Tensor, Tensor>? Module, ConvBatchNorm? Pair, Activation InPlace);
}

/// <summary>
/// A sequential container (children named <c>0</c>, <c>1</c>, … as in <c>nn.Sequential</c>, so state dicts keep
/// torchvision's names) that runs through a <see cref="FoldingPlan"/>: torchvision's <c>Conv2dNormActivation</c> and
/// the convolution stacks of inverted residual blocks.
/// </summary>
internal sealed class FoldingSequential : nn.Module<Tensor, Tensor>, IBatchNormFolding, IOnnxExportable
{
    private readonly FoldingPlan _plan;

    public FoldingSequential(params nn.Module<Tensor, Tensor>[] modules)
        : base("Sequential")
    {
        for (var i = 0; i < modules.Length; i++)
        {
            register_module(i.ToString(System.Globalization.CultureInfo.InvariantCulture), modules[i]);
        }

        _plan = new FoldingPlan(modules);
    }

    public IEnumerable<ConvBatchNorm> FoldingPairs => _plan.Pairs;

    public override Tensor forward(Tensor input) => _plan.Forward(input);

    /// <inheritdoc />
    public string Export(OnnxGraphBuilder builder, string input)
    {
        // The children in order, as nn.Sequential: Conv2d and BatchNorm2d as their own nodes, the blocks writing themselves.
        var exporter = new TorchModuleExporter(builder);
        var x = input;
        foreach (var (name, child) in named_children())
        {
            x = exporter.Emit(child, x, name);
        }

        return x;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _plan.Dispose();
        }

        base.Dispose(disposing);
    }
}
