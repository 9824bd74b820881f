"""The quantized-model file: a compact binary format, no pickle.

Layout (little-endian):

    magic      4 bytes  b"CBQF"
    version    u16      FORMAT_VERSION
    codec      u8       0 = raw payload, 1 = lzma-compressed payload
    header_len u32
    header     header_len bytes of UTF-8 JSON: model spec, bits, granularity, extras dtype,
               and the tensor table as one compact string (see _table)
    payload    per tensor in state-dict order: scales (float32), zero points (uint16) and
               the bit-packed integers for quantized tensors; raw float16/32 bytes otherwise
    digest     32 bytes  SHA-256 of everything before it

A 9-bit value takes 9 bits. Reading checks the digest first, so a truncated or altered file,
a newer version, or a file for another architecture gets a clear error, never a bad model.

>>> import tempfile, os
>>> from compress.models import build_student
>>> path = os.path.join(tempfile.mkdtemp(), "s.cbq")
>>> n = save_quantized(build_student(), QuantConfig(bits=9), path)
>>> n < 300_000
True
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from compress.cache import atomic_write_bytes
from compress.errors import FormatError
from compress.models import model_from_spec, model_spec
from compress.quantize import (
    QuantConfig,
    dequantize_tensor,
    pack_bits,
    quantize_tensor,
    quantized_names,
    unpack_bits,
)

MAGIC = b"CBQF"
FORMAT_VERSION = 1
PREAMBLE = struct.Struct("<4sHBI")
DIGEST_BYTES = 32
CODECS = {"none": 0, "lzma": 1}
# Kinds of stored tensor in the table: q = quantized, h = float16, f = float32, i = int64.
DTYPES = {"h": np.float16, "f": np.float32, "i": np.int64}


def _stored(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # BatchNorm's step counter only matters for momentum=None; it is not a weight.
    return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}


def encode(model: nn.Module, config: QuantConfig, codec: str = "none") -> bytes:
    """The bytes of a quantized-model file for model at config."""
    if codec not in CODECS:
        raise ValueError(f"codec must be one of {list(CODECS)}, got {codec!r}")
    names = quantized_names(model)
    per_channel = config.granularity == "per_channel"
    extras = "h" if config.extras_dtype == "float16" else "f"
    table, chunks = [], []
    for name, t in _stored(model.state_dict()).items():
        t = t.detach().cpu()
        if name in names:
            q, scale, zero = quantize_tensor(t, config.bits, per_channel)
            chunks += [
                scale.numpy().astype("<f4").tobytes(),
                zero.numpy().astype("<u2").tobytes(),
                pack_bits(q.numpy().reshape(-1), config.bits),
            ]
            table.append(f"q{t.numel()}:{scale.numel()}")
        else:
            kind = extras if t.is_floating_point() else "i"
            chunks.append(t.numpy().astype(np.dtype(DTYPES[kind]).newbyteorder("<")).tobytes())
            table.append(f"{kind}{t.numel()}")
    payload = b"".join(chunks)
    if codec == "lzma":
        payload = lzma.compress(payload, preset=9 | lzma.PRESET_EXTREME)
    header = json.dumps(
        {
            "spec": model_spec(model),
            "bits": config.bits,
            "granularity": config.granularity,
            "extras": config.extras_dtype,
            "table": ",".join(table),
        },
        separators=(",", ":"),
    ).encode()
    body = PREAMBLE.pack(MAGIC, FORMAT_VERSION, CODECS[codec], len(header)) + header + payload
    return body + hashlib.sha256(body).digest()


def save_quantized(
    model: nn.Module, config: QuantConfig, path: str | os.PathLike, codec: str = "none"
) -> int:
    """Write the file atomically; returns its size in bytes on disk."""
    path = Path(path)
    atomic_write_bytes(path, encode(model, config, codec))
    return path.stat().st_size


def _parse(raw: bytes, source: str) -> tuple[dict[str, Any], bytes]:
    if len(raw) < PREAMBLE.size + DIGEST_BYTES:
        raise FormatError(f"{source}: {len(raw)} bytes is too short for a quantized-model file")
    magic, version, codec, header_len = PREAMBLE.unpack_from(raw)
    if magic != MAGIC:
        raise FormatError(f"{source}: not a quantized-model file (magic {magic!r})")
    body, digest = raw[:-DIGEST_BYTES], raw[-DIGEST_BYTES:]
    if hashlib.sha256(body).digest() != digest:
        raise FormatError(f"{source}: checksum mismatch: the file is truncated or corrupt")
    if version > FORMAT_VERSION:
        raise FormatError(
            f"{source}: format version {version} is newer than this reader ({FORMAT_VERSION}); "
            "upgrade compress-bench to read it"
        )
    header = json.loads(body[PREAMBLE.size : PREAMBLE.size + header_len])
    payload = body[PREAMBLE.size + header_len :]
    if codec == CODECS["lzma"]:
        payload = lzma.decompress(payload)
    elif codec != CODECS["none"]:
        raise FormatError(f"{source}: unknown codec {codec}")
    return header, payload


def decode(
    raw: bytes, expect_spec: dict[str, Any] | None = None, source: str = "data"
) -> nn.Module:
    """A float model from file bytes; expect_spec, when given, must match the file's model."""
    header, payload = _parse(raw, source)
    spec = header["spec"]
    if expect_spec is not None and spec != expect_spec:
        raise FormatError(f"{source}: the file holds {spec}, not the expected {expect_spec}")
    model = model_from_spec(spec)
    bits = header["bits"]
    state = _stored(model.state_dict())
    entries = header["table"].split(",")
    if len(entries) != len(state):
        raise FormatError(
            f"{source}: {len(entries)} tensors in the file, the model has {len(state)}"
        )
    pos = 0
    new_state = {}
    for (name, ref), entry in zip(state.items(), entries, strict=True):
        kind = entry[0]
        if kind == "q":
            count, channels = (int(x) for x in entry[1:].split(":"))
            if count != ref.numel():
                raise FormatError(f"{source}: {name} has {count} values, the model {ref.numel()}")
            scale = torch.from_numpy(np.frombuffer(payload, "<f4", channels, pos).copy())
            pos += 4 * channels
            zero = torch.from_numpy(np.frombuffer(payload, "<u2", channels, pos).astype(np.int64))
            pos += 2 * channels
            n = (count * bits + 7) // 8
            q = torch.from_numpy(unpack_bits(payload[pos : pos + n], bits, count)).view(ref.shape)
            pos += n
            new_state[name] = dequantize_tensor(q, scale, zero)
        else:
            count = int(entry[1:])
            dtype = np.dtype(DTYPES[kind]).newbyteorder("<")
            arr = np.frombuffer(payload, dtype, count, pos).copy()
            pos += count * dtype.itemsize
            new_state[name] = torch.from_numpy(arr).to(ref.dtype).view(ref.shape)
    if pos != len(payload):
        raise FormatError(f"{source}: {len(payload) - pos} bytes left over after the tensors")
    model.load_state_dict(new_state, strict=False)
    return model.eval()


def load_quantized(path: str | os.PathLike, expect_spec: dict[str, Any] | None = None) -> nn.Module:
    """Read a file written by save_quantized into a working float model."""
    path = Path(path)
    if not path.is_file():
        raise FormatError(f"{path} does not exist")
    return decode(path.read_bytes(), expect_spec, str(path))
