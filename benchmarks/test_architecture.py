"""Experiment 4: ordinary vs depthwise-separable vs group convolution at about 1 MB."""

from __future__ import annotations

import pytest
import torch

from compress.measure import param_count
from compress.models import KINDS, build_student, save_model
from compress.pytest_plugin import benchmark_latency

ONE_MB = 1_000_000
BUDGET_TOLERANCE = 0.05  # each network's parameters within 5% of the student's
FILE_TOLERANCE = 0.10  # each float32 file within 1 MB +- 10%
DESCRIPTION = {
    "conv": "ordinary 3x3",
    "dws": "depthwise 3x3 + pointwise 1x1",
    "group": "grouped 3x3 (4 groups) + pointwise 1x1",
}


@pytest.mark.parametrize("kind", KINDS)
def test_architecture(kind, ctx, benchmark, recorder, tmp_path, input_shape):
    model, info = ctx.architecture(kind)
    model = model.to(ctx.device).eval()
    x = torch.randn(64, *input_shape[1:], device=ctx.device)
    with torch.no_grad():
        latency = benchmark_latency(benchmark, lambda: model(x), 64, ctx.device)
    path = tmp_path / f"{kind}.pt"
    size = save_model(model.cpu(), path)
    recorder(
        "architecture",
        kind,
        info["accuracy"],
        model=model,
        file=path,
        input_shape=input_shape,
        latency=latency,
        convolution=DESCRIPTION[kind],
        channels=model.channels,
        groups=model.groups,
        epochs=info["epochs"],
        train_seconds=info["train_seconds"],
    )
    budget = param_count(build_student(ctx.num_classes))
    assert abs(param_count(model) - budget) <= BUDGET_TOLERANCE * budget
    assert abs(size - ONE_MB) <= FILE_TOLERANCE * ONE_MB, f"{kind}: {size} bytes"
    recorder.check_floor(f"architecture/{kind}", info["accuracy"])
