#!/usr/bin/python3
"""Checks ONNX files written by TransferLearning's export with the ONNX checker (offline; not run in CI).

Usage:
    /usr/bin/python3 tools/onnx/check_export.py FILE.onnx [FILE.onnx ...]

Uses Debian's python3-onnx (1.12: IR 8, opset 17). For each file: onnx.checker.check_model(model, full_check=True)
(structure, operator schemas, and strict shape inference), the opset and IR version, and, for a classifier export
(input 'image'), the contract: input 'image' float32 [N, 3, H, W], output 'probabilities' (and 'logits' if present)
float32 [N, classes], and the metadata keys classes, input_size, resize, source, transferlearning_version.
Exit code 0 when every file passes, 1 otherwise.

To check the models the tests export:
    TRANSFERLEARNING_EXPORT_KEEP_DIR=/tmp/export-keep dotnet test tests/TransferLearning.Core.Tests -c Release \
        --filter "FullyQualifiedName~TransferLearning.Core.Tests.Export"
    /usr/bin/python3 tools/onnx/check_export.py /tmp/export-keep/*.onnx
"""
import json
import sys

import onnx
from onnx import TensorProto

REQUIRED_METADATA = ["classes", "input_size", "resize", "source", "transferlearning_version"]


def dims(value_info):
    return [d.dim_param if d.dim_param else d.dim_value for d in value_info.type.tensor_type.shape.dim]


def check_contract(model):
    graph = model.graph
    inputs = {i.name: i for i in graph.input}
    outputs = {o.name: o for o in graph.output}
    image = inputs["image"]
    assert len(graph.input) == 1, f"inputs: {list(inputs)}"
    assert image.type.tensor_type.elem_type == TensorProto.FLOAT, "image is not float32"
    shape = dims(image)
    assert len(shape) == 4 and isinstance(shape[0], str) and shape[1] == 3, f"image shape {shape}"
    meta = {p.key: p.value for p in model.metadata_props}
    missing = [k for k in REQUIRED_METADATA if k not in meta]
    assert not missing, f"metadata missing {missing}"
    classes = json.loads(meta["classes"])
    size = json.loads(meta["input_size"])
    assert size == shape[2:], f"input_size {size} vs image {shape}"
    assert meta["resize"] in ("stretch", "center-crop"), meta["resize"]
    assert "probabilities" in outputs, f"outputs: {list(outputs)}"
    for name in outputs:
        assert name in ("probabilities", "logits"), f"unexpected output {name}"
        out = dims(outputs[name])
        assert outputs[name].type.tensor_type.elem_type == TensorProto.FLOAT
        assert out[0] == shape[0] and out[1] == len(classes), f"{name} shape {out}, {len(classes)} classes"
    return f"image {shape}, outputs {list(outputs)}, {len(classes)} classes, resize {meta['resize']}"


def main(paths):
    failures = 0
    for path in paths:
        try:
            model = onnx.load(path)
            onnx.checker.check_model(model, full_check=True)
            opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
            ops = sorted({n.op_type for n in model.graph.node})
            detail = check_contract(model) if any(i.name == "image" for i in model.graph.input) else "backbone/graph only"
            print(f"OK   {path}: IR {model.ir_version}, opset {opsets}, {len(model.graph.node)} nodes; {detail}; ops {', '.join(ops)}")
        except Exception as e:  # noqa: BLE001 - report every file
            failures += 1
            lines = str(e).splitlines()
            more = f" (+{len(lines) - 3} more lines)" if len(lines) > 3 else ""
            print(f"FAIL {path}: {type(e).__name__}: {' | '.join(lines[:3])}{more}")
    print(f"{len(paths) - failures} of {len(paths)} passed")
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__)
        sys.exit(2)
    sys.exit(main(sys.argv[1:]))
