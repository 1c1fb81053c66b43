using Onnx;
using TorchSharp;
using TransferLearning.Backbones.Onnx;
using static TransferLearning.Core.Tests.Onnx.OnnxModelBuilder;

namespace TransferLearning.Core.Tests.Onnx;

/// <summary>Small generated ONNX graphs, together covering every supported operator and attribute form, against ONNX Runtime.</summary>
public class OnnxOperatorParityTests
{
    private static readonly Dictionary<string, Func<OnnxModelBuilder>> Cases = new()
    {
        ["conv_groups_dilation_asymmetric_pads_bias"] = () =>
        {
            var b = new OnnxModelBuilder(11, [2, 4, 9, 8]);
            return b.Output(b.Node("Conv", ["x", b.Weight(6, 2, 3, 3), b.Weight(6)], Is("kernel_shape", 3, 3), I("group", 2), Is("dilations", 2, 1), Is("pads", 1, 0, 2, 1), Is("strides", 1, 2)));
        },
        ["conv_maxpool_begin_heavy_pads_residual"] = () =>
        {
            // CNTK-style pads (more at the start): run as symmetric padding, cut where that adds a trailing output.
            var b = new OnnxModelBuilder(8, [2, 3, 9, 10]);
            var c1 = b.Node("Conv", ["x", b.Weight(4, 3, 7, 7), b.Weight(4)], Is("kernel_shape", 7, 7), Is("strides", 2, 2), Is("pads", 3, 3, 2, 2));
            var r1 = b.Node("Relu", [c1]);
            var m = b.Node("MaxPool", [r1], Is("kernel_shape", 3, 3), Is("strides", 2, 2), Is("pads", 1, 1, 0, 0));
            var c2 = b.Node("Conv", [m, b.Weight(4, 4, 3, 3)], Is("kernel_shape", 3, 3), Is("pads", 1, 1, 1, 1));
            var a = b.Node("Add", [c2, m]);
            var r2 = b.Node("Relu", [a]);
            var c3 = b.Node("Conv", [r2, b.Weight(5, 4, 3, 3)], Is("kernel_shape", 3, 3), Is("strides", 2, 2), Is("pads", 1, 1, 0, 0));
            return b.Output(b.Node("Add", [c3, b.Weight(5, 1, 1)]));
        },
        ["relu_add_inputs_also_read_through_views"] = () =>
        {
            // Relu/Add whose input is also viewed by Flatten/Reshape must not overwrite it.
            var b = new OnnxModelBuilder(13, [2, 3, 4, 4]);
            var c = b.Node("Conv", ["x", b.Weight(3, 3, 1, 1)], Is("kernel_shape", 1, 1));
            var f = b.Node("Flatten", [c], I("axis", 1));
            var r = b.Node("Relu", [c]);
            var rf = b.Node("Reshape", [r, b.Ints(2, 48)]);
            var a = b.Node("Add", [rf, f]);
            return b.Output(b.Node("Add", [a, f]));
        },
        ["conv_same_upper_stride2"] = () =>
        {
            var b = new OnnxModelBuilder(13, [1, 3, 9, 10]);
            return b.Output(b.Node("Conv", ["x", b.Weight(4, 3, 4, 4)], S("auto_pad", "SAME_UPPER"), Is("strides", 2, 2)));
        },
        ["conv_same_lower_stride2"] = () =>
        {
            var b = new OnnxModelBuilder(13, [1, 3, 9, 10]);
            return b.Output(b.Node("Conv", ["x", b.Weight(4, 3, 4, 4)], S("auto_pad", "SAME_LOWER"), Is("strides", 2, 2)));
        },
        ["conv_valid_depthwise"] = () =>
        {
            var b = new OnnxModelBuilder(7, [1, 3, 8, 8]);
            return b.Output(b.Node("Conv", ["x", b.Weight(3, 1, 3, 3)], S("auto_pad", "VALID"), I("group", 3)));
        },
        ["batchnorm_relu_leakyrelu_sigmoid_tanh"] = () =>
        {
            var b = new OnnxModelBuilder(9, [2, 3, 4, 4]);
            var bn = b.Node("BatchNormalization", ["x", b.Weight(3), b.Weight(3), b.Weight(3), b.Positive(3)], Fl("epsilon", 1e-3f));
            var r = b.Node("Relu", [bn]);
            var l = b.Node("LeakyRelu", [bn], Fl("alpha", 0.2f));
            var s = b.Node("Sigmoid", [l]);
            var t = b.Node("Tanh", [bn]);
            return b.Output(b.Node("Concat", [r, s, t], I("axis", 1)));
        },
        ["hardsigmoid_hardswish"] = () =>
        {
            var b = new OnnxModelBuilder(14, [2, 3, 4, 4]);
            var hs = b.Node("HardSigmoid", ["x"], Fl("alpha", 0.3f), Fl("beta", 0.4f));
            var hw = b.Node("HardSwish", ["x"]);
            return b.Output(b.Node("Add", [hs, hw]));
        },
        ["softplus"] = () =>
        {
            var b = new OnnxModelBuilder(17, [2, 3, 4, 4]);
            var scaled = b.Node("Mul", ["x", b.Floats([], 12f)]); // reaches PyTorch's linear range (x > 20)
            return b.Output(b.Node("Concat", [b.Node("Softplus", ["x"]), b.Node("Softplus", [scaled])], I("axis", 1)));
        },
        ["clip_opset7_attributes"] = () =>
        {
            var b = new OnnxModelBuilder(7, [1, 2, 3, 3]);
            return b.Output(b.Node("Clip", ["x"], Fl("min", -0.5f), Fl("max", 0.7f)));
        },
        ["clip_opset13_inputs"] = () =>
        {
            var b = new OnnxModelBuilder(13, [1, 2, 3, 3]);
            var c1 = b.Node("Clip", ["x", b.Floats([], 0f), b.Floats([], 6f)]);
            var c2 = b.Node("Clip", ["x", b.Floats([], -0.3f)]);
            var c3 = b.Node("Clip", ["x", "", b.Floats([], 0.2f)]);
            return b.Output(b.Node("Concat", [c1, c2, c3], I("axis", 1)));
        },
        ["add_sub_mul_div_broadcast"] = () =>
        {
            var b = new OnnxModelBuilder(13, [2, 3, 4, 5]);
            var a = b.Node("Add", ["x", b.Weight(3, 1, 1)]);
            var s = b.Node("Sub", [b.Weight(5), a]);
            var m = b.Node("Mul", [s, b.Floats([], 1.5f)]);
            return b.Output(b.Node("Div", [m, b.Positive(1, 3, 4, 1)]));
        },
        ["maxpool_asymmetric_pads_ceil"] = () =>
        {
            var b = new OnnxModelBuilder(12, [1, 2, 9, 9]);
            var p1 = b.Node("MaxPool", ["x"], Is("kernel_shape", 3, 3), Is("strides", 2, 2), Is("pads", 1, 1, 0, 0));
            var p2 = b.Node("MaxPool", ["x"], Is("kernel_shape", 2, 2), Is("strides", 2, 2), I("ceil_mode", 1));
            var f1 = b.Node("Flatten", [p1]);
            var f2 = b.Node("Flatten", [p2]);
            return b.Output(b.Node("Concat", [f1, f2], I("axis", 1)));
        },
        ["maxpool_same_upper"] = () =>
        {
            var b = new OnnxModelBuilder(11, [1, 2, 8, 7]);
            return b.Output(b.Node("MaxPool", ["x"], Is("kernel_shape", 3, 3), Is("strides", 2, 2), S("auto_pad", "SAME_UPPER")));
        },
        ["avgpool_count_include_pad_forms"] = () =>
        {
            var b = new OnnxModelBuilder(11, [1, 2, 8, 8]);
            var a1 = b.Node("AveragePool", ["x"], Is("kernel_shape", 3, 3), Is("pads", 1, 1, 1, 1), I("count_include_pad", 0));
            var a2 = b.Node("AveragePool", ["x"], Is("kernel_shape", 3, 3), Is("pads", 1, 1, 1, 1), I("count_include_pad", 1));
            var a3 = b.Node("AveragePool", ["x"], Is("kernel_shape", 3, 3), Is("pads", 1, 1, 0, 0), I("count_include_pad", 0));
            var a4 = b.Node("AveragePool", ["x"], Is("kernel_shape", 3, 3), Is("pads", 0, 0, 1, 1), I("count_include_pad", 1));
            var a5 = b.Node("AveragePool", ["x"], Is("kernel_shape", 2, 2), Is("strides", 3, 3), I("ceil_mode", 1));
            return b.Output(b.Node("Concat", [b.Node("Flatten", [a1]), b.Node("Flatten", [a2]), b.Node("Flatten", [a3]), b.Node("Flatten", [a4]), b.Node("Flatten", [a5])], I("axis", 1)));
        },
        ["gap_flatten_gemm_softmax_opset11"] = () =>
        {
            var b = new OnnxModelBuilder(11, [3, 4, 5, 5]);
            var g = b.Node("GlobalAveragePool", ["x"]);
            var f = b.Node("Flatten", [g]);
            var gemm = b.Node("Gemm", [f, b.Weight(6, 4), b.Weight(6)], I("transB", 1), Fl("alpha", 0.7f), Fl("beta", 1.3f));
            return b.Output(b.Node("Softmax", [gemm]));
        },
        ["globalmaxpool_gemm_transA_matrix_bias_softmax13"] = () =>
        {
            var b = new OnnxModelBuilder(13, [3, 4, 5, 5]);
            var g = b.Node("GlobalMaxPool", ["x"]);
            var f = b.Node("Flatten", [g], I("axis", 1));
            var t = b.Node("Transpose", [f], Is("perm", 1, 0));
            var gemm = b.Node("Gemm", [t, b.Weight(4, 6), b.Weight(3, 6)], I("transA", 1));
            return b.Output(b.Node("Softmax", [gemm], I("axis", 0)));
        },
        ["softmax_opset11_axis2_coerces"] = () =>
        {
            var b = new OnnxModelBuilder(11, [2, 3, 4]);
            return b.Output(b.Node("Softmax", ["x"], I("axis", 1)));
        },
        ["matmul_reducemean_attr"] = () =>
        {
            var b = new OnnxModelBuilder(13, [2, 3, 4]);
            var m = b.Node("MatMul", ["x", b.Weight(4, 5)]);
            return b.Output(b.Node("ReduceMean", [m], Is("axes", 1), I("keepdims", 0)));
        },
        ["reducemean_opset18_input_axes"] = () =>
        {
            var b = new OnnxModelBuilder(18, [2, 3, 4, 5]);
            return b.Output(b.Node("ReduceMean", ["x", b.Ints(2, 3)], I("keepdims", 1)));
        },
        ["shape_gather_unsqueeze_concat_reshape_opset11"] = () =>
        {
            var b = new OnnxModelBuilder(11, [2, 3, 4, 4]);
            var shape = b.Node("Shape", ["x"]);
            var batch = b.Node("Gather", [shape, b.Node("Constant", [], T("value", OnnxTensorScalar(0)))], I("axis", 0));
            var u = b.Node("Unsqueeze", [batch], Is("axes", 0));
            var target = b.Node("Concat", [u, b.Ints(-1)], I("axis", 0));
            return b.Output(b.Node("Reshape", ["x", target]));
        },
        ["reshape_zero_minus_one_transpose_squeeze_unsqueeze_opset13"] = () =>
        {
            var b = new OnnxModelBuilder(13, [2, 3, 4, 1]);
            var s = b.Node("Squeeze", ["x", b.Ints(3)]);
            var r = b.Node("Reshape", [s, b.Ints(0, -1, 2)]);
            var t = b.Node("Transpose", [r]);
            return b.Output(b.Node("Unsqueeze", [t, b.Ints(0, -1)]));
        },
        ["squeeze_unsqueeze_opset11_attributes"] = () =>
        {
            var b = new OnnxModelBuilder(11, [2, 1, 4, 1]);
            var s = b.Node("Squeeze", ["x"], Is("axes", 1, -1));
            return b.Output(b.Node("Unsqueeze", [s], Is("axes", 1)));
        },
        ["split_attr_opset11_concat"] = () =>
        {
            var b = new OnnxModelBuilder(11, [1, 6, 3, 3]);
            var parts = b.NodeN("Split", ["x"], 3, I("axis", 1), Is("split", 1, 2, 3));
            return b.Output(b.Node("Concat", [parts[2], parts[0], parts[1]], I("axis", 1)));
        },
        ["split_input_opset13_and_equal"] = () =>
        {
            var b = new OnnxModelBuilder(13, [1, 6, 4, 3]);
            var parts = b.NodeN("Split", ["x", b.Ints(4, 2)], 2, I("axis", 1));
            var halves = b.NodeN("Split", [parts[0]], 2, I("axis", 2));
            return b.Output(b.Node("Concat", [halves[1], halves[0]], I("axis", 2)));
        },
        ["slice_opset9_attributes"] = () =>
        {
            var b = new OnnxModelBuilder(9, [2, 5, 6, 6]);
            return b.Output(b.Node("Slice", ["x"], Is("starts", 1, -4), Is("ends", 4, 1000), Is("axes", 1, 3)));
        },
        ["slice_opset13_inputs_steps_negative"] = () =>
        {
            var b = new OnnxModelBuilder(13, [2, 5, 6, 6]);
            var s1 = b.Node("Slice", ["x", b.Ints(0, 5), b.Ints(5, 0), b.Ints(1, 2), b.Ints(2, -2)]);
            return b.Output(s1);
        },
        ["pad_opset2_attributes_reflect"] = () =>
        {
            var b = new OnnxModelBuilder(9, [1, 2, 5, 5]);
            var p1 = b.Node("Pad", ["x"], Is("pads", 0, 0, 1, 2, 0, 0, 2, 1), S("mode", "reflect"));
            var p2 = b.Node("Pad", ["x"], Is("pads", 0, 0, 1, 2, 0, 0, 2, 1), Fl("value", 0.5f));
            return b.Output(b.Node("Add", [p1, p2]));
        },
        ["pad_opset13_inputs_edge_constant"] = () =>
        {
            var b = new OnnxModelBuilder(13, [1, 2, 5, 5]);
            var p1 = b.Node("Pad", ["x", b.Ints(0, 0, 2, 0, 0, 0, 1, 3)], S("mode", "edge"));
            var p2 = b.Node("Pad", ["x", b.Ints(0, 0, 2, 0, 0, 0, 1, 3), b.Floats([], -1f)]);
            return b.Output(b.Node("Mul", [p1, p2]));
        },
        ["constant_identity_dropout"] = () =>
        {
            var b = new OnnxModelBuilder(13, [2, 3]);
            var c = b.Node("Constant", [], T("value", OnnxProtoExtensions.FromFloats("c", [3], [1f, -2f, 3f])));
            var i = b.Node("Identity", ["x"]);
            var d = b.Node("Dropout", [i]);
            return b.Output(b.Node("Mul", [d, c]));
        },
        ["opset21_conv_relu_gap"] = () =>
        {
            var b = new OnnxModelBuilder(21, [2, 3, 7, 7]);
            var c = b.Node("Conv", ["x", b.Weight(4, 3, 3, 3), b.Weight(4)], Is("pads", 1, 1, 1, 1));
            var r = b.Node("Relu", [c]);
            return b.Output(b.Node("GlobalAveragePool", [r]));
        },
    };

