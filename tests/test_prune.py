from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from compress.errors import FormatError
from compress.measure import nonzero_count, param_count
from compress.models import build_arch, build_student, count_params_of, load_model, save_model
from compress.prune import (
    GROUPS,
    PruneConfig,
    apply,
    keep_indices,
    load_sparse,
    magnitude_prune,
    prune_channels,
    save_sparse,
    schedule,
    slimming_scores,
    widths_after,
)
from compress.train import TrainConfig, bn_l1_penalty


def trained_like_student():
    torch.manual_seed(0)
    net = build_student()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(-1, 1)
                m.running_mean.uniform_(-0.1, 0.1)
    return net.eval()


@given(n=st.integers(1, 300), rate=st.floats(0.01, 0.99))
@settings(max_examples=100, deadline=None)
def test_kept_fraction_is_the_rate(n, rate):
    scores = torch.rand(n, generator=torch.Generator().manual_seed(n))
    if round(n * rate) < 1:
        with pytest.raises(ValueError, match="remove every one"):
            keep_indices(scores, rate)
        return
    kept = keep_indices(scores, rate)
    assert len(kept) == round(n * rate)
    assert torch.equal(kept, torch.sort(kept).values)
    dropped = torch.ones(n, dtype=torch.bool)
    dropped[kept] = False
    if dropped.any():
        assert scores[kept].min() >= scores[dropped].max()


@pytest.mark.parametrize("rate", [0.0, 1.0, -0.5, 1.5])
def test_rate_outside_zero_one(rate):
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        PruneConfig(rate=rate)


def test_rate_that_empties_a_layer():
    with pytest.raises(ValueError, match="remove every one of 1 channels"):
        keep_indices(torch.tensor([0.3]), 0.4)


@pytest.mark.parametrize("method", ["slimming", "random"])
def test_pruned_network_is_smaller_runs_and_counts_exactly(method):
    net = trained_like_student()
    small = apply(net, PruneConfig(0.5, method))
    assert small.channels == [8, 16, 32, 64, 128, 128, 128, 256]
    assert param_count(small) == count_params_of(small.channels, "dws", 1, 10)
    assert small(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_slimming_keeps_the_largest_gammas_and_their_weights():
    net = trained_like_student()
    scores = slimming_scores(net)
    keep = {g: keep_indices(s, 0.5) for g, s in scores.items()}
    small = prune_channels(net, keep)
    k0, k1 = keep[0], keep[1]
    assert torch.equal(small.cnn[0][0].weight, net.cnn[0][0].weight[k0])
    assert torch.equal(small.cnn[1][1].weight, net.cnn[1][1].weight[k0])
    assert torch.equal(small.cnn[1][3].weight, net.cnn[1][3].weight[k1][:, k0])


def test_keeping_everything_reproduces_the_output():
    net = trained_like_student()
    full = {g: torch.arange(net.channels[g]) for g in GROUPS}
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(prune_channels(net, full)(x), net(x))


def test_pruning_never_changes_the_input():
    net = trained_like_student()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    apply(net, PruneConfig(0.7))
    magnitude_prune(net, 100_000)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert not any(k.endswith("_mask") for k in net.state_dict())


def test_pruned_model_file_records_widths_and_loads_identically(tmp_path):
    small = apply(trained_like_student(), PruneConfig(0.6))
    save_model(small, tmp_path / "p.pt")
    back = load_model(tmp_path / "p.pt").eval()
    assert back.channels == small.channels
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(back(x), small(x))


def test_only_the_student_topology_is_channel_pruned():
    with pytest.raises(TypeError, match="depthwise-separable"):
        apply(build_arch("conv"), PruneConfig(0.5))


def test_widths_after_matches_real_steps():
    net = trained_like_student()
    steps = list(schedule(net, PruneConfig(0.8), lambda m: m, lambda m, s: s >= 3))
    assert [s for s, _ in steps] == [1, 2, 3]
    assert steps[-1][1].channels == widths_after(net.channels, 0.8, 3)


def test_magnitude_prune_hits_the_target_and_repeats():
    net = trained_like_student()
    once = magnitude_prune(net, 150_000)
    assert nonzero_count(once) == 150_000
    twice = magnitude_prune(once, 100_000)
    assert nonzero_count(twice) == 100_000
    assert param_count(twice) == param_count(net)  # dense storage, masked zeros


def test_sparse_file_round_trip_and_size(tmp_path):
    masked = magnitude_prune(trained_like_student(), 60_000)
    sparse = save_sparse(masked, tmp_path / "s.pt")
    dense = save_model(trained_like_student(), tmp_path / "d.pt")
    assert sparse < dense / 2
    from compress.measure import effective_weights

    back = load_sparse(tmp_path / "s.pt")
    for name, t in effective_weights(masked).items():
        assert torch.equal(back[name], t)
    (tmp_path / "s.pt").write_bytes((tmp_path / "s.pt").read_bytes()[:100])
    with pytest.raises(FormatError, match="not a readable sparse-model file"):
        load_sparse(tmp_path / "s.pt")


def test_bn_l1_penalty_is_the_sum_of_gammas():
    net = build_student()
    total = sum(m.weight.abs().sum() for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    assert torch.allclose(bn_l1_penalty(net), total)
    assert TrainConfig(bn_l1=1e-4).bn_l1 == 1e-4
