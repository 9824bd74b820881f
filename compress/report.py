"""REPORT.md and its plots, drawn from records alone: regenerating a report trains nothing.

>>> from compress.report import pareto_front
>>> pareto_front([(100, 0.9), (50, 0.8), (60, 0.7), (200, 0.95)])
[(50, 0.8), (100, 0.9), (200, 0.95)]
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from tabulate import tabulate

from compress.cache import atomic_write_bytes
from compress.errors import CompressError
from compress.records import read_records

KB300, MB1 = 300_000, 1_000_000
# The reference's numbers (SEED.md), shown beside ours when the data set is food11.
REFERENCE = {
    "distillation": {"a": 0.8009, "b": 0.8841, "c": 0.6280, "d": 0.7367, "e": 0.7169},
    "quant_9bit": 0.80,
    "quant_6bit": 0.21,
    "pruned_300kb": 0.54,
}
ROW_NAMES = {
    "a": "teacher from scratch",
    "b": "teacher ImageNet-pretrained, fine-tuned",
    "c": "student from scratch",
    "d": "student distilled from (a)",
    "e": "student distilled from (b)",
}
COLLAPSE_POINTS = 10.0  # a width "collapses" when it loses more than this many points


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(size, accuracy) points that no smaller-or-equal point beats in accuracy, by size."""
    front: list[tuple[float, float]] = []
    for size, acc in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or acc > front[-1][1]:
            front.append((size, acc))
    return front


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def _int(x: Any) -> str:
    return "-" if x is None else f"{int(x):,}"


def _ms(lat: dict | None) -> str:
    return "-" if not lat else f"{1000 * lat['median']:.2f}"


