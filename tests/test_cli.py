from __future__ import annotations

import json
from dataclasses import replace

import pytest

from compress.cli import build_parser, main
from compress.profiles import PROFILES


def test_help_explains_every_option(capsys):
    for cmd in ("train", "run", "report", "compare"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        out = capsys.readouterr().out
        assert "usage:" in out
    parser = build_parser()
    for action in parser._subparsers._group_actions[0].choices["train"]._actions:
        assert action.help, action.dest


def test_train_smoke_student_twice_uses_the_cache(tmp_path, capsys, monkeypatch):
    # One epoch keeps the test fast; what is checked is the cache, not the accuracy.
    monkeypatch.setitem(PROFILES, "smoke", replace(PROFILES["smoke"], student_epochs=1))
    argv = ["train", "student", "--profile", "smoke", "--cache-dir", str(tmp_path)]
    assert main([*argv, "--out", str(tmp_path / "s.pt")]) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(argv) == 0
    second = json.loads(capsys.readouterr().out)
    assert first["params"] == 256_522 and first["cached"] is False and second["cached"] is True
    assert first["accuracy"] == second["accuracy"] > 0.2  # chance is 0.1
    assert first["file_bytes"] == (tmp_path / "s.pt").stat().st_size


def test_unknown_profile_and_missing_root_are_clear(capsys):
    with pytest.raises(SystemExit):
        main(["train", "student", "--profile", "huge"])
    assert "invalid choice: 'huge'" in capsys.readouterr().err
    assert main(["train", "student", "--dataset", "food11", "--profile", "smoke"]) == 2
    assert "--data-root" in capsys.readouterr().err
