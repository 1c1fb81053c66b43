using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

// Module fields are named exactly as registered (weight, bias, running_mean, ...): TorchSharp's Module.to() re-binds fields by name.

namespace TransferLearning.Backbones.Tfjs;

/// <summary>
/// Keras semantics on TorchSharp tensors. Rank-4 tensors are kept NCHW (Keras: NHWC); every other rank keeps Keras's order.
/// </summary>
internal static class TfjsOps
{
    /// <summary>TensorFlow's SAME padding for one spatial axis: the odd extra row/column goes at the end.</summary>
    public static (long Before, long After) SamePadding(long input, long kernel, long stride, long dilation)
    {
        var output = (input + stride - 1) / stride;
        var total = Math.Max(((output - 1) * stride) + ((kernel - 1) * dilation) + 1 - input, 0);
        return (total / 2, total - (total / 2));
    }

    /// <summary>2-D convolution with Keras padding ("same" reproduced exactly, including asymmetric pads).</summary>
    public static Tensor Conv(Tensor x, Tensor weight, Tensor? bias, long[] strides, long[] dilation, bool same, long groups)
    {
        if (!same)
        {
            return Conv2dOps.Conv2d(x, weight, bias, strides, [0, 0], dilation, groups);
        }

        var (top, bottom) = SamePadding(x.shape[2], weight.shape[2], strides[0], dilation[0]);
        var (left, right) = SamePadding(x.shape[3], weight.shape[3], strides[1], dilation[1]);
        if (top == bottom && left == right)
        {
            return Conv2dOps.Conv2d(x, weight, bias, strides, [top, left], dilation, groups);
        }

        using var padded = F.pad(x, [left, right, top, bottom]);
        return Conv2dOps.Conv2d(padded, weight, bias, strides, [0, 0], dilation, groups);
    }

    /// <summary>Maps a Keras axis of a tensor of the given rank to the TorchSharp dimension (rank 4 is NCHW here).</summary>
    public static long MapAxis(long axis, long rank)
    {
        var a = axis < 0 ? axis + rank : axis;
        if (a < 0 || a >= rank)
        {
            throw new ArgumentOutOfRangeException(nameof(axis), axis, $"Axis {axis} is out of range for a rank-{rank} tensor.");
        }

        return rank == 4 ? a switch { 0 => 0, 1 => 2, 2 => 3, _ => 1 } : a;
    }

    /// <summary>Returns the tensor in Keras element order (NHWC for rank 4).</summary>
    public static Tensor ToKerasOrder(Tensor x) => x.dim() == 4 ? x.permute(0, 2, 3, 1) : x.alias();

    /// <summary>Returns a Keras-ordered tensor in this library's layout (NCHW for rank 4).</summary>
    public static Tensor FromKerasOrder(Tensor x) => x.dim() == 4 ? x.permute(0, 3, 1, 2) : x.alias();

    /// <summary>Builds a Keras activation by name; unknown names fail with the layer named.</summary>
    public static Func<Tensor, Tensor> Activation(string? name, string layer, string source)
    {
        var key = (name ?? "linear").Replace("_", string.Empty, StringComparison.Ordinal).ToUpperInvariant();
        return key switch
        {
            "LINEAR" or "" => x => x.alias(),
            "RELU" => x => F.relu(x),
            "RELU6" => x => F.relu6(x),
            "SIGMOID" => x => F.sigmoid(x),
            "TANH" => x => F.tanh(x),
            "SOFTMAX" => x => F.softmax(x, x.dim() == 4 ? 1 : -1),
            "SWISH" or "SILU" => x => F.silu(x),
            "HARDSIGMOID" => x => (x * 0.2 + 0.5).clamp(0.0, 1.0),
            "ELU" => x => F.elu(x, 1.0, false),
            "SELU" => x => F.selu(x),
            "SOFTPLUS" => x => F.softplus(x),
            "SOFTSIGN" => x => F.softsign(x),
            "MISH" => x => F.mish(x),
            "GELU" => x => F.gelu(x),
            _ => throw new NotSupportedException(
                $"{source}: layer '{layer}' uses activation '{name}', which the TF.js loader does not support (supported: linear, relu, relu6, sigmoid, tanh, softmax, swish, hard_sigmoid, elu, selu, softplus, softsign, mish, gelu)."),
        };
    }

