"""One training loop for cross-entropy and for distillation; evaluation returns accuracy.

>>> from compress.train import TrainConfig
>>> TrainConfig(epochs=2).lr
0.01
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from compress.data import Loaders
from compress.distill import DistillConfig, distillation_loss
from compress.models import copy_model


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 15
    lr: float = 0.01  # the reference's AdamW learning rate; the one-cycle peak
    weight_decay: float = 0.01  # AdamW's default
    seed: int = 0
    distill: DistillConfig = field(default_factory=DistillConfig)
    bn_l1: float = 0.0  # network slimming's L1 penalty on BatchNorm gammas (Liu et al. 2017)

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs}")


@dataclass
class TrainResult:
    model: nn.Module
    accuracy: float
    seconds: float
    history: list[dict[str, float]]


def default_device() -> torch.device:
    """CUDA when present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: torch.device | None = None) -> float:
    """Top-1 accuracy in [0, 1] over a loader."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct = total = 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        correct += (model(x).argmax(1) == y).sum().item()
        total += len(y)
    model.train(was_training)
    return correct / max(total, 1)


def bn_l1_penalty(model: nn.Module) -> torch.Tensor:
    terms = [m.weight.abs().sum() for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    return torch.stack(terms).sum() if terms else torch.zeros(())


def fit(
    model: nn.Module,
    loaders: Loaders,
    config: TrainConfig,
    teacher: nn.Module | None = None,
    device: torch.device | None = None,
    progress: bool = True,
    desc: str = "train",
) -> TrainResult:
    """Train a copy of model (AdamW, one-cycle); distil from teacher when one is given.

    The input model is never changed. Seeded: the same inputs give the same weights on the CPU.
    """
    device = device or default_device()
    torch.manual_seed(config.seed)
    if getattr(loaders.train, "generator", None) is not None:
        loaders.train.generator.manual_seed(config.seed)  # same shuffles on every call
    model = copy_model(model).to(device)
    if teacher is not None:
        teacher = teacher.to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    start = time.perf_counter()
    history: list[dict[str, float]] = []
    steps = len(loaders.train)
    if config.epochs and steps:
        opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=config.lr, total_steps=config.epochs * steps
        )
        bar = tqdm(range(config.epochs), desc=desc, disable=not progress, leave=False)
        for epoch in bar:
            model.train()
            loss_sum = 0.0
            for x, y in loaders.train:
                x, y = x.to(device), y.to(device)
                logits = model(x)
                with torch.no_grad():
                    t_logits = teacher(x) if teacher is not None else None
                loss = distillation_loss(logits, t_logits, y, config.distill)
                if config.bn_l1:
                    loss = loss + config.bn_l1 * bn_l1_penalty(model)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                loss_sum += loss.item()
            acc = evaluate(model, loaders.val, device)
            history.append({"epoch": epoch + 1, "loss": loss_sum / steps, "accuracy": acc})
            bar.set_postfix(loss=f"{loss_sum / steps:.3f}", acc=f"{acc:.4f}")
    accuracy = history[-1]["accuracy"] if history else evaluate(model, loaders.val, device)
    return TrainResult(model.eval(), accuracy, time.perf_counter() - start, history)
