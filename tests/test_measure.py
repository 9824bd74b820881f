from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune

from compress.measure import compare_latency, file_bytes, flops, latency, nonzero_count, param_count


def test_counts_are_exact():
    lin = nn.Linear(4, 3)
    assert param_count(lin) == 15
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias.fill_(1.0)
    assert nonzero_count(lin) == 3


def test_nonzero_count_sees_pruning_masks():
    lin = nn.Linear(10, 10, bias=False)
    prune.l1_unstructured(lin, "weight", amount=0.3)
    assert param_count(lin) == 100
    assert nonzero_count(lin) == 70


def test_flops_of_a_linear_layer():
    # A (1 x 8) @ (8 x 4) product is 32 multiply-adds = 64 FLOPs.
    assert flops(nn.Linear(8, 4, bias=False), (1, 8)) == 64


def test_flops_of_a_convolution():
    conv = nn.Conv2d(3, 5, 3, padding=1, bias=False)
    assert flops(conv, (1, 3, 6, 6)) == 2 * 3 * 5 * 9 * 36


def test_file_bytes(tmp_path):
    (tmp_path / "f").write_bytes(b"x" * 1234)
    assert file_bytes(tmp_path / "f") == 1234


def test_latency_statistics_are_ordered():
    stats = latency(lambda: sum(range(1000)), repeats=5)
    assert 0 < stats["min"] <= stats["median"] <= stats["max"]


def test_compare_latency_ranks_a_bigger_model_slower():
    small = nn.Conv2d(3, 4, 3)
    big = nn.Sequential(*[nn.Conv2d(3 if i == 0 else 64, 64, 3, padding=1) for i in range(4)])
    times = compare_latency({"small": small, "big": big}, torch.zeros(8, 3, 32, 32), rounds=3)
    assert times["big"] > times["small"]
