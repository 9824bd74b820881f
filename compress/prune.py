"""Pruning: network slimming that rebuilds a smaller student, and two honest baselines.

Scoring, choosing and surgery are separate:
- `slimming_scores` ranks channels by |BatchNorm gamma| (Liu et al. 2017); `random_scores` is
  the control ShrinkBench recommends;
- `keep_indices` keeps a fraction `rate` of a layer's channels (rate 0.95 keeps 95%);
- `prune_channels` builds a physically smaller ConvNet and copies the kept weights.

Channel group g (0..6) is the output of layer g, read by layer g+1's depthwise conv, BatchNorm
and pointwise conv; its score is the gamma of that BatchNorm. The last width b7 feeds the
classifier through pooling and has no BatchNorm, so it is not pruned.

>>> from compress.models import build_student
>>> small = apply(build_student(), PruneConfig(rate=0.5))
>>> small.channels
[8, 16, 32, 64, 128, 128, 128, 256]
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from compress.cache import atomic_write_bytes
from compress.errors import FormatError
from compress.measure import effective_weights
from compress.models import ConvNet, copy_model

GROUPS = range(7)  # channel groups b0..b6
METHODS = ("slimming", "random")


@dataclass(frozen=True)
class PruneConfig:
    rate: float = 0.95  # fraction of each layer's channels kept per step (the reference: 0.95)
    method: str = "slimming"
    seed: int = 0  # random channel pruning only

    def __post_init__(self) -> None:
        check_rate(self.rate)
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")


def check_rate(rate: float) -> float:
    if not 0.0 < rate < 1.0:
        raise ValueError(
            f"pruning rate must lie strictly between 0 and 1 (kept fraction), got {rate}"
        )
    return rate


def _check_student(model: nn.Module) -> ConvNet:
    if not isinstance(model, ConvNet) or model.kind != "dws":
        raise TypeError("channel pruning works on the student's depthwise-separable ConvNet")
    return model


def slimming_scores(model: ConvNet) -> dict[int, torch.Tensor]:
    """|gamma| of the BatchNorm that reads each channel group."""
    _check_student(model)
    return {g: model.cnn[g + 1][1].weight.detach().abs().cpu() for g in GROUPS}


def random_scores(model: ConvNet, seed: int = 0) -> dict[int, torch.Tensor]:
    _check_student(model)
    gen = torch.Generator().manual_seed(seed)
    return {g: torch.rand(model.channels[g], generator=gen) for g in GROUPS}


def keep_indices(scores: torch.Tensor, rate: float) -> torch.Tensor:
    """Sorted indices of the round(rate * n) highest scores.

    >>> keep_indices(torch.tensor([0.1, 0.9, 0.5, 0.7]), 0.5).tolist()
    [1, 3]
    """
    check_rate(rate)
    n = scores.numel()
    keep = round(n * rate)
    if keep < 1:
        raise ValueError(
            f"rate {rate} would remove every one of {n} channels of a layer; use a higher rate"
        )
    return torch.sort(torch.topk(scores, keep).indices).values


def prune_channels(model: ConvNet, keep: dict[int, torch.Tensor]) -> ConvNet:
    """A new, smaller ConvNet holding the kept channels' weights; model is not changed."""
    _check_student(model)
    widths = [len(keep[g]) if g in keep else c for g, c in enumerate(model.channels)]
    new = ConvNet(widths, model.num_classes, model.in_channels, "dws")
    idx = [keep.get(g, torch.arange(c)) for g, c in enumerate(model.channels)]
    old_state, state = model.state_dict(), {}
    for name in new.state_dict():
        t = old_state[name]
        parts = name.split(".")
        if parts[0] == "fc":
            state[name] = t.clone()
            continue
        layer, pos = int(parts[1]), int(parts[2])
        if t.dim() == 0:  # BatchNorm's num_batches_tracked
            state[name] = t.clone()
        elif layer == 0:  # full conv 3 -> b0 and its BatchNorm
            state[name] = t[idx[0]].clone()
        elif pos in (0, 1):  # depthwise conv and BatchNorm over b_{layer-1}
            state[name] = t[idx[layer - 1]].clone()
        else:  # pointwise b_{layer-1} -> b_layer
            out = t[idx[layer]]
            state[name] = (out[:, idx[layer - 1]] if t.dim() > 1 else out).clone()
    new.load_state_dict(state)
    return new.to(next(model.parameters()).device).train(model.training)


