"""Writes Int8Ops.pt: a TorchScript module whose methods call PyTorch's quantized (fbgemm/x86) operators.

TorchSharp 0.107 has no API for quantized convolutions, and torch.jit.compile in LibTorch cannot resolve the
`quantized::` operator namespace; a saved TorchScript module can. The module holds no weights: the library packs
them at run time through `add_conv`. Regenerate with PyTorch (tested with 1.13, Debian python3-torch):
    /usr/bin/python3 tools/int8/make_int8_ops.py src/TransferLearning.Core/Backbones/Onnx/Int8Ops.pt
"""
import sys
from typing import List, Optional

import torch


class Int8Ops(torch.nn.Module):
    packed: List[torch.classes.quantized.Conv2dPackedParamsBase]

    def __init__(self):
        super().__init__()
        self.packed = torch.jit.annotate(List[torch.classes.quantized.Conv2dPackedParamsBase], [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @torch.jit.export
    def add_conv(self, w: torch.Tensor, b: Optional[torch.Tensor], w_scale: torch.Tensor,
                 stride_h: int, stride_w: int, pad_h: int, pad_w: int, dil_h: int, dil_w: int, groups: int) -> int:
        """Quantizes a float weight per output channel (symmetric int8) and packs it; returns its index."""
        zero = torch.zeros([w.size(0)], dtype=torch.long)
        qw = torch.quantize_per_channel(w.contiguous(), w_scale.double(), zero, 0, torch.qint8)
        self.packed.append(torch.ops.quantized.conv2d_prepack(
            qw, b, [stride_h, stride_w], [pad_h, pad_w], [dil_h, dil_w], groups))
        return len(self.packed) - 1

    @torch.jit.export
    def quantize(self, x: torch.Tensor, scale: float, zero_point: int) -> torch.Tensor:
        return torch.quantize_per_tensor(x.contiguous(memory_format=torch.channels_last), scale, zero_point, torch.quint8)

    @torch.jit.export
    def conv(self, x: torch.Tensor, index: int, relu: bool, scale: float, zero_point: int) -> torch.Tensor:
        if relu:
            return torch.ops.quantized.conv2d_relu(x, self.packed[index], scale, zero_point)
        return torch.ops.quantized.conv2d(x, self.packed[index], scale, zero_point)

    @torch.jit.export
    def pad(self, x: torch.Tensor, left: int, right: int, top: int, bottom: int) -> torch.Tensor:
        """Pads a quantized NCHW tensor's W and H with its zero point (the real value 0), staying channels-last."""
        return torch.constant_pad_nd(x, [left, right, top, bottom], 0.0).contiguous(memory_format=torch.channels_last)

    @torch.jit.export
    def hardswish(self, x: torch.Tensor, scale: float, zero_point: int) -> torch.Tensor:
        return torch.ops.quantized.hardswish(x, scale, zero_point)

    @torch.jit.export
    def add(self, a: torch.Tensor, b: torch.Tensor, relu: bool, scale: float, zero_point: int) -> torch.Tensor:
        if relu:
            return torch.ops.quantized.add_relu(a, b, scale, zero_point)
        return torch.ops.quantized.add(a, b, scale, zero_point)


if __name__ == "__main__":
    torch.jit.script(Int8Ops()).save(sys.argv[1])
