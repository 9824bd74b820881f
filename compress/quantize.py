"""Uniform affine quantization of weights at any bit width from 1 to 16.

Conv and Linear weights are quantized (they are ~98% of the student's parameters); biases and
BatchNorm parameters and statistics are kept in float16, since quantizing a BatchNorm variance
to a few bits wrecks the network for almost no saving. Per-tensor is the reference's min-max;
per-channel gives each output channel its own range.

>>> import torch
>>> w = torch.tensor([[-1.0, 0.0, 0.5, 1.0]])
>>> q, scale, zero = quantize_tensor(w, bits=2)
>>> q.tolist(), dequantize_tensor(q, scale, zero).tolist()
([[0, 2, 2, 3]], [[-0.6666666865348816, 0.0, 0.0, 0.6666666865348816]])
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from compress.errors import CompressError

GRANULARITIES = ("per_tensor", "per_channel")
MIN_BITS, MAX_BITS = 1, 16


class BitWidthError(CompressError, ValueError):
    """A bit width outside 1..16."""


def check_bits(bits: int) -> int:
    if not isinstance(bits, (int, np.integer)) or isinstance(bits, bool):
        raise BitWidthError(f"bit width must be an integer from 1 to 16, got {bits!r}")
    if not MIN_BITS <= bits <= MAX_BITS:
        raise BitWidthError(
            f"bit width {bits} is out of range: choose an integer from {MIN_BITS} to {MAX_BITS}"
        )
    return int(bits)


@dataclass(frozen=True)
class QuantConfig:
    bits: int = 8
    granularity: str = "per_tensor"  # the reference's min-max over the whole tensor
    extras_dtype: str = "float16"  # biases and BatchNorm: small, sensitive, kept near-exact

    def __post_init__(self) -> None:
        check_bits(self.bits)
        if self.granularity not in GRANULARITIES:
            raise ValueError(
                f"granularity must be one of {GRANULARITIES}, got {self.granularity!r}"
            )
        if self.extras_dtype not in ("float16", "float32"):
            raise ValueError("extras_dtype must be float16 or float32")


def _ranges(w: torch.Tensor, per_channel: bool) -> tuple[torch.Tensor, torch.Tensor]:
    if per_channel and w.dim() > 1:
        flat = w.reshape(w.shape[0], -1)
        lo, hi = flat.min(dim=1).values, flat.max(dim=1).values
    else:
        lo, hi = w.min().reshape(1), w.max().reshape(1)
    # The range always holds 0, so 0 is exact and the zero point lies on the grid.
    return lo.clamp(max=0.0), hi.clamp(min=0.0)


def quantize_tensor(
    w: torch.Tensor, bits: int, per_channel: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Integers in [0, 2^bits - 1], scales (float32) and zero points (int64), per tensor or row.

    Dequantized values are within half a step (scale / 2) of the input.
    """
    bits = check_bits(bits)
    w = w.detach().float()
    levels = (1 << bits) - 1
    lo, hi = _ranges(w, per_channel)
    scale = (hi - lo) / levels
    # A zero range (all zeros, or values so small the step underflows): any step keeps them
    # exact; the smallest normal float is never larger than a real channel's step.
    scale = torch.where(scale > 0, scale, torch.full_like(scale, torch.finfo(torch.float32).tiny))
    zero = torch.round(-lo / scale).clamp(0, levels).to(torch.int64)
    shape = (-1,) + (1,) * (w.dim() - 1) if per_channel and w.dim() > 1 else (1,) * max(w.dim(), 1)
    s, z = scale.view(shape), zero.view(shape)
    q = torch.round(w / s + z).clamp(0, levels).to(torch.int64)
    return q.reshape(w.shape), scale, zero


def dequantize_tensor(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """(q - zero) * scale, broadcasting per-channel scales over the first dimension."""
    shape = (-1,) + (1,) * (q.dim() - 1) if scale.numel() > 1 else (1,) * max(q.dim(), 1)
    return ((q - zero.view(shape)).float() * scale.view(shape)).reshape(q.shape)


def pack_bits(values: np.ndarray | torch.Tensor, bits: int) -> bytes:
    """Pack non-negative integers below 2^bits into ceil(n * bits / 8) bytes, little-endian bits."""
    bits = check_bits(bits)
    v = np.asarray(values, dtype=np.uint32).reshape(-1)
    if v.size and int(v.max()) >> bits:
        raise ValueError(f"a value does not fit in {bits} bits")
    planes = ((v[:, None] >> np.arange(bits, dtype=np.uint32)) & 1).astype(np.uint8)
    return np.packbits(planes.reshape(-1), bitorder="little").tobytes()


def unpack_bits(data: bytes, bits: int, count: int) -> np.ndarray:
    """The inverse of pack_bits: count integers of `bits` bits each."""
    bits = check_bits(bits)
    need = (count * bits + 7) // 8
    if len(data) < need:
        raise ValueError(f"{len(data)} bytes cannot hold {count} values of {bits} bits")
    flat = np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=count * bits, bitorder="little")
    weights = (1 << np.arange(bits, dtype=np.uint64)).astype(np.uint64)
    return (flat.reshape(count, bits).astype(np.uint64) @ weights).astype(np.int64)


def quantized_names(model: nn.Module) -> set[str]:
    """State-dict names of the tensors quantized: Conv and Linear weights."""
    return {
        f"{name}.weight" if name else "weight"
        for name, m in model.named_modules()
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))
    }


def apply(model: nn.Module, config: QuantConfig) -> nn.Module:
    """A copy of model whose weights are quantized then dequantized (what the file holds).

    >>> from compress.models import build_student
    >>> q = apply(build_student(), QuantConfig(bits=4))
    >>> len(torch.unique(q.fc.weight)) <= 16
    True
    """
    out = copy.deepcopy(model).cpu()
    names = quantized_names(out)
    per_channel = config.granularity == "per_channel"
    extras = getattr(torch, config.extras_dtype)
    state = out.state_dict()
    with torch.no_grad():
        for name, t in state.items():
            if name in names:
                q, s, z = quantize_tensor(t, config.bits, per_channel)
                t.copy_(dequantize_tensor(q, s, z))
            elif t.is_floating_point():
                t.copy_(t.to(extras).float())
    return out
