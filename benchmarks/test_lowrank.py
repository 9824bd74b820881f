"""Low-rank approximation, the fourth method the reference names: accuracy against size."""

from __future__ import annotations

import pytest
import torch

from compress.lowrank import LowRankConfig, apply
from compress.measure import param_count
from compress.models import save_weights
from compress.train import TrainConfig, evaluate, fit

ENERGIES = [0.9, 0.7, 0.5]
MODELS = {
    "teacher": lambda ctx: ctx.teacher(pretrained=False),
    "student": lambda ctx: ctx.distilled(pretrained_teacher=False),
}


@pytest.mark.parametrize("energy", ENERGIES)
@pytest.mark.parametrize("which", list(MODELS))
def test_lowrank(which, energy, ctx, benchmark, recorder, tmp_path, input_shape):
    base, info = MODELS[which](ctx)
    cpu = torch.device("cpu")
    decomposed = benchmark.pedantic(
        apply, args=(base, LowRankConfig(energy)), rounds=1, iterations=1
    )
    before = evaluate(decomposed, ctx.loaders.val, cpu)
    p = ctx.profile
    tuned = fit(
        decomposed,
        ctx.loaders,
        TrainConfig(epochs=p.lowrank_finetune_epochs, lr=p.finetune_lr),
        device=ctx.device,
        progress=False,
    )
    model = tuned.model.cpu().eval()
    path = tmp_path / f"{which}-{energy}.pt"
    save_weights(model, path)
    recorder(
        "lowrank",
        f"{which}-e{energy}",
        tuned.accuracy,
        model=model,
        file=path,
        input_shape=input_shape,
        base_model=which,
        method="svd+tucker2",
        energy=energy,
        base_params=param_count(base),
        base_accuracy=info["accuracy"],
        accuracy_before_finetune=before,
        finetune_epochs=p.lowrank_finetune_epochs,
        finetune_seconds=tuned.seconds,
    )
    assert param_count(model) < param_count(base)
    assert model(torch.zeros(input_shape)).shape == (1, ctx.num_classes)
    recorder.check_floor(f"lowrank/{which}-e{energy}", tuned.accuracy)