def apply(model: nn.Module, config: PruneConfig) -> ConvNet:
    """One pruning step: score, choose, rebuild. Returns a new, smaller network."""
    student = _check_student(model)
    if config.method == "slimming":
        scores = slimming_scores(student)
    else:
        scores = random_scores(student, config.seed)
    return prune_channels(student, {g: keep_indices(s, config.rate) for g, s in scores.items()})


def schedule(
    model: ConvNet,
    config: PruneConfig,
    finetune: Callable[[ConvNet], ConvNet],
    stop: Callable[[ConvNet, int], bool],
) -> Iterator[tuple[int, ConvNet]]:
    """Iterative pruning: prune a step, fine-tune, yield (step, model); until stop(model, step).

    Each step prunes the previous step's fine-tuned network; the input model is not changed.
    """
    step, current = 0, model
    while not stop(current, step):
        step += 1
        current = finetune(apply(current, replace(config, seed=config.seed + step)))
        yield step, current


def widths_after(channels: list[int], rate: float, steps: int) -> list[int]:
    """Channel widths after `steps` pruning steps at rate; they do not depend on the scores."""
    out = list(channels)
    for _ in range(steps):
        out = [round(c * rate) if g in GROUPS else c for g, c in enumerate(out)]
    return out


def prunable_weights(model: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def magnitude_prune(model: nn.Module, target_nonzero: int) -> nn.Module:
    """Global unstructured magnitude pruning (torch.nn.utils.prune) of a copy of model,
    to at most target_nonzero nonzero parameters in total. The mask stays, so fine-tuning
    keeps pruned weights at zero."""
    model = copy_model(model)
    params = prunable_weights(model)
    total_nonzero = sum(int(torch.count_nonzero(t)) for t in effective_weights(model).values())
    in_weights = sum(int(torch.count_nonzero(getattr(m, n))) for m, n in params)
    remove = max(0, total_nonzero - target_nonzero)
    if remove >= in_weights:
        raise ValueError(f"cannot reach {target_nonzero} nonzero parameters by pruning weights")
    # On a model pruned before, torch applies `amount` to the weights not yet pruned.
    torch_prune.global_unstructured(
        params, pruning_method=torch_prune.L1Unstructured, amount=remove
    )
    return model


def save_sparse(model: nn.Module, path: str | os.PathLike) -> int:
    """A sparse-aware file: per tensor a 1-bit occupancy mask and the nonzero float32 values."""
    out = {}
    for name, t in effective_weights(model).items():
        flat = t.detach().cpu().reshape(-1)
        mask = flat != 0
        out[name] = {
            "shape": torch.tensor(t.shape),
            "mask": torch.from_numpy(np.packbits(mask.numpy())),
            "values": flat[mask].float(),
        }
    buf = io.BytesIO()
    torch.save(out, buf)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path).stat().st_size


def load_sparse(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The dense tensors of a file written by save_sparse."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise FormatError(f"{path} is not a readable sparse-model file: {exc}") from exc
    out = {}
    for name, entry in blob.items():
        shape = tuple(entry["shape"].tolist())
        n = int(np.prod(shape)) if shape else 1
        mask = torch.from_numpy(np.unpackbits(entry["mask"].numpy(), count=n).astype(bool))
        dense = torch.zeros(n)
        dense[mask] = entry["values"]
        out[name] = dense.view(shape)
    return out
