"""The trained baselines every experiment starts from, built once and kept in the artifact cache.

>>> from compress.baselines import Context
>>> ctx = Context(dataset="mnist5k", profile="smoke")
>>> ctx.profile.name
'smoke'
"""

from __future__ import annotations

import dataclasses
import os
from functools import cached_property
from typing import Any

import torch
from torch import nn

from compress import models
from compress.cache import ArtifactCache
from compress.data import DataConfig, Loaders, get_loaders
from compress.distill import DistillConfig
from compress.profiles import Profile, get_profile
from compress.train import TrainConfig, default_device, fit

ALLOW_DOWNLOAD_ENV = "COMPRESS_ALLOW_DOWNLOAD"


def downloads_allowed(flag: bool = False) -> bool:
    return flag or os.environ.get(ALLOW_DOWNLOAD_ENV, "") not in ("", "0", "false", "no")


class Context:
    """Which data, budget and cache a run uses; builds and caches its trained models."""

    def __init__(
        self,
        dataset: str = "mnist5k",
        profile: str = "default",
        data: DataConfig | None = None,
        cache_dir: str | None = None,
        imagenet_weights: str | None = None,
        allow_download: bool = False,
        distill: DistillConfig | None = None,
        progress: bool = True,
    ):
        get_profile(profile)  # fail early on an unknown name
        self.dataset, self.profile_name = dataset, profile
        self.data = data or DataConfig()
        self.cache_dir = cache_dir
        self.imagenet_weights = imagenet_weights
        self.allow_download = downloads_allowed(allow_download)
        self.distill = distill or DistillConfig()
        self.progress = progress

    @property
    def profile(self) -> Profile:
        return get_profile(self.profile_name)

    @cached_property
    def loaders(self) -> Loaders:
        return get_loaders(self.dataset, self.data)

    @cached_property
    def cache(self) -> ArtifactCache:
        return ArtifactCache(self.cache_dir)

    @property
    def device(self):
        return default_device()

    @property
    def num_classes(self) -> int:
        return self.loaders.num_classes

    def _spec(self, name: str, train: TrainConfig, **extra: Any) -> dict[str, Any]:
        return {
            "model": name,
            "dataset": self.dataset,
            "data": dataclasses.asdict(self.data),
            "train": dataclasses.asdict(train),
            **extra,
        }

    def _trained(
        self,
        name: str,
        build,
        train: TrainConfig,
        teacher: nn.Module | None = None,
        **extra: Any,
    ) -> tuple[nn.Module, dict[str, Any]]:
        def run(model: nn.Module) -> tuple[nn.Module, dict[str, Any]]:
            result = fit(
                model,
                self.loaders,
                train,
                teacher=teacher,
                device=self.device,
                progress=self.progress,
                desc=name,
            )
            info = {
                "accuracy": result.accuracy,
                "train_seconds": result.seconds,
                "epochs": train.epochs,
                "history": result.history,
            }
            return result.model, info

        def seeded_build() -> nn.Module:
            # Initial weights come from the seed, not from whatever the process ran before.
            torch.manual_seed(train.seed)
            return build()

        return self.cache.get_or_train(self._spec(name, train, **extra), seeded_build, run)

    def _teacher_args(self, pretrained: bool) -> tuple[str, TrainConfig, dict[str, str]]:
        p = self.profile
        cfg = TrainConfig(epochs=p.teacher_epochs, lr=p.teacher_lr)
        if pretrained:
            return "teacher-pretrained", cfg, {"weights": "imagenet1k_v1"}
        return "teacher-scratch", cfg, {}

    def teacher(self, pretrained: bool = False) -> tuple[nn.Module, dict[str, Any]]:
        """ResNet18 from scratch (row a) or ImageNet-pretrained and fine-tuned (row b)."""
        name, cfg, extra = self._teacher_args(pretrained)
        n = self.num_classes
        if not pretrained:
            return self._trained(name, lambda: models.build_resnet18(n), cfg)
        # Read the weights before the lock so a missing file fails fast, not inside training.
        state = models.load_imagenet_state(self.imagenet_weights, self.allow_download)

        def build() -> nn.Module:
            m = models.build_resnet18(n)
            m.load_state_dict(
                {k: v for k, v in state.items() if not k.startswith("fc.")}, strict=False
            )
            return m

        return self._trained(name, build, cfg, **extra)

    def student(self) -> tuple[nn.Module, dict[str, Any]]:
        """The reference's student trained from scratch (row c)."""
        p = self.profile
        cfg = TrainConfig(epochs=p.student_epochs, lr=p.student_lr)
        return self._trained("student-scratch", lambda: models.build_student(self.num_classes), cfg)

    def distilled(self, pretrained_teacher: bool = False) -> tuple[nn.Module, dict[str, Any]]:
        """The student distilled from teacher a (row d) or b (row e)."""
        teacher, _ = self.teacher(pretrained_teacher)
        p = self.profile
        cfg = TrainConfig(epochs=p.distill_epochs, lr=p.student_lr, distill=self.distill)
        name = "student-distilled-" + ("pretrained" if pretrained_teacher else "scratch")
        t_name, t_cfg, t_extra = self._teacher_args(pretrained_teacher)
        tkey = self.cache.key(self._spec(t_name, t_cfg, **t_extra))
        return self._trained(
            name,
            lambda: models.build_student(self.num_classes),
            cfg,
            teacher=teacher,
            teacher_key=tkey,
        )

    def architecture(self, kind: str) -> tuple[nn.Module, dict[str, Any]]:
        """The student's topology with kind convolutions at the student's parameter budget."""
        p = self.profile
        n = self.num_classes
        if kind == "dws" and p.arch_epochs == p.student_epochs:
            # At the student's own budget the depthwise-separable network is the student.
            return self.student()
        cfg = TrainConfig(epochs=p.arch_epochs, lr=p.student_lr)
        return self._trained(f"arch-{kind}", lambda: models.build_arch(kind, num_classes=n), cfg)
