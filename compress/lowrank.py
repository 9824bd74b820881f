"""Low-rank approximation: truncated SVD of Linear and 1x1 convolutions, Tucker-2 of k x k ones.

A Linear or 1x1 conv W (out x in) becomes two layers of rank r: in -> r -> out. A k x k conv
W (out, in, k, k) becomes 1x1 (in -> r_in), k x k core (r_in -> r_out), 1x1 (r_out -> out), with
the factors from the SVDs of W's two channel unfoldings (HOSVD). A layer is decomposed only when
that saves parameters; depthwise and other grouped convolutions are left alone.

>>> import torch
>>> from torch import nn
>>> layer = nn.Linear(8, 6)
>>> low = svd_linear(layer, rank=6)
>>> x = torch.randn(3, 8)
>>> bool(torch.allclose(low(x), layer(x), atol=1e-5))
True
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from compress.models import copy_model


@dataclass(frozen=True)
class LowRankConfig:
    energy: float = 0.9  # fraction of squared singular values kept in every decomposed layer
    target_params: int | None = None  # if set, search the energy that lands at or below it

    def __post_init__(self) -> None:
        if not 0.0 < self.energy <= 1.0:
            raise ValueError(f"energy must lie in (0, 1], got {self.energy}")


def _check_rank(rank: int, full: int, what: str) -> int:
    if not 1 <= rank <= full:
        raise ValueError(f"{what}: rank {rank} is out of range; choose 1..{full} (the full rank)")
    return int(rank)


def rank_for_energy(singular_values: torch.Tensor, energy: float) -> int:
    """The smallest rank whose squared singular values hold `energy` of the total.

    >>> rank_for_energy(torch.tensor([3.0, 1.0, 0.0]), 0.9)
    1
    """
    sq = singular_values.double() ** 2
    total = sq.sum()
    if total == 0:
        return 1
    cum = torch.cumsum(sq, 0) / total
    return int(torch.searchsorted(cum, torch.tensor(energy, dtype=cum.dtype) - 1e-12)) + 1


def _factor(matrix: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    u, s, vh = torch.linalg.svd(matrix.double(), full_matrices=False)
    return u[:, :rank], s[:rank], vh[:rank]


def _split(weight: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(first, second) with second @ first == the rank-r approximation of weight (out x in)."""
    u, s, vh = _factor(weight, rank)
    root = s.sqrt()
    return (root[:, None] * vh).float(), (u * root[None, :]).float()


def svd_linear(layer: nn.Linear, rank: int) -> nn.Sequential:
    """Linear(in, out) as Linear(in, r, no bias) then Linear(r, out)."""
    rank = _check_rank(rank, min(layer.in_features, layer.out_features), "svd_linear")
    first, second = _split(layer.weight.detach(), rank)
    a = nn.Linear(layer.in_features, rank, bias=False)
    b = nn.Linear(rank, layer.out_features, bias=layer.bias is not None)
    with torch.no_grad():
        a.weight.copy_(first)
        b.weight.copy_(second)
        if layer.bias is not None:
            b.bias.copy_(layer.bias)
    return nn.Sequential(a, b)


def svd_conv1x1(layer: nn.Conv2d, rank: int) -> nn.Sequential:
    """A 1x1 convolution as two 1x1 convolutions through rank r channels."""
    cout, cin = layer.out_channels, layer.in_channels
    rank = _check_rank(rank, min(cin, cout), "svd_conv1x1")
    first, second = _split(layer.weight.detach().reshape(cout, cin), rank)
    a = nn.Conv2d(cin, rank, 1, stride=layer.stride, bias=False)
    b = nn.Conv2d(rank, cout, 1, bias=layer.bias is not None)
    with torch.no_grad():
        a.weight.copy_(first.view(rank, cin, 1, 1))
        b.weight.copy_(second.view(cout, rank, 1, 1))
        if layer.bias is not None:
            b.bias.copy_(layer.bias)
    return nn.Sequential(a, b)


