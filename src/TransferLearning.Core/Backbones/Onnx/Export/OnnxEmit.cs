using static TorchSharp.torch;

namespace TransferLearning.Backbones.Onnx.Export;

/// <summary>
/// ONNX renderings of layers shared by the exporters, written only with operators the ONNX importer runs (so an
/// exported backbone can be imported again): activations without an opset-17 operator are decomposed
/// (SiLU = x·Sigmoid(x), GELU = 0.5·x·(1 + Erf(x/√2)), ReLU6 = Clip(0, 6)).
/// </summary>
internal static class OnnxEmit
{
    /// <summary>2-D convolution; <paramref name="pads"/> is ONNX's [top, left, bottom, right].</summary>
    public static string Conv(this OnnxGraphBuilder b, string x, Tensor weight, Tensor? bias, long[] strides, long[] pads, long[] dilations, long group, string hint = "conv")
    {
        var inputs = new List<string> { x, b.Initializer(hint + ".weight", weight) };
        if (bias is not null)
        {
            inputs.Add(b.Initializer(hint + ".bias", bias));
        }

        return b.Node("Conv", inputs, hint,
            OnnxGraphBuilder.Attr("kernel_shape", weight.shape[2..]),
            OnnxGraphBuilder.Attr("strides", strides),
            OnnxGraphBuilder.Attr("pads", pads),
            OnnxGraphBuilder.Attr("dilations", dilations),
            OnnxGraphBuilder.Attr("group", group));
    }

    /// <summary>
    /// Inference-mode BatchNormalization over dim 1 with the running statistics; a missing scale or shift is written as
    /// ones or zeros. Kept as its own node (not folded into the convolution before it): ONNX Runtime folds it when it
    /// loads the model, and the importer folds it when it runs frozen.
    /// </summary>
    public static string BatchNorm(this OnnxGraphBuilder b, string x, Tensor? scale, Tensor? shift, Tensor mean, Tensor variance, double epsilon, string hint = "bn")
    {
        var channels = mean.shape[0];
        var s = scale is null ? b.Initializer(hint + ".weight", Enumerable.Repeat(1f, (int)channels).ToArray(), [channels]) : b.Initializer(hint + ".weight", scale);
        var t = shift is null ? b.Initializer(hint + ".bias", new float[channels], [channels]) : b.Initializer(hint + ".bias", shift);
        return b.Node("BatchNormalization", [x, s, t, b.Initializer(hint + ".running_mean", mean), b.Initializer(hint + ".running_var", variance)], hint,
            OnnxGraphBuilder.Attr("epsilon", (float)epsilon));
    }

    /// <summary>x·Wᵀ + b for x <c>[N, in]</c> and W <c>[out, in]</c> (Gemm with transB).</summary>
    public static string Linear(this OnnxGraphBuilder b, string x, Tensor weight, Tensor? bias, string hint = "linear")
    {
        var inputs = new List<string> { x, b.Initializer(hint + ".weight", weight) };
        if (bias is not null)
        {
            inputs.Add(b.Initializer(hint + ".bias", bias));
        }

        return b.Node("Gemm", inputs, hint, OnnxGraphBuilder.Attr("transB", 1L));
    }

    /// <summary>min(max(x, min), max) with scalar bounds as inputs (Clip-13).</summary>
    public static string Clip(this OnnxGraphBuilder b, string x, float min, float max, string hint = "clip") =>
        b.Node("Clip", [x, b.Scalar(min), b.Scalar(max)], hint);

    /// <summary>x·sigmoid(x).</summary>
    public static string Silu(this OnnxGraphBuilder b, string x, string hint = "silu") =>
        b.Node("Mul", [x, b.Node("Sigmoid", [x], hint + ".sigmoid")], hint);

    /// <summary>GELU, exact (erf) or with PyTorch's tanh approximation.</summary>
    public static string Gelu(this OnnxGraphBuilder b, string x, bool tanhApproximation = false, string hint = "gelu")
    {
        string inner;
        if (tanhApproximation)
        {
            // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
            var cube = b.Node("Mul", [x, b.Node("Mul", [x, x], hint + ".sq")], hint + ".cube");
            var sum = b.Node("Add", [x, b.Node("Mul", [cube, b.Scalar(0.044715f)], hint + ".cube_scaled")], hint + ".sum");
            inner = b.Node("Tanh", [b.Node("Mul", [sum, b.Scalar((float)Math.Sqrt(2 / Math.PI))], hint + ".scaled")], hint + ".tanh");
        }
        else
        {
            inner = b.Node("Erf", [b.Node("Div", [x, b.Scalar((float)Math.Sqrt(2))], hint + ".scaled")], hint + ".erf");
        }

        var onePlus = b.Node("Add", [inner, b.Scalar(1f)], hint + ".one_plus");
        return b.Node("Mul", [b.Node("Mul", [x, b.Scalar(0.5f)], hint + ".half_x"), onePlus], hint);
    }

    /// <summary>ELU with coefficient <paramref name="alpha"/>: max(x, 0) + min(α·(exp(x) − 1), 0), times <paramref name="scale"/> (SELU).</summary>
    public static string Elu(this OnnxGraphBuilder b, string x, float alpha, float scale = 1f, string hint = "elu")
    {
        var negative = b.Node("Mul", [b.Node("Sub", [b.Node("Exp", [x], hint + ".exp"), b.Scalar(1f)], hint + ".expm1"), b.Scalar(alpha)], hint + ".neg_branch");
        var clipped = b.Node("Min", [negative, b.Scalar(0f)], hint + ".neg");
        var sum = b.Node("Add", [b.Node("Relu", [x], hint + ".pos"), clipped], scale == 1f ? hint : hint + ".sum");
        return scale == 1f ? sum : b.Node("Mul", [sum, b.Scalar(scale)], hint);
    }
}
