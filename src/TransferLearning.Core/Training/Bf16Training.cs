using TorchSharp;
using TorchSharp.Modules;
using TransferLearning.Backbones;
using TransferLearning.Backbones.TorchVision;
using static TorchSharp.torch;

namespace TransferLearning.Training;

/// <summary>
/// Mixed-precision training of a backbone: while it lives, the backbone's module computes in bfloat16 (forward and
/// backward), and the optimizer updates float master copies of its trainable weights. After each backward the bf16
/// gradients are added into the masters' float gradients (so the slices of a step accumulate in float); after each
/// optimizer step the masters are rounded into the module. Disposing puts the module back in float with the masters'
/// values, frozen weights as they were, and buffers (BatchNorm statistics) as they were unless training changed them.
/// </summary>
/// <remarks>
/// Bf16 keeps float's exponent range, so no loss scaling is needed. The module is converted with
/// <c>Module.to(BFloat16)</c>, which replaces its parameter objects: only networks that read their weights through their
/// submodules at every forward, or re-point them when converted, take that safely (see <see cref="Supports"/>).
/// </remarks>
internal sealed class Bf16Training : IDisposable
{
    private readonly Backbone _backbone;
    private readonly Dictionary<string, Parameter> _masters = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Tensor> _floatState = new(StringComparer.Ordinal);
    private readonly List<(Parameter Module, Parameter Master)> _pairs = [];
    private readonly Dictionary<Parameter, Parameter> _masterOf = new(ReferenceEqualityComparer.Instance);
    private bool _disposed;

    /// <summary>Converts <paramref name="backbone"/>'s module to bf16 and keeps float masters of its trainable weights.</summary>
    public Bf16Training(Backbone backbone)
    {
        _backbone = backbone;
        var module = backbone.Module;
        using (no_grad())
        {
            foreach (var (name, p) in module.named_parameters())
            {
                if (p.requires_grad)
                {
                    _masters[name] = new Parameter(p.detach().clone(), requires_grad: true);
                }
                else
                {
                    _floatState[name] = p.detach().clone();
                }
            }

            foreach (var (name, b) in module.named_buffers())
            {
                _floatState[name] = b.detach().clone();
            }
        }

        module.to(ScalarType.BFloat16);
        BatchNormFolding.Invalidate(module);
        foreach (var (name, p) in module.named_parameters())
        {
            if (_masters.TryGetValue(name, out var master))
            {
                _pairs.Add((p, master));
                _masterOf[p] = master;
            }
        }
    }

    /// <summary>
    /// Whether a backbone can train in bf16 this way: every family the library loads (torchvision checkpoints and TF.js
    /// layers models read their weights through their layers; ONNX graphs re-point their weights and constants when
    /// converted), not a module wrapped by hand, which may keep references to its weights elsewhere.
    /// </summary>
    public static bool Supports(Backbone backbone) => backbone.Module is TorchVisionFeatureModule or Backbones.Onnx.OnnxGraphModule or Backbones.Tfjs.TfjsNetwork;

    /// <summary>The float master of a module parameter, or the parameter itself when it has none (the head's, in float).</summary>
    public Parameter MasterOf(Parameter parameter) => _masterOf.GetValueOrDefault(parameter, parameter);

    /// <summary>Runs the backbone on float images in bf16; the features come back as float (gradients flow through both casts).</summary>
    public Tensor Forward(Tensor images)
    {
        using var low = images.to(ScalarType.BFloat16);
        using var features = _backbone.Forward(low);
        return features.to(ScalarType.Float32);
    }

    /// <summary>Adds the module's bf16 gradients into the masters' float gradients and clears the module's.</summary>
    public void AccumulateGradients()
    {
        using var noGrad = no_grad();
        foreach (var (p, master) in _pairs)
        {
            using var grad = p.grad;
            if (grad is null)
            {
                continue;
            }

            p.grad = null;
            using var wide = grad.to(ScalarType.Float32);
            using var sum = master.grad;
            if (sum is null)
            {
                master.grad = wide;
            }
            else
            {
                sum.add_(wide);
            }
        }
    }

    /// <summary>Rounds the masters (just updated by the optimizer) into the module's bf16 weights.</summary>
    public void CopyMastersToModule()
    {
        using var noGrad = no_grad();
        foreach (var (p, master) in _pairs)
        {
            p.copy_(master);
        }
    }

    /// <summary>The backbone's weights and buffers in float, by state-dict name: the masters, and the rest widened from the module.</summary>
    public Dictionary<string, Tensor> FloatStateDict()
    {
        var state = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        using var noGrad = no_grad();
        foreach (var (name, value) in _backbone.Module.state_dict())
        {
            state[name] = _masters.TryGetValue(name, out var master) ? master.detach().clone() : Widened(name, value);
        }

        return state;
    }

    /// <summary>Loads float values (from <see cref="FloatStateDict"/>) into the masters, the kept float state and the module.</summary>
    public void LoadFloatStateDict(IReadOnlyDictionary<string, Tensor> state)
    {
        using var noGrad = no_grad();
        foreach (var (name, value) in _backbone.Module.state_dict())
        {
            var source = state[name];
            if (_masters.TryGetValue(name, out var master))
            {
                master.copy_(source);
            }
            else if (_floatState.TryGetValue(name, out var kept))
            {
                kept.copy_(source);
            }

            value.copy_(source);
        }
    }

    /// <summary>Puts the module back in float: masters for trained weights, the kept float values for the rest unless training changed them.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        var module = _backbone.Module;
        using (no_grad())
        {
            // Buffers that training changed (BatchNorm statistics in training mode) keep their new values, widened.
            var widened = module.state_dict().Where(kv => !_masters.ContainsKey(kv.Key)).ToDictionary(kv => kv.Key, kv => Widened(kv.Key, kv.Value), StringComparer.Ordinal);
            module.to(ScalarType.Float32);
            foreach (var (name, value) in module.state_dict())
            {
                if (_masters.TryGetValue(name, out var master))
                {
                    value.copy_(master);
                }
                else
                {
                    value.copy_(widened[name]);
                }
            }

            foreach (var t in widened.Values)
            {
                t.Dispose();
            }
        }

        BatchNormFolding.Invalidate(module);
        foreach (var master in _masters.Values)
        {
            master.Dispose(); // and its float gradient with it
        }

        foreach (var t in _floatState.Values)
        {
            t.Dispose();
        }
    }

    /// <summary>
    /// A non-master value in float: the kept float value when the module's bf16 value is still its rounding (unchanged by
    /// training), else the module's value widened.
    /// </summary>
    private Tensor Widened(string name, Tensor value)
    {
        if (_floatState.TryGetValue(name, out var kept) && kept.dtype == ScalarType.Float32 && value.dtype == ScalarType.BFloat16)
        {
            using var rounded = kept.to(ScalarType.BFloat16);
            using var same = rounded.eq(value).all();
            if (same.item<bool>())
            {
                return kept.clone();
            }
        }

        return value.dtype == ScalarType.BFloat16 ? value.to(ScalarType.Float32) : value.clone();
    }
}
