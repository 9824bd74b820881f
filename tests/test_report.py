from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from compress.cli import main
from compress.errors import CompressError
from compress.records import (
    compare_accuracy,
    load_saved_run,
    read_records,
    resolve_saved_run,
    write_record,
)
from compress.report import pareto_front, render, write_report

GOLDEN = Path(__file__).parent / "golden" / "REPORT.md"
META = {
    "machine": {"processor": "x86_64", "cpu_count": 2, "python": "3.11.7"},
    "commit": {"id": "0123456789abcdef", "dirty": False},
    "created": "2026-01-01T00:00:00+0000",
    "torch_version": "2.14.1",
}


def rec(technique, setting, accuracy, **fields):
    return {
        "id": f"{technique}/{setting}",
        "dataset": "mnist5k",
        "profile": "smoke",
        "technique": technique,
        "setting": setting,
        "accuracy": accuracy,
        **fields,
        **META,
    }


def fixed_records():
    lat = {"median": 0.002, "mean": 0.002, "min": 0.001, "max": 0.003}
    out = []
    for row, params, acc in [("a", 11_181_642, 0.98), ("c", 256_522, 0.96), ("d", 256_522, 0.97)]:
        for batch in (1, 64):
            out.append(
                rec(
                    "distillation",
                    f"{row}-x@b{batch}",
                    acc,
                    row=row,
                    params=params,
                    file_bytes=params * 4 + 5000,
                    flops=params * 14,
                    epochs=2,
                    train_seconds=10.0,
                    latency={"batch": batch, **lat},
                )
            )
    out.append(rec("distillation", "gain-from-a", 0.97, scratch_accuracy=0.96, gain_points=1.0))
    for bits, acc_t, acc_c in [(16, 0.97, 0.97), (9, 0.97, 0.97), (4, 0.95, 0.96), (2, 0.3, 0.7)]:
        for g, acc in (("per_tensor", acc_t), ("per_channel", acc_c)):
            out.append(
                rec(
                    "quantization",
                    f"{bits}bit-{g}",
                    acc,
                    bits=bits,
                    granularity=g,
                    file_bytes=33_000 * bits,
                    lzma_bytes=30_000 * bits,
                    float_bytes=1_050_000,
                    ratio=1_050_000 / (33_000 * bits),
                    float_accuracy=0.97,
                    params=256_522,
                )
            )
    out.append(
        rec(
            "quantization",
            "int8-x86@b64",
            0.975,
            fp32_accuracy=0.97,
            fp32_median=0.01,
            int8_median=0.003,
            speedup=10 / 3,
            latency={"batch": 64, **lat},
        )
    )
    for method in ("slimming", "magnitude"):
        for step, params in [(1, 200_000), (2, 120_000)]:
            out.append(
                rec(
                    "pruning",
                    f"{method}-r0.9-s{step:02d}",
                    0.95 - 0.01 * step,
                    method=method,
                    rate=0.9,
                    step=step,
                    params=params,
                    nonzero=params,
                    kept_params=params,
                    file_bytes=params * 4,
                    flops=params * 10,
                )
            )
    out.append(
        rec(
            "pruning",
            "slimming-300KB",
            0.93,
            rate=0.9,
            steps=8,
            params=70_000,
            kept_fraction=0.27,
            file_bytes=290_000,
            finetune_epochs=5,
        )
    )
    out.append(
        rec(
            "pruning",
            "latency-b64",
            0.93,
            slimmed_speedup=1.6,
            masked_speedup=0.9,
            slimmed_flops_ratio=3.4,
            masked_flops_ratio=1.0,
            latency={"batch": 64, **lat},
        )
    )
    for kind, acc in (("conv", 0.97), ("dws", 0.96), ("group", 0.965)):
        out.append(
            rec(
                "architecture",
                kind,
                acc,
                convolution=kind,
                params=256_000,
                file_bytes=1_050_000,
                flops=3_000_000,
                latency={"batch": 64, **lat},
            )
        )
    out.append(
        rec(
            "lowrank",
            "student-e0.7",
            0.95,
            base_model="student",
            method="svd+tucker2",
            energy=0.7,
            params=100_000,
            file_bytes=430_000,
            accuracy_before_finetune=0.5,
            base_accuracy=0.97,
        )
    )
    return out


def test_report_matches_the_golden_file():
    text = render(fixed_records())
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


def test_write_report_draws_plots_and_trains_nothing(tmp_path):
    for r in fixed_records():
        write_record(tmp_path / "results", r)
    path = write_report(tmp_path / "results", tmp_path / "out")
    assert path.read_text() == GOLDEN.read_text()
    for name in ("pruning_curves.png", "quant_bits.png", "architecture.png", "frontier.png"):
        png = (tmp_path / "out" / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000, name


def test_report_cli_and_bad_inputs(tmp_path, capsys):
    for r in fixed_records():
        write_record(tmp_path / "results", r)
    assert main(["report", str(tmp_path / "results"), "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "REPORT.md").exists()
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(CompressError, match="no records for mnist5k/default"):
        write_report(tmp_path / "results", tmp_path / "o", "mnist5k", "default")


def test_pareto_front():
    pts = [(300, 0.9), (100, 0.8), (200, 0.7), (100, 0.85), (400, 0.9)]
    assert pareto_front(pts) == [(100, 0.85), (300, 0.9)]


def test_records_are_flat_json_and_atomic(tmp_path):
    path = write_record(tmp_path, rec("quantization", "9bit-per_tensor", 0.9))
    assert json.loads(path.read_text())["id"] == "quantization/9bit-per_tensor"
    assert not list(tmp_path.glob("*.tmp"))
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(CompressError, match="not valid JSON"):
        read_records(tmp_path)


def test_compare_accuracy_flags_only_drops_beyond_tolerance():
    rows = compare_accuracy(
        {"a": 0.90, "b": 0.90, "c": 0.90}, {"a": 0.895, "b": 0.88, "c": 0.95}, 1.0
    )
    assert [(r.id, r.regressed) for r in rows] == [("a", False), ("b", True), ("c", False)]
    assert rows[1].delta_points == pytest.approx(-2.0)


def test_saved_run_errors(tmp_path):
    with pytest.raises(CompressError, match="no saved run 'nope'"):
        resolve_saved_run("nope", tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(CompressError, match="not a pytest-benchmark save"):
        load_saved_run(str(bad))
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"benchmarks": [{"name": "x", "extra_info": {}}]}))
    with pytest.raises(CompressError, match="no compress-bench accuracies"):
        load_saved_run(str(empty))
