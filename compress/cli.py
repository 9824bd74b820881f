"""Command line: python -m compress {train,run,report,compare} --help."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from compress.data import DATASETS, DataConfig
from compress.distill import DistillConfig
from compress.errors import CompressError
from compress.profiles import PROFILES

TRAINABLE = {
    "teacher": lambda ctx: ctx.teacher(pretrained=False),
    "teacher-pretrained": lambda ctx: ctx.teacher(pretrained=True),
    "student": lambda ctx: ctx.student(),
    "distilled": lambda ctx: ctx.distilled(pretrained_teacher=False),
    "distilled-pretrained": lambda ctx: ctx.distilled(pretrained_teacher=True),
    "arch-conv": lambda ctx: ctx.architecture("conv"),
    "arch-dws": lambda ctx: ctx.architecture("dws"),
    "arch-group": lambda ctx: ctx.architecture("group"),
}


def add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset",
        default="mnist5k",
        choices=sorted(DATASETS),
        help="data set (default: mnist5k, embedded; the others read --data-root)",
    )
    p.add_argument("--data-root", default=None, help="folder of cifar10/food11/imagefolder data")
    p.add_argument(
        "--image-size", type=int, default=32, help="side of the square input (default: 32)"
    )
    p.add_argument(
        "--download", action="store_true", help="let cifar10 download itself (default: never)"
    )
    p.add_argument(
        "--profile",
        default="default",
        choices=sorted(PROFILES),
        help="training budget (default: default; smoke is for CI)",
    )
    p.add_argument(
        "--cache-dir",
        default=None,
        help="trained-model cache (default: $COMPRESS_CACHE or ~/.cache/compress-bench)",
    )
    p.add_argument(
        "--imagenet-weights",
        default=None,
        help="ResNet18 ImageNet weights file (default: torchvision's cached "
        "$TORCH_HOME/hub/checkpoints/resnet18-f37072fd.pth)",
    )
    p.add_argument(
        "--allow-download",
        action="store_true",
        help="let ImageNet weights download (default: no; or COMPRESS_ALLOW_DOWNLOAD=1)",
    )
    p.add_argument(
        "--temperature", type=float, default=4.0, help="distillation temperature (default: 4)"
    )
    p.add_argument(
        "--alpha", type=float, default=0.5, help="distillation soft-term weight (default: 0.5)"
    )


def context_from(args: argparse.Namespace):
    from compress.baselines import Context

    return Context(
        dataset=args.dataset,
        profile=args.profile,
        data=DataConfig(root=args.data_root, image_size=args.image_size, download=args.download),
        cache_dir=args.cache_dir,
        imagenet_weights=args.imagenet_weights,
        allow_download=args.allow_download,
        distill=DistillConfig(temperature=args.temperature, alpha=args.alpha),
    )


def cmd_train(args: argparse.Namespace) -> int:
    from compress.measure import param_count

    ctx = context_from(args)
    model, info = TRAINABLE[args.model](ctx)
    summary = {
        "model": args.model,
        "dataset": args.dataset,
        "profile": args.profile,
        "params": param_count(model),
        "accuracy": info["accuracy"],
        "epochs": info["epochs"],
        "train_seconds": round(info["train_seconds"], 2),
        "cached": info["cached"],
    }
    if args.out:
        from compress.models import save_model

        summary["file_bytes"] = save_model(model, args.out)
    print(json.dumps(summary, indent=1))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import pytest

    argv = [
        "benchmarks/",
        f"--compress-profile={args.profile}",
        f"--compress-dataset={args.dataset}",
    ]
    if args.data_root:
        argv.append(f"--compress-data-root={args.data_root}")
    if args.cache_dir:
        argv.append(f"--compress-cache={args.cache_dir}")
    if args.save:
        argv.append(f"--benchmark-save={args.save}")
    return int(pytest.main(argv + list(args.pytest_args)))


def cmd_report(args: argparse.Namespace) -> int:
    from compress.report import write_report

    path = write_report(args.results, args.out, dataset=args.dataset, profile=args.profile)
    print(f"wrote {path}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from compress.records import compare_accuracy, format_comparison, load_saved_run

    a, b = load_saved_run(args.a), load_saved_run(args.b)
    rows = compare_accuracy(
        {k: v["accuracy"] for k, v in a.items()},
        {k: v["accuracy"] for k, v in b.items()},
        args.tolerance,
    )
    print(format_comparison(rows))
    regressed = [r for r in rows if r.regressed]
    print(f"\n{len(rows)} compared, {len(regressed)} regressed beyond {args.tolerance} points")
    return 1 if regressed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m compress",
        description="Train, compress, measure and gate neural networks.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train (or load from the cache) one model")
    p.add_argument("model", choices=sorted(TRAINABLE), help="which model")
    add_data_options(p)
    p.add_argument("--out", default=None, help="also write the model to this file")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("run", help="run the benchmark suite (pytest benchmarks/)")
    add_data_options(p)
    p.add_argument("--save", default=None, help="name for --benchmark-save (default: none)")
    p.add_argument("pytest_args", nargs="*", help="more pytest arguments, after --")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("report", help="write reports/REPORT.md and plots from records")
    p.add_argument(
        "results",
        nargs="?",
        default="reports/results",
        help="folder of records (default: reports/results)",
    )
    p.add_argument("--out", default="reports", help="output folder (default: reports)")
    p.add_argument("--dataset", default=None, help="only this data set (default: the newest)")
    p.add_argument("--profile", default=None, help="only this profile (default: the newest)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("compare", help="accuracy table of two runs saved by --benchmark-save")
    p.add_argument("a", help="baseline: JSON file, or saved run name or number")
    p.add_argument("b", help="the run to check, likewise")
    p.add_argument(
        "--tolerance",
        type=float,
        default=1.0,
        help="allowed drop in accuracy points (default: 1.0)",
    )
    p.set_defaults(func=cmd_compare)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CompressError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
