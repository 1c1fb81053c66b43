namespace TransferLearning.Backbones.Onnx.Export;

/// <summary>
/// A module that can write itself as ONNX nodes: the inference-mode computation with its current weights (dropout and
/// stochastic depth are identity, BatchNormalization uses its running statistics). Backbone modules implement it; the
/// export asks only for this interface, never for a concrete module class.
/// </summary>
internal interface IOnnxExportable
{
    /// <summary>Appends this module's computation to <paramref name="builder"/>.</summary>
    /// <param name="builder">The graph being written; <see cref="OnnxGraphBuilder.ShapeOf"/> knows the input's shape.</param>
    /// <param name="input">Name of the value this module reads (<c>[N, C, H, W]</c> for a backbone).</param>
    /// <returns>Name of the value holding the module's output.</returns>
    /// <exception cref="NotSupportedException">A layer or operator has no ONNX form here; the message names it.</exception>
    string Export(OnnxGraphBuilder builder, string input);
}
