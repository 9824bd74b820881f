"""Models: a registry of name -> builder, and files that record a model's shape with its weights.

>>> from compress.models import build_model
>>> sum(p.numel() for p in build_model("student", num_classes=11).parameters())
256779
"""

from __future__ import annotations

import copy
import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compress.errors import FormatError, WeightsNotFoundError

# The reference's bandwidth multipliers; entries 3..6 are scaled by width_mult.
STUDENT_MULTIPLIERS = (1, 2, 4, 8, 16, 16, 16, 16)
POOL_AFTER = (1, 2, 3)  # MaxPool2 after layers 1, 2 and 3 (layer 0 always pools)
RESNET18_FILE = "resnet18-f37072fd.pth"  # torchvision's cached name for IMAGENET1K_V1
KINDS = ("conv", "dws", "group")


def student_channels(base: int = 16, width_mult: float = 1.0) -> list[int]:
    """The reference's bandwidth list b0..b7."""
    b = [base * m for m in STUDENT_MULTIPLIERS]
    for i in range(3, 7):
        b[i] = int(b[i] * width_mult)
    return b


class ConvNet(nn.Module):
    """The student's topology with a choice of convolution in layers 1..7.

    kind="dws" is the reference's student: depthwise 3x3 + BN + ReLU6 + pointwise 1x1.
    kind="conv" uses an ordinary 3x3 convolution + BN + ReLU6.
    kind="group" uses a grouped 3x3 convolution (groups neither 1 nor the channel count)
    + BN + ReLU6 + pointwise 1x1, so channels still mix across groups.
    """

    def __init__(
        self,
        channels: Sequence[int],
        num_classes: int = 10,
        in_channels: int = 3,
        kind: str = "dws",
        groups: int = 1,
    ):
        super().__init__()
        if len(channels) != 8 or min(channels) < 1:
            raise ValueError(f"channels must be 8 positive widths b0..b7, got {list(channels)}")
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; choose one of {KINDS}")
        self.channels, self.kind, self.groups = [int(c) for c in channels], kind, groups
        self.num_classes, self.in_channels = num_classes, in_channels
        b = self.channels
        layers = [
            nn.Sequential(
                nn.Conv2d(in_channels, b[0], 3, 1, 1),
                nn.BatchNorm2d(b[0]),
                nn.ReLU6(),
                nn.MaxPool2d(2, 2, 0),
            )
        ]
        for i in range(1, 8):
            cin, cout = b[i - 1], b[i]
            if kind == "conv":
                block = [nn.Conv2d(cin, cout, 3, 1, 1), nn.BatchNorm2d(cout), nn.ReLU6()]
            else:
                g = cin if kind == "dws" else groups
                if cin % g:
                    raise ValueError(f"layer {i}: {cin} channels do not split into {g} groups")
                block = [
                    nn.Conv2d(cin, cin, 3, 1, 1, groups=g),
                    nn.BatchNorm2d(cin),
                    nn.ReLU6(),
                    nn.Conv2d(cin, cout, 1),
                ]
            if i in POOL_AFTER:
                block.append(nn.MaxPool2d(2, 2, 0))
            layers.append(nn.Sequential(*block))
        layers.append(nn.AdaptiveAvgPool2d((1, 1)))
        self.cnn = nn.Sequential(*layers)
        self.fc = nn.Linear(b[7], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.cnn(x).flatten(1))

    def spec(self) -> dict[str, Any]:
        """Everything needed to rebuild this network's shape."""
        return {
            "arch": "convnet",
            "channels": self.channels,
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "kind": self.kind,
            "groups": self.groups,
        }


def build_student(
    num_classes: int = 10, in_channels: int = 3, base: int = 16, width_mult: float = 1.0
) -> ConvNet:
    """The reference's MobileNet-style student (256,779 parameters for 11 classes)."""
    return ConvNet(student_channels(base, width_mult), num_classes, in_channels, kind="dws")


def imagenet_weights_path(path: str | os.PathLike | None = None) -> Path:
    """Where ResNet18's ImageNet weights are looked for: PATH, or torchvision's cached file."""
    if path:
        return Path(path).expanduser()
    return Path(torch.hub.get_dir()) / "checkpoints" / RESNET18_FILE


