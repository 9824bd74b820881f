"""Real int8 inference: PyTorch's eager-mode static post-training quantization (x86 / fbgemm).

Conv + BatchNorm pairs are fused, observers are calibrated on training images, then modules are
swapped for quantized kernels. Runs on the CPU only, which is where these kernels exist.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterator

import torch
from torch import nn

from compress.models import ConvNet


@contextlib.contextmanager
def quantized_engine(name: str) -> Iterator[None]:
    """Select a quantized backend for the block, then restore the previous one."""
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = name
    try:
        yield
    finally:
        torch.backends.quantized.engine = previous


def fusable_pairs(model: ConvNet) -> list[list[str]]:
    """Conv + BatchNorm pairs: the first two modules of every convolutional block."""
    blocks = [i for i, m in enumerate(model.cnn) if isinstance(m, nn.Sequential)]
    return [[f"cnn.{i}.0", f"cnn.{i}.1"] for i in blocks]


def to_int8(
    model: nn.Module, calibration, batches: int = 8, engine: str | None = None
) -> nn.Module:
    """A CPU int8 copy of a ConvNet, calibrated on `batches` batches of `calibration`."""
    from torch.ao import quantization as tq

    if not isinstance(model, ConvNet):
        raise TypeError("to_int8 supports the student's topology (ConvNet)")
    engine = engine or ("x86" if "x86" in torch.backends.quantized.supported_engines else "qnnpack")
    float_model = copy.deepcopy(model).cpu().eval()
    with warnings.catch_warnings():
        # torch.ao.quantization announces its move to torchao and the deprecation of
        # reduce_range; the eager API still works in the torch versions we support.
        warnings.simplefilter("ignore")
        fused = tq.fuse_modules(float_model, fusable_pairs(float_model))
        wrapped = tq.QuantWrapper(fused)
        wrapped.qconfig = tq.get_default_qconfig(engine)
        with quantized_engine(engine):
            prepared = tq.prepare(wrapped)
            with torch.no_grad():
                for i, (x, _) in enumerate(calibration):
                    if i >= batches:
                        break
                    prepared(x.cpu())
            quantized = tq.convert(prepared)
    quantized.engine = engine
    return quantized.eval()


def run_int8(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Forward through an int8 model under the engine it was converted for."""
    with quantized_engine(getattr(model, "engine", "x86")), torch.no_grad():
        return model(x.cpu())