    private static TensorProto OnnxTensorScalar(long v)
    {
        var t = OnnxProtoExtensions.FromInt64s("s", [], [v]);
        return t;
    }

    public static TheoryData<string> CaseNames()
    {
        var data = new TheoryData<string>();
        foreach (var name in Cases.Keys)
        {
            data.Add(name);
        }

        return data;
    }

    [Theory]
    [Trait("Category", "Parity")]
    [MemberData(nameof(CaseNames))]
    public void Forward_GeneratedModel_MatchesOnnxRuntime(string name)
    {
        var builder = Cases[name]();
        var bytes = builder.Bytes();
        var input = builder.RandomInput();
        var expected = OrtReference.Run(bytes, input, builder.InputShape.Select(d => (int)d).ToArray());

        using var module = new OnnxGraphModule(ModelProto.Parser.ParseFrom(bytes), name);
        module.eval();
        using var scope = torch.NewDisposeScope();
        var actual = module.forward(torch.tensor(input, builder.InputShape)).contiguous().data<float>().ToArray();
        OrtReference.AssertClose(expected, actual, 1e-4, name);

        // Without autograd, Relu/Add may run in place: same results.
        using var noGrad = torch.no_grad();
        var inference = module.forward(torch.tensor(input, builder.InputShape)).contiguous().data<float>().ToArray();
        OrtReference.AssertClose(expected, inference, 1e-4, name + " (no_grad)");
    }

