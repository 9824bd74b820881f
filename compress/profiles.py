"""Named training budgets and the accuracy floors measured for them.

>>> PROFILES["smoke"].student_epochs < PROFILES["default"].student_epochs
True
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

from compress.errors import CompressError


@dataclass(frozen=True)
class Profile:
    name: str
    teacher_epochs: int
    student_epochs: int
    distill_epochs: int
    prune_finetune_epochs: int  # after each pruning step (the reference used 2)
    target_finetune_epochs: int  # after pruning to 300 KB (the reference used 5)
    arch_epochs: int
    lowrank_finetune_epochs: int
    teacher_lr: float = 0.003  # ResNet18 with AdamW diverges at the student's 0.01 on 32x32 inputs
    student_lr: float = 0.01  # the reference's learning rate
    finetune_lr: float = 0.002  # fine-tuning starts from trained weights: a tenth-ish of training


PROFILES: dict[str, Profile] = {
    # For CI: every benchmark runs end to end in a few minutes on 2 cores.
    "smoke": Profile("smoke", 2, 4, 4, 1, 1, 4, 1),
    # The suite's main job: the guide figures of the foundation issue.
    "default": Profile("default", 8, 15, 15, 2, 5, 15, 2),
}


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise CompressError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    return PROFILES[name]


def load_floors() -> dict:
    """compress/floors.json: {dataset: {profile: {name: {"floor": x, "note": why}}}}."""
    text = resources.files("compress").joinpath("floors.json").read_text()
    return json.loads(text)


def floor_for(dataset: str, profile: str, name: str) -> float | None:
    """The accuracy floor of one benchmark, or None where no run has measured one."""
    entry = load_floors().get(dataset, {}).get(profile, {}).get(name)
    return None if entry is None else float(entry["floor"])
