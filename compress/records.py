"""Result records: one flat JSON file per (data set, profile, technique, setting), and the gate.

>>> rows = compare_accuracy({"a/x": 0.90}, {"a/x": 0.85}, tolerance_points=1.0)
>>> rows[0].regressed, round(rows[0].delta_points, 1)
(True, -5.0)
"""

from __future__ import annotations

import functools
import json
import os
import platform
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from compress import __version__
from compress.cache import atomic_write_bytes
from compress.errors import CompressError

BENCHMARK_STORAGE = Path(".benchmarks")


@functools.lru_cache(maxsize=1)
def machine_info() -> dict[str, Any]:
    info = {
        "node": platform.node(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "system": platform.system(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "compress_bench": __version__,
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


@functools.lru_cache(maxsize=8)
def commit_info(cwd: str | os.PathLike | None = None) -> dict[str, Any]:
    """The git commit and whether the tree is dirty; empty outside a git checkout.

    Read once per process: a session writes many records, all from the same checkout.
    """
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {"id": head, "dirty": bool(dirty)}


def record_id(technique: str, setting: str) -> str:
    return f"{technique}/{setting}"


def make_record(
    dataset: str, profile: str, technique: str, setting: str, **fields: Any
) -> dict[str, Any]:
    """A record with the identifying fields, the measured ones, and machine/commit info."""
    return {
        "id": record_id(technique, setting),
        "dataset": dataset,
        "profile": profile,
        "technique": technique,
        "setting": setting,
        **fields,
        "torch_version": torch.__version__,
        "machine": dict(machine_info()),
        "commit": dict(commit_info()),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _file_name(record: dict[str, Any]) -> str:
    raw = f"{record['dataset']}-{record['profile']}-{record['technique']}-{record['setting']}"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", raw) + ".json"


def write_record(results_dir: str | os.PathLike, record: dict[str, Any]) -> Path:
    """Write one record atomically; an interrupted run never leaves half a file."""
    path = Path(results_dir) / _file_name(record)
    atomic_write_bytes(path, (json.dumps(record, indent=1, sort_keys=True) + "\n").encode())
    return path


def read_records(
    results_dir: str | os.PathLike, dataset: str | None = None, profile: str | None = None
) -> list[dict[str, Any]]:
    """Every record in a folder, optionally of one data set and profile, sorted by id."""
    folder = Path(results_dir)
    if not folder.is_dir():
        raise CompressError(f"results folder {folder} does not exist; run the benchmarks first")
    out = []
    for path in sorted(folder.glob("*.json")):
        try:
            rec = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise CompressError(f"record {path} is not valid JSON ({exc}); delete it") from exc
        if dataset and rec.get("dataset") != dataset:
            continue
        if profile and rec.get("profile") != profile:
            continue
        out.append(rec)
    return sorted(out, key=lambda r: r["id"])


def resolve_saved_run(ref: str, storage: str | os.PathLike = BENCHMARK_STORAGE) -> Path:
    """A pytest-benchmark save: a path to its JSON, or a run name or number (0001, baseline)."""
    path = Path(ref)
    if path.is_file():
        return path
    candidates = sorted(Path(storage).glob("*/*.json")) if Path(storage).is_dir() else []
    matches = [
        p
        for p in candidates
        if p.stem == ref or p.stem.split("_", 1)[0] == ref or p.stem.split("_", 1)[-1] == ref
    ]
    if not matches:
        raise CompressError(
            f"no saved run {ref!r}: give a JSON file, or a name or number saved with "
            f"--benchmark-save under {storage}/"
        )
    return matches[-1]


def load_saved_run(ref: str, storage: str | os.PathLike = BENCHMARK_STORAGE) -> dict[str, dict]:
    """{record id: extra_info} of a run saved by pytest --benchmark-save."""
    path = resolve_saved_run(ref, storage)
    try:
        data = json.loads(path.read_text())
        benches = data["benchmarks"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CompressError(
            f"{path} is not a pytest-benchmark save (expected a JSON object with 'benchmarks')"
        ) from exc
    out = {}
    for b in benches:
        info = b.get("extra_info") or {}
        if "id" in info and "accuracy" in info:
            out[info["id"]] = info
    if not out:
        raise CompressError(f"{path} holds no compress-bench accuracies in its extra_info")
    return out


@dataclass(frozen=True)
class Comparison:
    id: str
    baseline: float
    now: float
    delta_points: float
    regressed: bool


def compare_accuracy(
    baseline: dict[str, float], current: dict[str, float], tolerance_points: float
) -> list[Comparison]:
    """Rows for every id in both runs; regressed when now < baseline - tolerance (in points)."""
    rows = []
    for key in sorted(set(baseline) & set(current)):
        delta = 100.0 * (current[key] - baseline[key])
        rows.append(Comparison(key, baseline[key], current[key], delta, delta < -tolerance_points))
    return rows


def check_same_setup(baseline: dict[str, dict], dataset: str, profile: str) -> None:
    """A baseline from another data set or profile cannot gate this run."""
    seen = {(i.get("dataset"), i.get("profile")) for i in baseline.values()}
    if seen != {(dataset, profile)}:
        pairs = ", ".join(f"{d}/{p}" for d, p in sorted(seen, key=str))
        raise CompressError(
            f"the baseline was measured on {pairs}, this run is {dataset}/{profile}; "
            "compare runs of the same data set and profile"
        )


def format_comparison(rows: list[Comparison], only_regressions: bool = False) -> str:
    from tabulate import tabulate

    shown = [r for r in rows if r.regressed or not only_regressions]
    table = [
        [
            r.id,
            f"{r.baseline:.4f}",
            f"{r.now:.4f}",
            f"{r.delta_points:+.2f}",
            "REGRESSED" * r.regressed,
        ]
        for r in shown
    ]
    return tabulate(
        table, headers=["name", "baseline", "now", "delta (points)", ""], disable_numparse=True
    )
