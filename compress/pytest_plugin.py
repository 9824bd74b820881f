"""pytest plugin: the suite's options, the result recorder, the end-of-session report and gate.

Loaded by the repository's conftest.py. Options live in one group, all prefixed --compress-
(plus --accuracy-compare / --accuracy-tolerance for the gate).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from torch import nn

from compress import measure
from compress.data import DATASETS, DataConfig
from compress.distill import DistillConfig
from compress.errors import CompressError
from compress.profiles import PROFILES, floor_for
from compress.records import (
    check_same_setup,
    compare_accuracy,
    format_comparison,
    load_saved_run,
    make_record,
    read_records,
    write_record,
)

RUN_ID = pytest.StashKey[str]()
REPORT_PATH = pytest.StashKey[str]()
GATE = pytest.StashKey[tuple[bool, str]]()


def _positive_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise ValueError(f"must be >= 0, got {value}")
    return value


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("compress", "compress-bench")
    g.addoption(
        "--compress-profile",
        choices=sorted(PROFILES),
        default="default",
        help="training budget (default: default; smoke is for CI)",
    )
    g.addoption(
        "--compress-dataset",
        choices=sorted(DATASETS),
        default="mnist5k",
        help="data set (default: mnist5k, embedded)",
    )
    g.addoption(
        "--compress-data-root", default=None, help="folder of cifar10/food11/imagefolder data"
    )
    g.addoption(
        "--compress-image-size", type=int, default=32, help="input side in pixels (default: 32)"
    )
    g.addoption(
        "--compress-cache",
        default=None,
        help="trained-model cache (default: $COMPRESS_CACHE or ~/.cache/compress-bench)",
    )
    g.addoption(
        "--compress-results",
        default="reports/results",
        help="folder of JSON records (default: reports/results)",
    )
    g.addoption(
        "--compress-reports",
        default="reports",
        help="folder for REPORT.md and plots (default: reports)",
    )
    g.addoption(
        "--compress-no-report",
        action="store_true",
        help="do not write REPORT.md at the end (default: write it)",
    )
    g.addoption(
        "--compress-imagenet-weights",
        default=None,
        help="ResNet18 ImageNet weights file (default: torchvision's cached one in $TORCH_HOME)",
    )
    g.addoption(
        "--compress-allow-download",
        action="store_true",
        help="let ImageNet weights or cifar10 download (default: never)",
    )
    g.addoption(
        "--compress-temperature",
        type=_positive_float,
        default=4.0,
        help="distillation temperature T (default: 4)",
    )
    g.addoption(
        "--compress-alpha",
        type=_positive_float,
        default=0.5,
        help="distillation soft-term weight alpha (default: 0.5)",
    )
    g.addoption(
        "--accuracy-compare",
        default=None,
        metavar="RUN",
        help="fail on accuracy regressions against a run saved by --benchmark-save "
        "(a JSON path, or a saved name or number; default: no gate)",
    )
    g.addoption(
        "--accuracy-tolerance",
        type=_positive_float,
        default=1.0,
        metavar="POINTS",
        help="allowed accuracy drop in percentage points (default: 1.0)",
    )


def pytest_configure(config: pytest.Config) -> None:
    worker = getattr(config, "workerinput", None)
    config.stash[RUN_ID] = worker["compress_run_id"] if worker else uuid.uuid4().hex[:12]


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """pytest-xdist: every worker writes records under the controller's run id."""
    node.workerinput["compress_run_id"] = node.config.stash[RUN_ID]


def make_context(config: pytest.Config):
    from compress.baselines import Context

    opt = config.getoption
    return Context(
        dataset=opt("compress_dataset"),
        profile=opt("compress_profile"),
        data=DataConfig(
            root=opt("compress_data_root"),
            image_size=opt("compress_image_size"),
            download=opt("compress_allow_download"),
        ),
        cache_dir=opt("compress_cache"),
        imagenet_weights=opt("compress_imagenet_weights"),
        allow_download=opt("compress_allow_download"),
        distill=DistillConfig(opt("compress_temperature"), opt("compress_alpha")),
    )


def needs_imagenet(fn):
    """Call fn, skipping with the enabling instruction when ImageNet weights are absent."""
    from compress.errors import WeightsNotFoundError

    try:
        return fn()
    except WeightsNotFoundError as exc:
        pytest.skip(f"needs ImageNet weights: {exc}")


def benchmark_latency(benchmark, fn, batch: int, device, rounds: int = 10) -> dict[str, float]:
    """Time fn through the pytest-benchmark fixture; fall back to our own timer when disabled.

    On CUDA each call ends with a synchronize, so the clock sees the work, not its launch.
    """
    import torch

    dev = torch.device(device)

    def call() -> None:
        fn()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    benchmark.pedantic(call, rounds=rounds, warmup_rounds=2, iterations=1)
    stats = getattr(getattr(benchmark, "stats", None), "stats", None)
    if stats is None:  # --benchmark-disable, or pytest-xdist, which turns benchmarks off
        out = measure.latency(fn, device, warmup=1, repeats=rounds)
    else:
        out = {"median": stats.median, "mean": stats.mean, "min": stats.min, "max": stats.max}
    return {"batch": batch, **out}


