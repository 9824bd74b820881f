"""The accuracy gate and the end-of-session report, run as real pytest sessions."""

from __future__ import annotations

import json

import pytest

from compress.cli import main

pytest_plugins = ["pytester"]

DEMO = """
import os

def test_a(recorder, benchmark):
    benchmark.pedantic(lambda: None, rounds=1)
    recorder("demo", "a", float(os.environ["ACC"]), file_bytes=100)

def test_b(recorder, benchmark):
    benchmark.pedantic(lambda: None, rounds=1)
    recorder("demo", "b", 0.5, file_bytes=200)
    if os.environ.get("INTERRUPT"):
        raise KeyboardInterrupt
"""


@pytest.fixture
def session(pytester, monkeypatch):
    pytester.makepyfile(test_demo=DEMO)

    def run(acc: float, *args: str):
        monkeypatch.setenv("ACC", str(acc))
        return pytester.runpytest(
            "-p",
            "compress.pytest_plugin",
            "--compress-profile=smoke",
            "-p",
            "no:cacheprovider",
            *args,
            no_reraise_ctrlc=True,  # the interrupted-run test interrupts the inner session only
        )

    return run


def test_gate_passes_within_and_fails_beyond_tolerance(session, pytester):
    first = session(0.90, "--benchmark-save=base")
    first.assert_outcomes(passed=2)
    assert (pytester.path / "reports" / "REPORT.md").exists()
    within = session(0.895, "--accuracy-compare=base", "--accuracy-tolerance=1.0")
    within.assert_outcomes(passed=2)
    assert within.ret == 0
    within.stdout.fnmatch_lines(["*accuracy gate passed*", "*2 compared, 0 regressed*"])
    below = session(0.85, "--accuracy-compare=base", "--accuracy-tolerance=1.0")
    assert below.ret == pytest.ExitCode.TESTS_FAILED
    below.stdout.fnmatch_lines(["*ACCURACY REGRESSIONS*", "*demo/a*0.9000*0.8500*-5.00*REGRESSED*"])


def test_edited_baseline_with_higher_accuracy_fails(session, pytester):
    session(0.90, "--benchmark-save=base").assert_outcomes(passed=2)
    saved = next((pytester.path / ".benchmarks").glob("*/*_base.json"))
    data = json.loads(saved.read_text())
    for b in data["benchmarks"]:
        b["extra_info"]["accuracy"] = 0.99
    saved.write_text(json.dumps(data))
    result = session(0.90, f"--accuracy-compare={saved}")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*2 regressed*", "*demo/a*0.9900*0.9000*REGRESSED*"])
    assert main(["compare", str(saved), str(saved)]) == 0


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: "missing-run", "*no saved run 'missing-run'*"),
        (lambda p: str(p / "broken.json"), "*not a pytest-benchmark save*"),
    ],
)
def test_bad_baselines_fail_clearly(session, pytester, make, message):
    (pytester.path / "broken.json").write_text("{not json")
    result = session(0.9, f"--accuracy-compare={make(pytester.path)}")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([message])


def test_baseline_of_another_profile_is_refused(session, pytester, monkeypatch):
    session(0.9, "--benchmark-save=base").assert_outcomes(passed=2)
    monkeypatch.setenv("ACC", "0.9")
    other = pytester.runpytest(
        "-p",
        "compress.pytest_plugin",
        "--compress-profile=default",
        "-p",
        "no:cacheprovider",
        "--accuracy-compare=base",
    )
    assert other.ret == pytest.ExitCode.TESTS_FAILED
    other.stdout.fnmatch_lines(["*measured on mnist5k/smoke, this run is mnist5k/default*"])


def test_interrupted_run_keeps_records_and_report(session, pytester, monkeypatch):
    session(0.9).assert_outcomes(passed=2)
    report = pytester.path / "reports" / "REPORT.md"
    before = report.read_text()
    records = sorted((pytester.path / "reports" / "results").glob("*.json"))
    assert len(records) == 2
    monkeypatch.setenv("INTERRUPT", "1")
    result = session(0.7)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert report.read_text() == before
    assert sorted((pytester.path / "reports" / "results").glob("*.json")) == records
    assert all(json.loads(p.read_text()) for p in records)


def test_compare_cli_lists_regressions(session, pytester, capsys):
    session(0.9, "--benchmark-save=one").assert_outcomes(passed=2)
    session(0.8, "--benchmark-save=two").assert_outcomes(passed=2)
    a = next((pytester.path / ".benchmarks").glob("*/*_one.json"))
    b = next((pytester.path / ".benchmarks").glob("*/*_two.json"))
    assert main(["compare", str(a), str(b), "--tolerance", "1"]) == 1
    out = capsys.readouterr().out
    assert "demo/a" in out and "REGRESSED" in out and "-10.00" in out