    [Fact]
    public void Load_ReluAndAddAfterFreshResults_RunInPlaceOnlyWhereNoViewReadsTheInput()
    {
        using var residual = new OnnxGraphModule(Cases["conv_maxpool_begin_heavy_pads_residual"]().Model, "residual");
        // The Relu after a Conv, the Add of a Conv and a MaxPool output, the Relu after that Add (node names count weights
        // too); the last Add writes the graph output, so it allocates.
        Assert.Equal(["relu_3", "add_7", "relu_8"], residual.InPlaceNodeNames);

        using var views = new OnnxGraphModule(Cases["relu_add_inputs_also_read_through_views"]().Model, "views");
        Assert.Empty(views.InPlaceNodeNames);
    }

    [Fact]
    public void Parse_WrittenModel_RoundTripsNodesAttributesAndInitializers()
    {
        var builder = Cases["conv_groups_dilation_asymmetric_pads_bias"]();
        var parsed = ModelProto.Parser.ParseFrom(builder.Bytes());
        Assert.Equal(11, parsed.DefaultOpset());
        var conv = Assert.Single(parsed.Graph.Node);
        Assert.Equal("Conv", conv.OpType);
        Assert.Equal(new long[] { 1, 0, 2, 1 }, conv.Ints("pads"));
        Assert.Equal(2, conv.Int("group", 1));
        Assert.Equal(new long[] { 6, 2, 3, 3 }, parsed.Graph.Initializer[0].Dims);
        Assert.Equal(builder.Model.Graph.Initializer[0].ToFloats(), parsed.Graph.Initializer[0].ToFloats());
        Assert.Equal(new long[] { 2, 4, 9, 8 }, parsed.Graph.Input[0].Shape());
    }