    /// <summary>Keras ReLU with max_value, negative_slope and threshold.</summary>
    public static Tensor KerasRelu(Tensor x, double? maxValue, double negativeSlope, double threshold)
    {
        if (negativeSlope == 0 && threshold == 0)
        {
            // Plain ReLU / ReLU6 / clipped ReLU: one fused op.
            return maxValue is double m ? (m == 6 ? F.relu6(x) : x.clamp(0.0, m)) : F.relu(x);
        }

        using var scope = NewDisposeScope();
        Tensor y;
        if (negativeSlope == 0 && threshold == 0)
        {
            y = F.relu(x);
        }
        else
        {
            y = where(x > threshold, x, (x - threshold) * negativeSlope);
        }

        if (maxValue is double max)
        {
            y = where(x >= max, full_like(x, max), y);
        }

        return y.MoveToOuterDisposeScope();
    }

    /// <summary>Keras pooling (average or max) with valid/same padding; SAME average pooling ignores padded cells as TensorFlow does.</summary>
    public static Tensor Pool(Tensor x, bool max, long[] pool, long[] strides, bool same)
    {
        if (!same)
        {
            return max ? F.max_pool2d(x, pool, strides) : F.avg_pool2d(x, pool, strides);
        }

        var (top, bottom) = SamePadding(x.shape[2], pool[0], strides[0], 1);
        var (left, right) = SamePadding(x.shape[3], pool[1], strides[1], 1);
        if (top + bottom + left + right == 0)
        {
            return max ? F.max_pool2d(x, pool, strides) : F.avg_pool2d(x, pool, strides);
        }

        using var scope = NewDisposeScope();
        long[] pads = [left, right, top, bottom];
        Tensor result;
        if (max)
        {
            result = F.max_pool2d(F.pad(x, pads, PaddingModes.Constant, double.NegativeInfinity), pool, strides);
        }
        else
        {
            var sums = F.avg_pool2d(F.pad(x, pads), pool, strides);
            var ones = torch.ones(1, 1, x.shape[2], x.shape[3], dtype: x.dtype, device: x.device);
            var counts = F.avg_pool2d(F.pad(ones, pads), pool, strides);
            result = sums / counts;
        }

        return result.MoveToOuterDisposeScope();
    }
}

/// <summary>Keras Conv2D / DepthwiseConv2D (weights converted to OIHW, depthwise as grouped convolution).</summary>
internal sealed class TfjsConv2d : nn.Module<Tensor, Tensor>
{
    #pragma warning disable IDE1006 // TorchSharp names parameters and buffers after these fields (state-dict keys).
    private Parameter weight;
    private Parameter? bias;
    #pragma warning restore IDE1006
    private readonly long[] _strides;
    private readonly long[] _dilation;
    private readonly bool _same;
    private readonly long _groups;
    private readonly Func<Tensor, Tensor> _activation;

    public TfjsConv2d(string name, Tensor weightValues, Tensor? biasValues, long[] strides, long[] dilation, bool same, long groups, Func<Tensor, Tensor> activation)
        : base(name)
    {
        weight = new Parameter(weightValues);
        register_parameter("weight", weight);
        if (biasValues is not null)
        {
            bias = new Parameter(biasValues);
            register_parameter("bias", bias);
        }

        _strides = strides;
        _dilation = dilation;
        _same = same;
        _groups = groups;
        _activation = activation;
    }

    /// <summary>Kernel <c>[out, in / groups, kh, kw]</c>.</summary>
    internal Tensor Weight => weight;

    internal Tensor? Bias => bias;

    internal long[] Strides => _strides;

    internal long[] Dilation => _dilation;

    /// <summary>TensorFlow SAME padding (else VALID).</summary>
    internal bool Same => _same;

    internal long Groups => _groups;

    public override Tensor forward(Tensor input)
    {
        using var conv = TfjsOps.Conv(input, weight, bias, _strides, _dilation, _same, _groups);
        return _activation(conv);
    }
}

/// <summary>Keras SeparableConv2D: depthwise convolution (with the layer's padding/strides) then a 1×1 pointwise convolution.</summary>
internal sealed class TfjsSeparableConv2d : nn.Module<Tensor, Tensor>
{
    #pragma warning disable IDE1006 // TorchSharp names parameters and buffers after these fields (state-dict keys).
    private Parameter depthwise_weight;
    private Parameter pointwise_weight;
    private Parameter? bias;
    #pragma warning restore IDE1006
    private readonly long[] _strides;
    private readonly long[] _dilation;
    private readonly bool _same;
    private readonly Func<Tensor, Tensor> _activation;

    public TfjsSeparableConv2d(string name, Tensor depthwiseValues, Tensor pointwiseValues, Tensor? biasValues, long[] strides, long[] dilation, bool same, Func<Tensor, Tensor> activation)
        : base(name)
    {
        depthwise_weight = new Parameter(depthwiseValues);
        pointwise_weight = new Parameter(pointwiseValues);
        register_parameter("depthwise_weight", depthwise_weight);
        register_parameter("pointwise_weight", pointwise_weight);
        if (biasValues is not null)
        {
            bias = new Parameter(biasValues);
            register_parameter("bias", bias);
        }

        _strides = strides;
        _dilation = dilation;
        _same = same;
        _activation = activation;
    }

