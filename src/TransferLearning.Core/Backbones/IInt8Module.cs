using static TorchSharp.torch;

namespace TransferLearning.Backbones;

/// <summary>Scale and zero point of an 8-bit activation tensor.</summary>
/// <param name="Scale">Real value of one quantization step.</param>
/// <param name="ZeroPoint">The quantized value that stands for 0.</param>
internal readonly record struct ActivationQuantization(double Scale, long ZeroPoint);

/// <summary>A backbone network that can run in int8 once calibrated (a capability; <see cref="Backbone"/> asks for it).</summary>
internal interface IInt8Module
{
    /// <summary>The activation parameters in use, or null while running in float.</summary>
    IReadOnlyDictionary<string, ActivationQuantization>? Int8Activations { get; }

    /// <summary>Observes activation ranges on calibration batches (in eval mode) and returns the parameters.</summary>
    Dictionary<string, ActivationQuantization> Calibrate(IEnumerable<Tensor> batches, Func<Tensor, Tensor>? prepare = null);

    /// <summary>Switches to int8 with these activation parameters (the weights must stay frozen).</summary>
    void EnableInt8(IReadOnlyDictionary<string, ActivationQuantization> activations);

    /// <summary>Returns to float.</summary>
    void DisableInt8();
}