def tucker2_conv(layer: nn.Conv2d, rank_in: int, rank_out: int) -> nn.Sequential:
    """A k x k convolution as 1x1 (in -> r_in), k x k (r_in -> r_out), 1x1 (r_out -> out)."""
    if layer.groups != 1:
        raise ValueError("Tucker-2 needs an ungrouped convolution")
    w = layer.weight.detach().double()
    cout, cin, kh, kw = w.shape
    rank_in = _check_rank(rank_in, cin, "tucker2_conv input")
    rank_out = _check_rank(rank_out, cout, "tucker2_conv output")
    u_out = _factor(w.reshape(cout, -1), rank_out)[0]  # cout x r_out
    u_in = _factor(w.transpose(0, 1).reshape(cin, -1), rank_in)[0]  # cin x r_in
    core = torch.einsum("oikl,or,is->rskl", w, u_out, u_in)  # r_out x r_in x k x k
    first = nn.Conv2d(cin, rank_in, 1, bias=False)
    middle = nn.Conv2d(
        rank_in,
        rank_out,
        (kh, kw),
        stride=layer.stride,
        padding=layer.padding,
        dilation=layer.dilation,
        bias=False,
    )
    last = nn.Conv2d(rank_out, cout, 1, bias=layer.bias is not None)
    with torch.no_grad():
        first.weight.copy_(u_in.T.reshape(rank_in, cin, 1, 1).float())
        middle.weight.copy_(core.float())
        last.weight.copy_(u_out.reshape(cout, rank_out, 1, 1).float())
        if layer.bias is not None:
            last.bias.copy_(layer.bias)
    return nn.Sequential(first, middle, last)


def _singular_values(w: torch.Tensor) -> torch.Tensor:
    return torch.linalg.svdvals(w.double())


def decompose_layer(layer: nn.Module, energy: float) -> nn.Module | None:
    """The low-rank replacement of one layer at `energy`, or None where it would not save."""
    if isinstance(layer, nn.Linear):
        w = layer.weight.detach()
        r = rank_for_energy(_singular_values(w), energy)
        if r * (w.shape[0] + w.shape[1]) < w.numel():
            return svd_linear(layer, r)
    elif isinstance(layer, nn.Conv2d) and layer.groups == 1:
        w = layer.weight.detach()
        cout, cin, kh, kw = w.shape
        if kh == kw == 1:
            r = rank_for_energy(_singular_values(w.reshape(cout, cin)), energy)
            if r * (cin + cout) < w.numel():
                return svd_conv1x1(layer, r)
        else:
            r_out = rank_for_energy(_singular_values(w.reshape(cout, -1)), energy)
            r_in = rank_for_energy(_singular_values(w.transpose(0, 1).reshape(cin, -1)), energy)
            if cin * r_in + r_in * r_out * kh * kw + r_out * cout < w.numel():
                return tucker2_conv(layer, r_in, r_out)
    return None


def _apply_energy(model: nn.Module, energy: float) -> nn.Module:
    out = copy_model(model).cpu()
    targets = [
        (name, m) for name, m in out.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))
    ]
    for name, m in targets:
        new = decompose_layer(m, energy)
        if new is not None:
            parent_name, _, child = name.rpartition(".")
            parent = out.get_submodule(parent_name) if parent_name else out
            setattr(parent, child, new)
    return out


def apply(model: nn.Module, config: LowRankConfig) -> nn.Module:
    """A copy of model with every layer that benefits decomposed; model is not changed."""
    if config.target_params is None:
        return _apply_energy(model, config.energy)
    lo, hi = 0.0, 1.0  # bisection on energy: the parameter count grows with it
    best = None
    for _ in range(12):
        mid = (lo + hi) / 2
        candidate = _apply_energy(model, mid)
        if sum(p.numel() for p in candidate.parameters()) <= config.target_params:
            best, lo = candidate, mid
        else:
            hi = mid
    if best is None:
        raise ValueError(f"no energy brings the model under {config.target_params} parameters")
    return best