class Recorder:
    """Writes one record per benchmark and copies its fields into benchmark.extra_info."""

    def __init__(self, config: pytest.Config, benchmark, dataset: str, profile: str):
        self.config, self.benchmark = config, benchmark
        self.dataset, self.profile = dataset, profile
        self.results = Path(config.getoption("compress_results"))

    def floor(self, name: str) -> float | None:
        return floor_for(self.dataset, self.profile, name)

    def __call__(
        self,
        technique: str,
        setting: str,
        accuracy: float,
        model: nn.Module | None = None,
        file: str | os.PathLike | None = None,
        input_shape: tuple[int, ...] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        fields: dict[str, Any] = {"accuracy": float(accuracy)}
        if model is not None:
            fields["params"] = measure.param_count(model)
            fields["nonzero"] = measure.nonzero_count(model)
            if input_shape is not None:
                fields["flops"] = measure.flops(model, input_shape)
        if file is not None:
            fields["file_bytes"] = measure.file_bytes(file)
        fields.update(extra)
        fields["run_id"] = self.config.stash[RUN_ID]
        record = make_record(self.dataset, self.profile, technique, setting, **fields)
        write_record(self.results, record)
        skip = {"machine", "commit", "created"}
        self.benchmark.extra_info.update({k: v for k, v in record.items() if k not in skip})
        return record

    def check_floor(self, name: str, accuracy: float) -> None:
        """Assert the measured floor for (data set, profile, name), or warn that none exists."""
        floor = self.floor(name)
        if floor is None:
            import warnings

            warnings.warn(
                f"no accuracy floor for {self.dataset}/{self.profile}/{name}: measured "
                f"{accuracy:.4f}; add one to compress/floors.json to gate it",
                pytest.PytestWarning,
                stacklevel=2,
            )
            return
        assert accuracy >= floor, f"{name}: accuracy {accuracy:.4f} is below its floor {floor}"


@pytest.fixture
def recorder(request: pytest.FixtureRequest, benchmark) -> Recorder:
    opt = request.config.getoption
    return Recorder(request.config, benchmark, opt("compress_dataset"), opt("compress_profile"))


def _this_run(config: pytest.Config) -> list[dict[str, Any]]:
    results = Path(config.getoption("compress_results"))
    if not results.is_dir():
        return []
    run = config.stash[RUN_ID]
    return [r for r in read_records(results) if r.get("run_id") == run]


def _gate(config: pytest.Config, records: list[dict[str, Any]]) -> tuple[bool, str]:
    """(failed, message) of the accuracy gate; a bad baseline raises CompressError."""
    ref = config.getoption("accuracy_compare")
    tol = config.getoption("accuracy_tolerance")
    baseline = load_saved_run(ref)
    check_same_setup(
        baseline, config.getoption("compress_dataset"), config.getoption("compress_profile")
    )
    rows = compare_accuracy(
        {k: v["accuracy"] for k, v in baseline.items()},
        {r["id"]: r["accuracy"] for r in records},
        tol,
    )
    if not rows:
        return True, f"accuracy gate vs {ref}: no benchmark of this run is in the baseline"
    failed = [r for r in rows if r.regressed]
    summary = (
        f"accuracy gate vs {ref}: {len(rows)} compared, {len(failed)} regressed "
        f"by more than {tol} points"
    )
    if failed:
        return True, f"{summary}\n{format_comparison(rows, only_regressions=True)}"
    return False, summary


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if hasattr(config, "workerinput"):
        return  # the controller reports for every worker
    if exitstatus == pytest.ExitCode.INTERRUPTED:
        return  # keep the previous report; the records written so far are already on disk
    records = _this_run(config)
    if not records:
        return
    if not config.getoption("compress_no_report"):
        from compress.report import write_report

        config.stash[REPORT_PATH] = str(
            write_report(
                config.getoption("compress_results"),
                config.getoption("compress_reports"),
                dataset=config.getoption("compress_dataset"),
                profile=config.getoption("compress_profile"),
            )
        )
    if config.getoption("accuracy_compare"):
        try:
            failed, message = _gate(config, records)
        except CompressError as exc:
            failed, message = True, f"accuracy gate: {exc}"
        config.stash[GATE] = (failed, message)
        if failed:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if REPORT_PATH in config.stash:
        terminalreporter.write_sep("-", f"compress-bench report: {config.stash[REPORT_PATH]}")
    if GATE in config.stash:
        failed, message = config.stash[GATE]
        title = "ACCURACY REGRESSIONS" if failed else "accuracy gate passed"
        terminalreporter.write_sep("=", title, red=failed, green=not failed)
        terminalreporter.write_line(message)
