using static TorchSharp.torch;

namespace TransferLearning.Backbones;

/// <summary>Scale and zero point of an 8-bit activation tensor, and the largest quantized value it uses.</summary>
/// <param name="Scale">Real value of one quantization step.</param>
/// <param name="ZeroPoint">The quantized value that stands for 0.</param>
/// <param name="Levels">Largest quantized value: 127 (7-bit range) or 255 (full 8 bits); see <see cref="Int8Kernels"/>.</param>
internal readonly record struct ActivationQuantization(double Scale, long ZeroPoint, int Levels = Int8Kernels.SevenBit)
{
    /// <summary>The same real range in fewer (or more) levels: what calibrating with <paramref name="levels"/> would have given.</summary>
    public ActivationQuantization WithLevels(int levels)
    {
        if (levels == Levels)
        {
            return this;
        }

        var zeroPoint = (long)Math.Clamp(Math.Round(ZeroPoint * (double)levels / Levels), 0, levels);
        return new ActivationQuantization(Scale * Levels / levels, zeroPoint, levels);
    }
}

/// <summary>What int8 execution needs besides the float weights (calibrated once, saved with a model).</summary>
/// <param name="Activations">Quantization of each activation that runs in 8 bits, by value name.</param>
/// <param name="ChannelScales">
/// Per-channel factors by value name: the channels of that value (a convolution's output read only by the next
/// convolution) are multiplied by them — the producer's weights and bias scaled up, the reader's input weights down, the
/// same function — so that channels with small ranges fill the per-tensor 8-bit range (cross-layer equalisation).
/// </param>
/// <param name="FloatConvs">
/// Convolutions (by output value name) kept in float because in 8 bits they moved the calibration images' features too
/// far from float (mixed precision; see <c>OnnxGraphModule.KeepSensitiveConvsInFloat</c>).
/// </param>
internal sealed record Int8Parameters(
    IReadOnlyDictionary<string, ActivationQuantization> Activations,
    IReadOnlyDictionary<string, float[]> ChannelScales,
    IReadOnlySet<string> FloatConvs);

/// <summary>A backbone network that can run in int8 once calibrated (a capability; <see cref="Backbone"/> asks for it).</summary>
internal interface IInt8Module
{
    /// <summary>The int8 parameters in use, or null while running in float.</summary>
    Int8Parameters? Int8Parameters { get; }

    /// <summary>
    /// Observes activation ranges on calibration batches (in eval mode) and returns the parameters. It may leave the
    /// module running in int8 with exactly the returned parameters (then <see cref="EnableInt8"/> with them does nothing).
    /// </summary>
    Int8Parameters Calibrate(IEnumerable<Tensor> batches, Func<Tensor, Tensor>? prepare = null);

    /// <summary>Switches to int8 with these parameters (the weights must stay frozen).</summary>
    void EnableInt8(Int8Parameters parameters);

    /// <summary>Returns to float.</summary>
    void DisableInt8();
}