def load_imagenet_state(
    path: str | os.PathLike | None = None, allow_download: bool = False
) -> dict[str, torch.Tensor]:
    """ResNet18's ImageNet state dict from a local file; downloads only when allowed."""
    target = imagenet_weights_path(path)
    if not target.is_file():
        if not allow_download:
            raise WeightsNotFoundError(
                f"ImageNet weights for resnet18 not found at {target}. Put torchvision's "
                f"{RESNET18_FILE} there (or under $TORCH_HOME/hub/checkpoints), give its path "
                "(CLI --imagenet-weights PATH, pytest --compress-imagenet-weights PATH), or allow "
                "a download (CLI --allow-download, pytest --compress-allow-download, or "
                "COMPRESS_ALLOW_DOWNLOAD=1)."
            )
        from torchvision.models import ResNet18_Weights

        url = ResNet18_Weights.IMAGENET1K_V1.url
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", weights_only=True)
    try:
        return torch.load(target, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise FormatError(f"cannot read ImageNet weights {target}: {exc}") from exc


def build_resnet18(
    num_classes: int = 10,
    in_channels: int = 3,
    pretrained: bool = False,
    weights_path: str | None = None,
    allow_download: bool = False,
) -> nn.Module:
    """torchvision's ResNet18 with its head sized to num_classes (11,182,155 params for 11)."""
    from torchvision.models import resnet18

    if in_channels != 3:
        raise ValueError("resnet18 takes 3 input channels; set the data set's channels to 3")
    model = resnet18(weights=None, num_classes=1000 if pretrained else num_classes)
    if pretrained:
        model.load_state_dict(load_imagenet_state(weights_path, allow_download))
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def count_params_of(channels: Sequence[int], kind: str, groups: int, num_classes: int) -> int:
    """Parameter count of a ConvNet of this shape (built on the CPU, never trained)."""
    net = ConvNet(channels, num_classes, kind=kind, groups=groups)
    return sum(p.numel() for p in net.parameters())


def solve_widths(kind: str, budget: int, num_classes: int = 10, groups: int = 4) -> list[int]:
    """Widths of the student's shape, scaled so the parameter count is closest to budget.

    Grouped widths are multiples of 2 * groups so every grouped layer splits evenly.
    """
    step = 2 * groups if kind == "group" else 1

    def widths(scale: float) -> list[int]:
        return [max(step, round(c * scale / step) * step) for c in student_channels()]

    def count(scale: float) -> int:
        return count_params_of(widths(scale), kind, groups, num_classes)

    lo, hi = 0.05, 8.0
    for _ in range(30):  # bisection on the scale; the count grows with it
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if count(mid) < budget else (lo, mid)
    return min(
        widths(lo),
        widths(hi),
        key=lambda w: abs(count_params_of(w, kind, groups, num_classes) - budget),
    )


def build_arch(
    kind: str,
    num_classes: int = 10,
    in_channels: int = 3,
    budget: int | None = None,
    groups: int = 4,
) -> ConvNet:
    """The student's topology with `kind` convolutions, widths solved to a parameter budget.

    The default budget is the student's own count, about 1 MB in float32.
    """
    if budget is None:
        budget = count_params_of(student_channels(), "dws", 1, num_classes)
    channels = solve_widths(kind, budget, num_classes, groups)
    return ConvNet(channels, num_classes, in_channels, kind=kind, groups=groups)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "resnet18": build_resnet18,
    "student": build_student,
    "conv": lambda **kw: build_arch("conv", **kw),
    "dws": lambda **kw: build_arch("dws", **kw),
    "group": lambda **kw: build_arch("group", **kw),
}


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """A registered model, built with kwargs (num_classes, in_channels, ...)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}")
    return MODELS[name](**kwargs)


def model_from_spec(spec: dict[str, Any]) -> nn.Module:
    """Rebuild an untrained network of the shape a spec records."""
    if spec.get("arch") == "convnet":
        return ConvNet(
            spec["channels"], spec["num_classes"], spec["in_channels"], spec["kind"], spec["groups"]
        )
    if spec.get("arch") == "resnet18":
        return build_resnet18(spec["num_classes"])
    raise FormatError(f"unknown architecture in file: {spec.get('arch')!r}")


def model_spec(model: nn.Module) -> dict[str, Any]:
    if isinstance(model, ConvNet):
        return model.spec()
    fc = getattr(model, "fc", None)
    if type(model).__name__ == "ResNet" and isinstance(fc, nn.Linear):
        return {"arch": "resnet18", "num_classes": fc.out_features}
    raise TypeError(f"{type(model).__name__} has no file spec; save its state_dict instead")


def copy_model(model: nn.Module) -> nn.Module:
    """A deep copy that also works on modules pruned with torch.nn.utils.prune.

    Such modules keep `weight` as a computed tensor (weight_orig * mask), which deepcopy
    refuses; a detached value is stored instead, and the next forward recomputes it.
    """
    for m in model.modules():
        for name, _ in list(m.named_parameters(recurse=False)):
            if name.endswith("_orig"):
                base = name[: -len("_orig")]
                setattr(m, base, getattr(m, base).detach())
    return copy.deepcopy(model)


def save_model(model: nn.Module, path: str | os.PathLike) -> int:
    """Write shape + float weights (no pickled module); returns the file's bytes on disk."""
    return _write({"spec": model_spec(model), "state_dict": _cpu_state(model)}, path)


def save_weights(model: nn.Module, path: str | os.PathLike) -> int:
    """Write the float state dict alone (for networks without a spec); returns bytes on disk."""
    return _write(_cpu_state(model), path)


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def _write(obj: dict, path: str | os.PathLike) -> int:
    from compress.cache import atomic_write_bytes

    # Saved through a buffer: torch names a file's zip entries after the file, which would
    # make the same model's size depend on its file name.
    buf = io.BytesIO()
    torch.save(obj, buf)
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path.stat().st_size


def load_model(path: str | os.PathLike) -> nn.Module:
    """Read a file written by save_model into an identical network."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        model = model_from_spec(blob["spec"])
        model.load_state_dict(blob["state_dict"])
    except FormatError:
        raise
    except Exception as exc:
        raise FormatError(f"{path} is not a readable model file: {exc}") from exc
    return model