def _table(rows: list[list[Any]], headers: list[str]) -> str:
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def _by_technique(records: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        out[r["technique"]].append(r)
    return out


def _distillation(recs: list[dict], food11: bool) -> list[str]:
    rows_by = {}
    lat: dict[tuple[str, int], dict] = {}
    gains = []
    for r in recs:
        if "row" in r:
            rows_by.setdefault(r["row"], r)
            lat[(r["row"], r["latency"]["batch"])] = r["latency"]
        elif "gain_points" in r:
            gains.append(r)
    if not rows_by:
        return []
    headers = ["row", "model", "params", "file bytes", "MFLOPs", "accuracy"]
    headers += ["reference"] if food11 else []
    headers += ["ms b=1", "ms b=64", "epochs", "train s"]
    rows = []
    for key in sorted(rows_by):
        r = rows_by[key]
        row = [key, ROW_NAMES[key], _int(r.get("params")), _int(r.get("file_bytes"))]
        row += [f"{r['flops'] / 1e6:.1f}", _pct(r["accuracy"])]
        row += [_pct(REFERENCE["distillation"][key])] if food11 else []
        row += [_ms(lat.get((key, 1))), _ms(lat.get((key, 64))), str(r.get("epochs", "-"))]
        row += [f"{r.get('train_seconds', 0):.1f}"]
        rows.append(row)
    out = ["## Experiment 2: knowledge distillation", "", _table(rows, headers), ""]
    for g in sorted(gains, key=lambda g: g["setting"]):
        teacher = g["setting"].rsplit("-", 1)[-1]
        out.append(
            f"Distillation from ({teacher}): {_pct(g['accuracy'])} vs "
            f"{_pct(g['scratch_accuracy'])} from scratch, {g['gain_points']:+.2f} points."
        )
    return [*out, ""] if gains else out


def _collapse(sweep: list[dict]) -> int | None:
    """The widest bit width that loses more than COLLAPSE_POINTS against float."""
    bad = [
        r["bits"] for r in sweep if 100 * (r["float_accuracy"] - r["accuracy"]) > COLLAPSE_POINTS
    ]
    return max(bad) if bad else None


def _quantization(recs: list[dict], food11: bool) -> list[str]:
    sweep = [r for r in recs if "bits" in r]
    int8 = [r for r in recs if "speedup" in r]
    out = []
    if sweep:
        grans = sorted({r["granularity"] for r in sweep}, reverse=True)
        cells = {(r["bits"], r["granularity"]): r for r in sweep}
        headers = ["bits"]
        for g in grans:
            headers += [f"{g} accuracy", f"{g} bytes", f"{g} ratio"]
        headers += ["per_tensor + lzma bytes"]
        rows = []
        for bits in sorted({r["bits"] for r in sweep}, reverse=True):
            row = [str(bits)]
            for g in grans:
                c = cells.get((bits, g))
                row += (
                    [_pct(c["accuracy"]), _int(c["file_bytes"]), f"{c['ratio']:.2f}x"]
                    if c
                    else ["-"] * 3
                )
            pt = cells.get((bits, "per_tensor"))
            row.append(_int(pt.get("lzma_bytes")) if pt else "-")
            rows.append(row)
        float_acc = sweep[0]["float_accuracy"]
        out += ["## Experiment 1a: quantization at any bit width", ""]
        out += [
            f"Distilled student, float32 file {_int(sweep[0]['float_bytes'])} bytes, "
            f"accuracy {_pct(float_acc)}. Accuracy is of the model read back from the file; "
            "bytes are the file on disk.",
            "",
            _table(rows, headers),
            "",
        ]
        for g in grans:
            width = _collapse([r for r in sweep if r["granularity"] == g])
            said = f"collapses at {width} bits" if width else "does not collapse down to 1 bit"
            out.append(f"- {g}: {said} (more than {COLLAPSE_POINTS:.0f} points lost).")
        if food11:
            out.append(
                f"- reference (per-tensor): 9 bits {_pct(REFERENCE['quant_9bit'])}, "
                f"collapse at 6 bits ({_pct(REFERENCE['quant_6bit'])})."
            )
        out.append("")
    if int8:
        rows = [
            [
                str(r["latency"]["batch"]),
                _pct(r["fp32_accuracy"]),
                _pct(r["accuracy"]),
                f"{1000 * r['fp32_median']:.2f}",
                f"{1000 * r['int8_median']:.2f}",
                f"{r['speedup']:.2f}x",
            ]
            for r in sorted(int8, key=lambda r: r["latency"]["batch"])
        ]
        headers = ["batch", "fp32 acc", "int8 acc", "fp32 ms", "int8 ms", "speedup"]
        out += [
            "### Real int8 inference (x86 quantized CPU kernels)",
            "",
            _table(rows, headers),
            "",
        ]
    return out


def _pruning(recs: list[dict]) -> list[str]:
    curves = [r for r in recs if "step" in r]
    out = []
    if curves:
        rows = [
            [
                r["method"],
                str(r["rate"]),
                str(r["step"]),
                _int(r["params"]),
                _int(r["nonzero"]),
                _int(r.get("file_bytes")),
                f"{r['flops'] / 1e6:.2f}",
                _pct(r["accuracy"]),
            ]
            for r in sorted(curves, key=lambda r: (r["method"], -r["rate"], r["step"]))
        ]
        headers = ["method", "rate", "step", "params", "nonzero", "file bytes", "MFLOPs"]
        out += ["## Experiment 3: pruning curves", "", "![pruning](pruning_curves.png)", ""]
        out += [_table(rows, [*headers, "accuracy"]), ""]
    target = [r for r in recs if r["setting"].startswith("slimming-300KB")]
    for r in target:
        out += [
            "### Pruned to 300 KB",
            "",
            f"Network slimming at rate {r['rate']} for {r['steps']} steps keeps "
            f"{_int(r['params'])} parameters ({100 * r['kept_fraction']:.1f}%), a float32 file "
            f"of {_int(r['file_bytes'])} bytes; after {r['finetune_epochs']} fine-tune epochs: "
            f"{_pct(r['accuracy'])}.",
            "",
        ]
    lat = [r for r in recs if "slimmed_speedup" in r]
    for r in lat:
        rows = [
            ["unpruned", "1.00x", "1.00x"],
            ["slimmed", f"{r['slimmed_flops_ratio']:.2f}x", f"{r['slimmed_speedup']:.2f}x"],
            ["masked", f"{r['masked_flops_ratio']:.2f}x", f"{r['masked_speedup']:.2f}x"],
        ]
        out += [
            f"### Latency of pruned networks (batch {r['latency']['batch']}, one run)",
            "",
            _table(rows, ["network", "FLOPs reduction", "measured speedup"]),
            "",
        ]
    return out


def _architecture(recs: list[dict]) -> list[str]:
    if not recs:
        return []
    rows = [
        [
            r["setting"],
            r.get("convolution", "-"),
            _int(r["params"]),
            _int(r["file_bytes"]),
            f"{r['flops'] / 1e6:.1f}",
            _ms(r.get("latency")),
            _pct(r["accuracy"]),
        ]
        for r in recs
    ]
    headers = ["network", "convolution", "params", "file bytes", "MFLOPs", "ms b=64", "accuracy"]
    best = max(recs, key=lambda r: r["accuracy"])
    return [
        "## Experiment 4: architecture at about 1 MB",
        "",
        "![architecture](architecture.png)",
        "",
        _table(rows, headers),
        "",
        f"At the same parameter budget, **{best['setting']}** is the most accurate "
        f"({_pct(best['accuracy'])}).",
        "",
    ]


def _lowrank(recs: list[dict]) -> list[str]:
    if not recs:
        return []
    rows = [
        [
            r["base_model"],
            r["method"],
            str(r["energy"]),
            _int(r["params"]),
            _int(r["file_bytes"]),
            _pct(r["accuracy_before_finetune"]),
            _pct(r["accuracy"]),
            _pct(r["base_accuracy"]),
        ]
        for r in sorted(recs, key=lambda r: (r["base_model"], -r["energy"]))
    ]
    headers = ["model", "method", "energy", "params", "file bytes", "no fine-tune", "fine-tuned"]
    return [
        "## Low-rank approximation (SVD of 1x1/Linear, Tucker-2 of kxk)",
        "",
        _table(rows, [*headers, "original"]),
        "",
    ]


def _frontier_points(records: list[dict]) -> list[tuple[str, int, float]]:
    pts = []
    for r in records:
        if r.get("file_bytes") and r.get("accuracy") is not None and "setting" in r:
            pts.append(
                (f"{r['technique']}/{r['setting'].split('@')[0]}", r["file_bytes"], r["accuracy"])
            )
    return sorted(set(pts), key=lambda p: (p[1], p[0]))


def _frontier(records: list[dict]) -> list[str]:
    pts = _frontier_points(records)
    if not pts:
        return []
    front = set(pareto_front([(b, a) for _, b, a in pts]))
    rows = [[n, _int(b), _pct(a)] for n, b, a in pts if (b, a) in front]
    under = {
        label: max((p for p in pts if p[1] <= limit), key=lambda p: p[2], default=None)
        for label, limit in (("300 KB", KB300), ("1 MB", MB1))
    }
    out = [
        "## Size against accuracy, every method",
        "",
        "![frontier](frontier.png)",
        "",
        "Pareto frontier (no smaller file is more accurate):",
        "",
        _table(rows, ["result", "file bytes", "accuracy"]),
        "",
    ]
    for label, p in under.items():
        if p:
            out.append(f"- Best at or under {label}: {p[0]}, {_int(p[1])} bytes, {_pct(p[2])}.")
    return [*out, ""]


def _plots(records: list[dict], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []

    def save(fig, name: str) -> None:
        path = out_dir / name
        tmp = out_dir / f".{name}.tmp.png"
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
        plt.close(fig)
        os.replace(tmp, path)
        written.append(path)

    tech = _by_technique(records)
    curves = [r for r in tech.get("pruning", []) if "step" in r]
    if curves:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        groups: dict[tuple[str, float], list[dict]] = defaultdict(list)
        for r in curves:
            groups[(r["method"], r["rate"])].append(r)
        for (method, rate), rs in sorted(groups.items()):
            rs.sort(key=lambda r: r["step"])
            ax.plot(
                [r.get("kept_params", r["params"]) for r in rs],
                [r["accuracy"] for r in rs],
                marker="o",
                ms=3,
                label=f"{method} rate {rate}",
            )
        ax.set(
            xlabel="parameters kept (nonzero for magnitude)",
            ylabel="validation accuracy",
            title="Pruning curves",
        )
        ax.invert_xaxis()
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        save(fig, "pruning_curves.png")
    sweep = [r for r in tech.get("quantization", []) if "bits" in r]
    if sweep:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for g in sorted({r["granularity"] for r in sweep}):
            rs = sorted((r for r in sweep if r["granularity"] == g), key=lambda r: r["bits"])
            ax.plot([r["bits"] for r in rs], [r["accuracy"] for r in rs], marker="o", label=g)
        ax.axhline(sweep[0]["float_accuracy"], color="gray", ls="--", label="float32")
        ax.set(xlabel="bits per weight", ylabel="validation accuracy", title="Bits vs accuracy")
        ax.grid(alpha=0.3)
        ax.legend()
        save(fig, "quant_bits.png")
    arch = tech.get("architecture", [])
    if arch:
        fig, ax = plt.subplots(figsize=(6, 4))
        names = [r["setting"] for r in arch]
        ax.bar(names, [r["accuracy"] for r in arch], color="tab:blue")
        lo = min(r["accuracy"] for r in arch)
        ax.set_ylim(max(0.0, lo - 0.05), 1.0)
        ax.set(ylabel="validation accuracy", title="Architectures at about 1 MB")
        for i, r in enumerate(arch):
            ax.text(i, r["accuracy"], f"{r['params']:,}", ha="center", va="bottom", fontsize=8)
        save(fig, "architecture.png")
    pts = _frontier_points(records)
    if pts:
        fig, ax = plt.subplots(figsize=(8, 5))
        for t in sorted({n.split("/")[0] for n, _, _ in pts}):
            sub = [(b, a) for n, b, a in pts if n.split("/")[0] == t]
            ax.scatter([b for b, _ in sub], [a for _, a in sub], s=14, label=t)
        front = pareto_front([(b, a) for _, b, a in pts])
        ax.plot([b for b, _ in front], [a for _, a in front], color="black", lw=1, label="Pareto")
        ax.axvline(KB300, color="red", ls="--", lw=1, label="300 KB")
        ax.axvline(MB1, color="purple", ls="--", lw=1, label="1 MB")
        ax.set_xscale("log")
        ax.set(xlabel="file bytes on disk", ylabel="validation accuracy", title="Size vs accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        save(fig, "frontier.png")
    return written


def _newest_setup(records: list[dict]) -> tuple[str, str]:
    newest = max(records, key=lambda r: r.get("created", ""))
    return newest["dataset"], newest["profile"]


def render(records: list[dict]) -> str:
    """The markdown of a report over one data set and profile's records."""
    if not records:
        raise CompressError("no records to report on; run the benchmarks first")
    dataset, profile = records[0]["dataset"], records[0]["profile"]
    newest = max(records, key=lambda r: r.get("created", ""))
    machine = newest.get("machine", {})
    commit = newest.get("commit", {})
    food11 = dataset == "food11"
    tech = _by_technique(records)
    lines = [
        "# compress-bench report",
        "",
        f"- data set: **{dataset}**, profile: **{profile}**, records: {len(records)}",
        f"- machine: {machine.get('processor', '?')}, {machine.get('cpu_count', '?')} CPUs, "
        f"{machine.get('cuda_device', 'no GPU')}; torch {newest.get('torch_version', '?')}, "
        f"Python {machine.get('python', '?')}",
        f"- commit: {commit.get('id', 'unknown')[:12]}{' (dirty)' if commit.get('dirty') else ''}"
        f"; newest record {newest.get('created', '?')}",
    ]
    if food11:
        lines.append("- the reference's Food-11 numbers are shown beside ours")
    lines.append("")
    lines += _distillation(tech.get("distillation", []), food11)
    lines += _quantization(tech.get("quantization", []), food11)
    if tech.get("quantization"):
        lines += ["![bits](quant_bits.png)", ""]
    lines += _pruning(tech.get("pruning", []))
    lines += _experiment1(tech, food11)
    lines += _architecture(tech.get("architecture", []))
    lines += _lowrank(tech.get("lowrank", []))
    lines += _frontier(records)
    return "\n".join(lines).rstrip() + "\n"


def _experiment1(tech: dict[str, list[dict]], food11: bool) -> list[str]:
    quant = next(
        (r for r in tech.get("quantization", []) if r.get("setting") == "9bit-per_tensor"), None
    )
    pruned = next(
        (r for r in tech.get("pruning", []) if r["setting"].startswith("slimming-300KB")), None
    )
    if not quant or not pruned:
        return []
    rows = [
        ["quantization, 9 bits", _int(quant["file_bytes"]), _pct(quant["accuracy"])],
        ["pruning (network slimming)", _int(pruned["file_bytes"]), _pct(pruned["accuracy"])],
    ]
    headers = ["method", "file bytes", "accuracy"]
    if food11:
        rows[0].append(_pct(REFERENCE["quant_9bit"]))
        rows[1].append(_pct(REFERENCE["pruned_300kb"]))
        headers.append("reference")
    return [
        "## Experiment 1: the same student at ~300 KB, two methods",
        "",
        _table(rows, headers),
        "",
    ]


def write_report(
    results_dir: str | os.PathLike,
    out_dir: str | os.PathLike = "reports",
    dataset: str | None = None,
    profile: str | None = None,
) -> Path:
    """Write out_dir/REPORT.md and its PNG plots from the records in results_dir."""
    records = read_records(results_dir)
    if not records:
        raise CompressError(f"no records in {results_dir}; run the benchmarks first")
    if dataset is None or profile is None:
        d, p = _newest_setup(records)
        dataset, profile = dataset or d, profile or p
    records = [r for r in records if r["dataset"] == dataset and r["profile"] == profile]
    if not records:
        raise CompressError(f"no records for {dataset}/{profile} in {results_dir}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _plots(records, out)
    path = out / "REPORT.md"
    atomic_write_bytes(path, render(records).encode())
    return path
