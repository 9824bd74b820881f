from __future__ import annotations

import pytest
import torch
from torch import nn

from compress.errors import FormatError, WeightsNotFoundError
from compress.measure import param_count
from compress.models import (
    KINDS,
    MODELS,
    RESNET18_FILE,
    ConvNet,
    build_arch,
    build_model,
    build_resnet18,
    load_model,
    save_model,
    student_channels,
)


def test_teacher_has_the_reference_count():
    assert param_count(build_model("resnet18", num_classes=11)) == 11_182_155


@pytest.mark.parametrize(("classes", "count"), [(11, 256_779), (10, 256_522)])
def test_student_has_the_reference_count(classes, count):
    assert param_count(build_model("student", num_classes=classes)) == count


def test_student_is_smaller_than_teacher():
    assert param_count(build_model("student")) < param_count(build_model("resnet18"))


def test_student_shape_follows_the_reference():
    net = build_model("student", num_classes=11)
    assert net.channels == [16, 32, 64, 128, 256, 256, 256, 256]
    assert student_channels(width_mult=0.5) == [16, 32, 64, 64, 128, 128, 128, 256]
    dw = net.cnn[1][0]
    assert dw.groups == 16 and dw.kernel_size == (3, 3)
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 11)
    pools = [i for i, layer in enumerate(net.cnn[:8]) if isinstance(layer[-1], nn.MaxPool2d)]
    assert pools == [0, 1, 2, 3]


@pytest.mark.parametrize("kind", KINDS)
def test_architectures_land_within_five_percent_of_the_student(kind):
    budget = param_count(build_model("student"))
    net = build_arch(kind)
    assert abs(param_count(net) - budget) <= 0.05 * budget
    assert net(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_group_architecture_uses_real_groups():
    net = build_arch("group")
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    grouped = [c for c in convs[1:]]
    assert all(1 < c.groups < c.in_channels for c in grouped)


def test_unknown_model():
    with pytest.raises(ValueError, match="unknown model 'vgg'"):
        build_model("vgg")
    assert {"resnet18", "student"} <= set(MODELS)


def test_missing_imagenet_weights_say_how_to_enable(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match="--allow-download"):
        build_resnet18(11, pretrained=True)


def test_imagenet_weights_load_from_torchvision_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    source = build_resnet18(1000)
    target = tmp_path / "hub" / "checkpoints" / RESNET18_FILE
    target.parent.mkdir(parents=True)
    torch.save(source.state_dict(), target)
    model = build_resnet18(11, pretrained=True)
    assert torch.equal(model.conv1.weight, source.conv1.weight)
    assert model.fc.out_features == 11


def test_imagenet_weights_from_a_given_path_and_a_corrupt_one(tmp_path):
    path = tmp_path / "w.pth"
    torch.save(build_resnet18(1000).state_dict(), path)
    assert build_resnet18(5, pretrained=True, weights_path=str(path)).fc.out_features == 5
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(FormatError, match="cannot read ImageNet weights"):
        build_resnet18(5, pretrained=True, weights_path=str(path))


def test_save_and_load_model_roundtrip(tmp_path):
    net = ConvNet([8, 8, 16, 16, 32, 32, 32, 24], num_classes=4)
    n = save_model(net, tmp_path / "m.pt")
    assert n == (tmp_path / "m.pt").stat().st_size
    back = load_model(tmp_path / "m.pt")
    assert back.channels == net.channels
    x = torch.randn(2, 3, 32, 32)
    net.eval(), back.eval()
    assert torch.equal(net(x), back(x))


def test_load_model_rejects_garbage(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"\x00" * 10)
    with pytest.raises(FormatError, match="not a readable model file"):
        load_model(tmp_path / "bad.pt")