    [Fact]
    public void Load_UnsupportedOperator_FailsAtLoadNamingOpNodeAndOpset()
    {
        var b = new OnnxModelBuilder(13, [1, 3, 4, 4]);
        var n = b.Node("Relu", ["x"]);
        b.Model.Graph.Node.Add(new NodeProto { OpType = "NonMaxSuppression", Name = "nms_head", Input = { n }, Output = { "y" } });
        b.Output("y");
        var ex = Assert.Throws<NotSupportedException>(() => new OnnxGraphModule(b.Model, "detector.onnx"));
        Assert.StartsWith("ONNX operator 'NonMaxSuppression' (node 'nms_head', opset 13) in 'detector.onnx' is not supported.", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Forward_ReshapeWithFixedBatchOne_KeepsRealBatch()
    {
        // Exported with batch 1: Reshape to the constant [1, -1] must not fold a batch of 3 into one row.
        var b = new OnnxModelBuilder(13, [1, 2, 3, 3]);
        var g = b.Node("GlobalAveragePool", ["x"]);
        b.Output(b.Node("Reshape", [g, b.Ints(1, 2)]));
        var bytes = b.Bytes();
        var input = b.RandomInput(batch: 3);
        var expected = new List<float>();
        for (var i = 0; i < 3; i++)
        {
            expected.AddRange(OrtReference.Run(bytes, input.AsSpan(i * 18, 18).ToArray(), [1, 2, 3, 3]));
        }

        using var module = new OnnxGraphModule(ModelProto.Parser.ParseFrom(bytes), "fixed-batch");
        using var y = module.forward(torch.tensor(input, [3, 2, 3, 3]));
        Assert.Equal(new long[] { 3, 2 }, y.shape);
        OrtReference.AssertClose([.. expected], y.data<float>().ToArray(), 1e-5, "batch 3");
    }
}
