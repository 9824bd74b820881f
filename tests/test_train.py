from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from compress.data import Loaders
from compress.distill import DistillConfig, distillation_loss, soft_loss
from compress.train import TrainConfig, evaluate, fit


def tiny_loaders(n=64, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 8, 8, generator=g)
    y = (x[:, 0].mean((1, 2)) > 0).long() + (x[:, 1].mean((1, 2)) > 0).long()
    ds = TensorDataset(x, y)
    return Loaders(
        DataLoader(ds, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0)),
        DataLoader(ds, batch_size=32),
        classes,
        3,
    )


def tiny_model():
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 3)
    )


@given(st.integers(0, 10_000))
@settings(max_examples=25, deadline=None)
def test_hard_labels_only_equals_cross_entropy(seed):
    g = torch.Generator().manual_seed(seed)
    s, t = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    y = torch.randint(0, 5, (6,), generator=g)
    loss = distillation_loss(s, t, y, DistillConfig(alpha=0.0, temperature=3.0))
    assert torch.allclose(loss, F.cross_entropy(s, y))
    assert torch.allclose(distillation_loss(s, None, y, DistillConfig()), F.cross_entropy(s, y))


@pytest.mark.parametrize("t", [1.0, 2.0, 4.0, 10.0])
def test_soft_term_is_zero_when_logits_match(t):
    s = torch.randn(8, 10)
    assert soft_loss(s, s.clone(), t).abs().item() < 1e-6


def test_t_squared_keeps_gradients_comparable():
    torch.manual_seed(0)
    s, t = torch.randn(256, 10) * 0.5, torch.randn(256, 10) * 0.5
    norms = []
    for temp in (2.0, 4.0, 8.0, 16.0):
        x = s.clone().requires_grad_(True)
        soft_loss(x, t, temp).backward()
        norms.append(x.grad.norm().item())
    # Without T^2 the gradient would shrink ~T^2 = 64x from T=2 to T=16; with it, within 2x.
    assert max(norms) / min(norms) < 2.0


def test_no_gradient_reaches_the_teacher():
    teacher, student = nn.Linear(4, 3), nn.Linear(4, 3)
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    loss = distillation_loss(student(x), teacher(x), y, DistillConfig(alpha=0.9))
    loss.backward()
    assert teacher.weight.grad is None and student.weight.grad is not None


def test_distill_config_rejects_bad_values():
    with pytest.raises(ValueError, match="alpha"):
        DistillConfig(alpha=1.5)
    with pytest.raises(ValueError, match="temperature"):
        DistillConfig(temperature=0)


def test_fit_is_deterministic_and_leaves_the_input_alone():
    model, loaders = tiny_model(), tiny_loaders()
    before = copy.deepcopy(model.state_dict())
    a = fit(model, loaders, TrainConfig(epochs=3, seed=5), progress=False)
    b = fit(model, loaders, TrainConfig(epochs=3, seed=5), progress=False)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k])
    assert a.accuracy == b.accuracy == a.history[-1]["accuracy"]
    assert len(a.history) == 3


def test_fit_learns_and_distils():
    loaders = tiny_loaders()
    start = evaluate(tiny_model(), loaders.val)
    trained = fit(tiny_model(), loaders, TrainConfig(epochs=8, lr=0.02), progress=False)
    assert trained.accuracy > start
    distilled = fit(
        tiny_model(), loaders, TrainConfig(epochs=2), teacher=trained.model, progress=False
    )
    assert all(p.requires_grad is False for p in trained.model.parameters())
    assert 0.0 <= distilled.accuracy <= 1.0


def test_evaluate_counts_exactly():
    class Fixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return torch.stack([x[:, 0], -x[:, 0]], 1)

    x = torch.tensor([[1.0], [2.0], [-1.0], [3.0]])
    y = torch.tensor([0, 0, 0, 1])
    assert evaluate(Fixed(), DataLoader(TensorDataset(x, y), batch_size=3)) == 0.5
