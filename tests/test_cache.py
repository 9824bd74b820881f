from __future__ import annotations

import multiprocessing as mp
import time

import pytest
import torch
from torch import nn

import compress.cache as cache_mod
from compress.baselines import Context
from compress.cache import ArtifactCache, CacheWarning, default_cache_dir

SPEC = {"model": "tiny", "epochs": 1}


def build():
    torch.manual_seed(0)
    return nn.Linear(3, 2)


class Trainer:
    def __init__(self):
        self.calls = 0

    def __call__(self, model):
        self.calls += 1
        with torch.no_grad():
            model.weight.add_(1.0)
        return model, {"accuracy": 0.5}


def test_second_request_loads_instead_of_training(tmp_path):
    cache, train = ArtifactCache(tmp_path), Trainer()
    a, info_a = cache.get_or_train(SPEC, build, train)
    b, info_b = cache.get_or_train(SPEC, build, train)
    assert train.calls == 1
    assert (info_a["cached"], info_b["cached"]) == (False, True)
    assert info_b["accuracy"] == 0.5
    assert torch.equal(a.weight, b.weight)


def test_key_depends_on_everything():
    keys = {ArtifactCache.key(s) for s in [SPEC, {**SPEC, "epochs": 2}, {**SPEC, "model": "x"}]}
    assert len(keys) == 3


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: raw[: len(raw) // 2],  # truncated
        lambda raw: raw[:20],  # shorter than the header
        lambda raw: raw[:-10] + bytes(b ^ 0xFF for b in raw[-10:]),  # flipped bytes
        lambda raw: b"garbage" * 50,
    ],
)
def test_corrupt_entry_is_retrained_not_a_crash(tmp_path, damage):
    cache, train = ArtifactCache(tmp_path), Trainer()
    cache.get_or_train(SPEC, build, train)
    path = cache.path(SPEC)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.warns(CacheWarning, match="training it again"):
        _, info = cache.get_or_train(SPEC, build, train)
    assert train.calls == 2 and info["cached"] is False
    assert cache.get_or_train(SPEC, build, train)[1]["cached"] is True


def test_entry_from_another_version_is_retrained(tmp_path, monkeypatch):
    cache, train = ArtifactCache(tmp_path), Trainer()
    monkeypatch.setattr(cache_mod, "__version__", "0.0.1")
    monkeypatch.setattr(ArtifactCache, "key", staticmethod(lambda spec: "fixed"))
    cache.get_or_train(SPEC, build, train)
    monkeypatch.setattr(cache_mod, "__version__", "9.9.9")
    with pytest.warns(CacheWarning, match=r"written by compress-bench 0\.0\.1"):
        cache.get_or_train(SPEC, build, train)
    assert train.calls == 2


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPRESS_CACHE", str(tmp_path / "here"))
    assert default_cache_dir() == tmp_path / "here"
    assert ArtifactCache().root == tmp_path / "here"


def _worker(root: str, log: str) -> None:
    def slow_train(model):
        with open(log, "a") as f:
            f.write("trained\n")
        time.sleep(1.0)
        return model, {"accuracy": 1.0}

    ArtifactCache(root).get_or_train(SPEC, build, slow_train)


def test_two_processes_train_once(tmp_path):
    log = tmp_path / "log.txt"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(str(tmp_path / "c"), str(log))) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert log.read_text().count("trained") == 1


def test_context_trains_a_student_once(tmp_path, monkeypatch):
    import compress.baselines as baselines

    calls = []
    real_fit = baselines.fit

    def zero_epoch_fit(model, loaders, config, **kwargs):
        calls.append(config)
        return real_fit(model, loaders, type(config)(epochs=0), **kwargs)

    monkeypatch.setattr(baselines, "fit", zero_epoch_fit)
    ctx = Context("mnist5k", "smoke", cache_dir=str(tmp_path), progress=False)
    _, first = ctx.student()
    _, second = ctx.student()
    assert len(calls) == 1 and not first["cached"] and second["cached"]
    assert len(list(tmp_path.glob("*.ckpt"))) == 1


def test_context_models_do_not_depend_on_earlier_random_draws(tmp_path, monkeypatch):
    import compress.baselines as baselines

    real_fit = baselines.fit

    def no_training(model, loaders, config, **kwargs):
        return real_fit(model, loaders, type(config)(epochs=0), **kwargs)

    monkeypatch.setattr(baselines, "fit", no_training)
    weights = []
    for i, draws in enumerate((0, 5)):
        torch.rand(draws)  # what earlier code in the process did must not matter
        ctx = Context("mnist5k", "smoke", cache_dir=str(tmp_path / str(i)), progress=False)
        weights.append(ctx.student()[0].fc.weight)
    assert torch.equal(weights[0], weights[1])
