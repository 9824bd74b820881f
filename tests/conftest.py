from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """No test reads or writes the user's real model cache."""
    monkeypatch.setenv("COMPRESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("COMPRESS_ALLOW_DOWNLOAD", raising=False)
    torch.manual_seed(0)


@pytest.fixture
def write_images():
    """write_images(folder, names): small random RGB images in real JPEG/PNG files."""

    def write(folder: Path, names: list[str], size: int = 12, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / name)

    return write