    /// <summary>Depthwise kernel <c>[in · multiplier, 1, kh, kw]</c>.</summary>
    internal Tensor DepthwiseWeight => depthwise_weight;

    /// <summary>Pointwise kernel <c>[out, in · multiplier, 1, 1]</c>.</summary>
    internal Tensor PointwiseWeight => pointwise_weight;

    internal Tensor? Bias => bias;

    internal long[] Strides => _strides;

    internal long[] Dilation => _dilation;

    internal bool Same => _same;

    public override Tensor forward(Tensor input)
    {
        using var dw = TfjsOps.Conv(input, depthwise_weight, null, _strides, _dilation, _same, input.shape[1]);
        using var pw = Conv2dOps.Conv2d(dw, pointwise_weight, bias, [1, 1], [0, 0], [1, 1], 1);
        return _activation(pw);
    }
}

/// <summary>Keras Dense on the last Keras axis (weights [out, in]).</summary>
internal sealed class TfjsDense : nn.Module<Tensor, Tensor>
{
    #pragma warning disable IDE1006 // TorchSharp names parameters and buffers after these fields (state-dict keys).
    private Parameter weight;
    private Parameter? bias;
    #pragma warning restore IDE1006
    private readonly Func<Tensor, Tensor> _activation;

    public TfjsDense(string name, Tensor weightValues, Tensor? biasValues, Func<Tensor, Tensor> activation)
        : base(name)
    {
        weight = new Parameter(weightValues);
        register_parameter("weight", weight);
        if (biasValues is not null)
        {
            bias = new Parameter(biasValues);
            register_parameter("bias", bias);
        }

        _activation = activation;
    }

    /// <summary>Weights <c>[out, in]</c>.</summary>
    internal Tensor Weight => weight;

    internal Tensor? Bias => bias;

    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        var y = TfjsOps.FromKerasOrder(F.linear(TfjsOps.ToKerasOrder(input), weight, bias));
        return _activation(y).MoveToOuterDisposeScope();
    }
}

/// <summary>Keras BatchNormalization on the channel axis; batch statistics and running-stat updates in training mode.</summary>
internal sealed class TfjsBatchNorm : nn.Module<Tensor, Tensor>
{
    #pragma warning disable IDE1006 // TorchSharp names parameters and buffers after these fields (state-dict keys).
    private Parameter? weight;
    private Parameter? bias;
    private Tensor running_mean;
    private Tensor running_var;
    #pragma warning restore IDE1006
    private readonly double _epsilon;
    private readonly double _momentum;
    private readonly long _axis;
    private readonly string _source;

    public TfjsBatchNorm(string name, Tensor? gamma, Tensor? beta, Tensor movingMean, Tensor movingVariance, double epsilon, double kerasMomentum, long axis, string source)
        : base(name)
    {
        if (gamma is not null)
        {
            weight = new Parameter(gamma);
            register_parameter("weight", weight);
        }

        if (beta is not null)
        {
            bias = new Parameter(beta);
            register_parameter("bias", bias);
        }

        running_mean = movingMean;
        running_var = movingVariance;
        register_buffer("running_mean", running_mean);
        register_buffer("running_var", running_var);
        _epsilon = epsilon;
        _momentum = 1 - kerasMomentum;
        _axis = axis;
        _source = source;
    }

    internal Tensor? Gamma => weight;

    internal Tensor? Beta => bias;

    internal Tensor MovingMean => running_mean;

    internal Tensor MovingVariance => running_var;

    internal double Epsilon => _epsilon;

    /// <summary>The Keras axis normalised (-1: the last, the channels).</summary>
    internal long Axis => _axis;

    public override Tensor forward(Tensor input)
    {
        var rank = input.dim();
        var channelAxis = _axis < 0 ? _axis + rank : _axis;
        if (channelAxis != rank - 1 || rank < 2)
        {
            throw new NotSupportedException($"{_source}: BatchNormalization '{GetName()}' normalises axis {_axis} of a rank-{rank} tensor; only the last (channel) axis is supported.");
        }

        if (rank == 2 || rank == 4)
        {
            return F.batch_norm(input, running_mean, running_var, weight, bias, training, _momentum, _epsilon);
        }

        // Other ranks: move the channel axis to dim 1 for batch_norm and back.
        using var moved = input.movedim([rank - 1], [1L]);
        using var normed = F.batch_norm(moved, running_mean, running_var, weight, bias, training, _momentum, _epsilon);
        return normed.movedim([1L], [rank - 1]);
    }
}
