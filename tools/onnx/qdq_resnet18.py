"""Writes an int8 QDQ form of ML.NET's offline ResNet18 for ONNX Runtime, to time ONNX Runtime's int8 kernels (speed only).

BatchNorm is folded into the convolutions; every convolution's weights become int8 per output channel
(DequantizeLinear, axis 0) and every activation gets a QuantizeLinear/DequantizeLinear pair with a made-up scale
(0.05; zero point 0 after ReLU and max pooling, 128 elsewhere), which ONNX Runtime fuses into QLinearConv and
QLinearAdd. The features it computes mean nothing; the arithmetic is what a calibrated model runs. Also writes the
folded float graph (r18_f.onnx) with a free batch dimension.
    /usr/bin/python3 tools/onnx/qdq_resnet18.py <ResNet18.onnx> <out-dir>
then time it next to this library's int8 forward:
    bench … forward --ort-int8 <out-dir>/r18_qdq.onnx
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ACTIVATION_SCALE = 0.05


def fold_batch_norm(nodes, weights, consumers):
    """Conv followed only by BatchNormalization becomes one Conv with folded weights and bias."""
    folded, dropped = [], set()
    for node in nodes:
        if id(node) in dropped:
            continue
        readers = consumers.get(node.output[0], [])
        if node.op_type == "Conv" and len(readers) == 1 and readers[0].op_type == "BatchNormalization":
            bn = readers[0]
            w = weights[node.input[1]]
            bias = weights[node.input[2]] if len(node.input) > 2 else np.zeros(w.shape[0], np.float32)
            gamma, beta, mean, var = (weights[name] for name in bn.input[1:5])
            eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
            k = gamma / np.sqrt(var + eps)
            weights[node.input[1]] = (w * k[:, None, None, None]).astype(np.float32)
            bias_name = node.input[1] + "_folded_bias"
            weights[bias_name] = ((bias - mean) * k + beta).astype(np.float32)
            conv = helper.make_node("Conv", [node.input[0], node.input[1], bias_name], [bn.output[0]], name=node.name or node.output[0])
            conv.attribute.extend(node.attribute)
            folded.append(conv)
            dropped.add(id(bn))
        else:
            folded.append(node)
    return folded


def main(source, out_dir):
    model = onnx.load(source)
    graph = model.graph
    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    nodes = fold_batch_norm(list(graph.node), weights, consumers)

    qnodes, qweights, renamed = [], {}, {}

    def quantize_dequantize(name, after_relu):
        scale, zero = name + "_scale", name + "_zero"
        qweights[scale] = np.array(ACTIVATION_SCALE, np.float32)
        qweights[zero] = np.array(0 if after_relu else 128, np.uint8)
        qnodes.append(helper.make_node("QuantizeLinear", [name, scale, zero], [name + "_q"]))
        qnodes.append(helper.make_node("DequantizeLinear", [name + "_q", scale, zero], [name + "_dq"]))
        return name + "_dq"

    input_name, output_name = graph.input[0].name, graph.output[0].name
    renamed[input_name] = quantize_dequantize(input_name, False)
    for node in nodes:
        inputs = [renamed.get(name, name) for name in node.input]
        if node.op_type == "Conv":
            w = weights[inputs[1]]
            scale = np.abs(w).reshape(w.shape[0], -1).max(1) / 127 + 1e-8
            base = inputs[1]
            qweights[base + "_int8"] = np.clip(np.round(w / scale[:, None, None, None]), -127, 127).astype(np.int8)
            qweights[base + "_wscale"] = scale.astype(np.float32)
            qweights[base + "_wzero"] = np.zeros(w.shape[0], np.int8)
            qnodes.append(helper.make_node("DequantizeLinear", [base + "_int8", base + "_wscale", base + "_wzero"], [base + "_dq"], axis=0))
            inputs[1] = base + "_dq"
            if len(inputs) > 2:
                qweights[inputs[2]] = weights[inputs[2]]
        copy = helper.make_node(node.op_type, inputs, list(node.output), name=node.name)
        copy.attribute.extend(node.attribute)
        qnodes.append(copy)
        output = node.output[0]
        readers = [n.op_type for n in consumers.get(output, [])]
        if output == output_name or node.op_type == "AveragePool":
            continue
        if node.op_type in ("Conv", "Add") and readers == ["Relu"]:
            continue  # quantized after the ReLU, which ONNX Runtime fuses into the QLinear op
        renamed[output] = quantize_dequantize(output, node.op_type in ("Relu", "MaxPool"))

    for name, value in weights.items():
        if name not in qweights and any(name in n.input for n in qnodes):
            qweights[name] = value

    def save(graph_nodes, initializers, name, path):
        g = helper.make_graph(
            graph_nodes, name,
            [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", 3, 224, 224])],
            [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["N", 512, 1, 1])],
            [numpy_helper.from_array(v, k) for k, v in initializers.items()])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
        m.ir_version = 7
        onnx.checker.check_model(m)
        onnx.save(m, path)

    save(qnodes, qweights, "resnet18_qdq", out_dir + "/r18_qdq.onnx")
    used = {k: v for k, v in weights.items() if any(k in n.input for n in nodes)}
    save(nodes, used, "resnet18_folded", out_dir + "/r18_f.onnx")
    print(f"wrote {out_dir}/r18_qdq.onnx ({len(qnodes)} nodes) and {out_dir}/r18_f.onnx")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
