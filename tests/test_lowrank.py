from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from compress.lowrank import (
    LowRankConfig,
    apply,
    rank_for_energy,
    svd_conv1x1,
    svd_linear,
    tucker2_conv,
)
from compress.measure import param_count
from compress.models import build_resnet18, build_student


def test_full_rank_reproduces_the_original():
    torch.manual_seed(0)
    lin, pw = nn.Linear(12, 7), nn.Conv2d(10, 6, 1)
    conv = nn.Conv2d(5, 8, 3, padding=1, stride=2)
    x, y = torch.randn(4, 12), torch.randn(2, 10, 6, 6)
    z = torch.randn(2, 5, 9, 9)
    assert torch.allclose(svd_linear(lin, 7)(x), lin(x), atol=1e-5)
    assert torch.allclose(svd_conv1x1(pw, 6)(y), pw(y), atol=1e-5)
    assert torch.allclose(tucker2_conv(conv, 5, 8)(z), conv(z), atol=1e-5)


def test_error_does_not_grow_with_rank():
    torch.manual_seed(1)
    lin, conv = nn.Linear(20, 16), nn.Conv2d(8, 12, 3, padding=1)
    x, z = torch.randn(32, 20), torch.randn(4, 8, 7, 7)
    lin_err = [(svd_linear(lin, r)(x) - lin(x)).norm().item() for r in range(1, 17)]
    conv_err = [(tucker2_conv(conv, r, r)(z) - conv(z)).norm().item() for r in range(1, 9)]
    for errs in (lin_err, conv_err):
        assert all(b <= a + 1e-4 for a, b in itertools.pairwise(errs))
        assert errs[-1] < 1e-3 * max(errs[0], 1.0) or errs[-1] < errs[0]


@pytest.mark.parametrize("rank", [0, 8, -1])
def test_bad_ranks(rank):
    with pytest.raises(ValueError, match="rank .* is out of range"):
        svd_linear(nn.Linear(7, 5), rank if rank != 8 else 6)
    with pytest.raises(ValueError, match="out of range"):
        tucker2_conv(nn.Conv2d(4, 4, 3), rank if rank != 8 else 5, 2)


def test_rank_for_energy_exact():
    s = torch.tensor([4.0, 2.0, 1.0, 1.0])  # squares 16, 4, 1, 1 of 22
    assert [rank_for_energy(s, e) for e in (0.5, 16 / 22, 0.9, 0.99, 1.0)] == [1, 1, 2, 4, 4]


def test_apply_shrinks_and_keeps_the_input():
    student = build_student()
    before = {k: v.clone() for k, v in student.state_dict().items()}
    low = apply(student, LowRankConfig(0.6))
    assert param_count(low) < param_count(student)
    assert low(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items())


def test_energy_one_leaves_dense_layers_alone():
    student = build_student()
    assert param_count(apply(student, LowRankConfig(1.0))) == param_count(student)


def test_target_params_is_met():
    net = build_student()
    low = apply(net, LowRankConfig(target_params=120_000))
    assert param_count(low) <= 120_000


def test_teacher_decomposes():
    teacher = build_resnet18(10).eval()
    low = apply(teacher, LowRankConfig(0.5))
    assert param_count(low) < param_count(teacher) / 2
    assert low(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_bad_energy():
    with pytest.raises(ValueError, match="energy"):
        LowRankConfig(energy=0.0)
