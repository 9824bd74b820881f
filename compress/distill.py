"""Knowledge distillation (Hinton et al. 2015): soft targets at temperature T, weight alpha.

>>> import torch
>>> s, t, y = torch.randn(4, 10), torch.randn(4, 10), torch.tensor([0, 1, 2, 3])
>>> float(distillation_loss(s, s.clone(), y, DistillConfig(alpha=1.0)))
0.0
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class DistillConfig:
    temperature: float = 4.0  # softens the teacher's distribution so wrong classes carry signal
    alpha: float = 0.5  # weight of the soft term; 0.0 means hard labels only (plain cross-entropy)

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {self.alpha}")


def soft_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, t: float) -> torch.Tensor:
    """T^2 * KL(teacher_T || student_T): T^2 keeps gradient size comparable across T."""
    log_p = F.log_softmax(student_logits / t, dim=1)
    log_q = F.log_softmax(teacher_logits.detach() / t, dim=1)
    return F.kl_div(log_p, log_q, reduction="batchmean", log_target=True) * (t * t)


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    labels: torch.Tensor,
    config: DistillConfig,
) -> torch.Tensor:
    """alpha * soft term + (1 - alpha) * cross-entropy; teacher_logits never get a gradient."""
    hard = F.cross_entropy(student_logits, labels)
    if teacher_logits is None or config.alpha == 0.0:
        return hard
    soft = soft_loss(student_logits, teacher_logits, config.temperature)
    return config.alpha * soft + (1.0 - config.alpha) * hard
