"""Measurement as small pure functions: parameters, nonzeros, bytes on disk, FLOPs, latency.

>>> from torch import nn
>>> param_count(nn.Linear(3, 2))
8
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def nonzero_count(model: nn.Module) -> int:
    """Nonzero parameters; a pruning mask's zeros (weight_orig * mask) are counted as zeros."""
    return sum(int(torch.count_nonzero(t)) for t in effective_weights(model).values())


def effective_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters as the forward pass sees them: masked weights where torch's pruning applies."""
    state = model.state_dict()
    out = {}
    for name, t in state.items():
        if name.endswith("_mask"):
            continue
        if name.endswith("_orig"):
            base = name[: -len("_orig")]
            out[base] = t * state[base + "_mask"]
        elif t.is_floating_point() and not name.endswith(("running_mean", "running_var")):
            out[name] = t
    return out


def file_bytes(path: str | os.PathLike) -> int:
    """Bytes of a file on disk."""
    return Path(path).stat().st_size


@torch.no_grad()
def flops(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 32, 32)) -> int:
    """Floating-point operations of one forward pass (torch.utils.flop_counter; a MAC is 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.zeros(input_shape, device=device))
    model.train(was_training)
    return int(counter.get_total_flops())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def latency(
    fn: Callable[[], object],
    device: torch.device | str = "cpu",
    warmup: int = 3,
    repeats: int = 10,
) -> dict[str, float]:
    """Seconds per call of fn: warm-up, then perf_counter around each call (CUDA: synchronised)."""
    device = torch.device(device)
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return {
        "median": statistics.median(times),
        "mean": statistics.fmean(times),
        "min": min(times),
        "max": max(times),
    }


@torch.no_grad()
def compare_latency(
    models: dict[str, nn.Module],
    batch: torch.Tensor,
    rounds: int = 5,
    repeats: int = 5,
) -> dict[str, float]:
    """Median seconds per forward for several models, timed interleaved in one run.

    Interleaving the rounds spreads a noisy machine's slow moments over every model, so the
    ratios between them are fair even when the absolute times are not.
    """
    samples: dict[str, list[float]] = {name: [] for name in models}
    for m in models.values():
        m.eval()
        for _ in range(2):
            m(batch)
    for _ in range(rounds):
        for name, m in models.items():
            samples[name].append(latency(lambda m=m: m(batch), batch.device, 0, repeats)["median"])
    return {name: statistics.median(ts) for name, ts in samples.items()}
