"""Artifact cache: a trained model stored under a hash of everything that determines it.

An entry is one file: magic, the SHA-256 of the payload, then a torch-saved dict of plain
tensors and JSON-able metadata, read back with weights_only=True. A corrupt, truncated or
foreign entry is reported and trained again; a file lock makes concurrent workers train once.

>>> import tempfile
>>> cache = ArtifactCache(tempfile.mkdtemp())
>>> len(cache.key({"model": "student"}))
20
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from torch import nn

from compress import __version__

MAGIC = b"CBCACHE\x01"
CACHE_FORMAT = 2  # 2: models are initialised from the training seed
ENV_VAR = "COMPRESS_CACHE"


class CacheWarning(UserWarning):
    """A cache entry could not be used and is being rebuilt."""


def default_cache_dir() -> Path:
    """$COMPRESS_CACHE, else ~/.cache/compress-bench (outside any checkout)."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "compress-bench"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary sibling then rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class ArtifactCache:
    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root).expanduser() if root else default_cache_dir()

    @staticmethod
    def key(spec: dict[str, Any]) -> str:
        """A hash of the spec, the package version and the cache format."""
        blob = json.dumps(
            {"spec": spec, "version": __version__, "format": CACHE_FORMAT},
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def path(self, spec: dict[str, Any]) -> Path:
        return self.root / f"{self.key(spec)}.ckpt"

    def read(self, spec: dict[str, Any]) -> dict[str, Any] | None:
        """The stored entry, or None when absent; an unusable entry is removed with a warning."""
        path = self.path(spec)
        if not path.exists():
            return None
        problem = None
        raw = path.read_bytes()
        if len(raw) < len(MAGIC) + 32 or not raw.startswith(MAGIC):
            problem = "is truncated or not a cache entry"
        elif hashlib.sha256(raw[len(MAGIC) + 32 :]).digest() != raw[len(MAGIC) : len(MAGIC) + 32]:
            problem = "fails its checksum (corrupt or truncated)"
        else:
            entry = torch.load(io.BytesIO(raw[len(MAGIC) + 32 :]), weights_only=True)
            meta = entry.get("meta", {})
            if meta.get("format") != CACHE_FORMAT or meta.get("version") != __version__:
                problem = (
                    f"was written by compress-bench {meta.get('version')} "
                    f"(cache format {meta.get('format')}); this is {__version__}"
                )
            elif meta.get("spec") != json.loads(json.dumps(spec, default=str)):
                problem = "belongs to another model (hash collision or edited file)"
            else:
                return entry
        warnings.warn(
            f"cache entry {path} {problem}; training it again", CacheWarning, stacklevel=2
        )
        path.unlink(missing_ok=True)
        return None

    def write(self, spec: dict[str, Any], state: dict[str, torch.Tensor], info: dict) -> Path:
        meta = {
            "format": CACHE_FORMAT,
            "version": __version__,
            "spec": json.loads(json.dumps(spec, default=str)),
            "info": info,
        }
        buf = io.BytesIO()
        torch.save({"meta": meta, "state_dict": state}, buf)
        payload = buf.getvalue()
        path = self.path(spec)
        atomic_write_bytes(path, MAGIC + hashlib.sha256(payload).digest() + payload)
        return path

    def get_or_train(
        self,
        spec: dict[str, Any],
        build: Callable[[], nn.Module],
        train: Callable[[nn.Module], tuple[nn.Module, dict[str, Any]]],
    ) -> tuple[nn.Module, dict[str, Any]]:
        """Load the model for spec, or build and train it once (under a file lock).

        Returns the model (on the CPU, in eval mode) and the info recorded when it was trained,
        plus info["cached"]: whether this call loaded it.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.path(spec)) + ".lock"):
            entry = self.read(spec)
            if entry is None:
                model, info = train(build())
                state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
                self.write(spec, state, info)
                cached = False
            else:
                model = build()
                model.load_state_dict(entry["state_dict"])
                info = entry["meta"]["info"]
                cached = True
        return model.cpu().eval(), {**info, "cached": cached}
