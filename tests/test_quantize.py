from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from compress.errors import FormatError
from compress.models import ConvNet, build_student
from compress.qformat import (
    FORMAT_VERSION,
    PREAMBLE,
    decode,
    encode,
    load_quantized,
    save_quantized,
)
from compress.quantize import (
    BitWidthError,
    QuantConfig,
    apply,
    check_bits,
    dequantize_tensor,
    pack_bits,
    quantize_tensor,
    unpack_bits,
)

bits_st = st.integers(1, 16)
# Real weights are never subnormal; below ~1e-38 a step can underflow to zero.
finite = st.floats(
    -100, 100, allow_nan=False, allow_infinity=False, allow_subnormal=False, width=32
)
matrices = arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 9)), elements=finite)


def small_net():
    torch.manual_seed(0)
    return ConvNet([4, 4, 8, 8, 8, 8, 8, 8], num_classes=3).eval()


@given(bits=bits_st, data=st.data())
@settings(max_examples=60, deadline=None)
def test_pack_then_unpack_is_identity(bits, data):
    n = data.draw(st.integers(0, 300))
    values = data.draw(arrays(np.int64, n, elements=st.integers(0, (1 << bits) - 1)))
    packed = pack_bits(values, bits)
    assert len(packed) == (n * bits + 7) // 8  # a b-bit value takes b bits
    assert np.array_equal(unpack_bits(packed, bits, n), values)


@given(
    bits=bits_st,
    w=matrices,
)
@settings(max_examples=80, deadline=None)
def test_dequantization_error_is_at_most_half_a_step(bits, w):
    t = torch.from_numpy(w)
    for per_channel in (False, True):
        q, scale, zero = quantize_tensor(t, bits, per_channel)
        assert int(q.min()) >= 0 and int(q.max()) < (1 << bits)
        err = (dequantize_tensor(q, scale, zero) - t).abs()
        step = scale.view(-1, 1) if per_channel else scale
        assert bool((err <= step / 2 * (1 + 1e-5) + 1e-6).all())


@given(
    bits=bits_st,
    w=matrices,
)
@settings(max_examples=80, deadline=None)
def test_per_channel_error_never_above_per_tensor(bits, w):
    """Each channel's step is at most the tensor's, so its worst case is never worse."""
    t = torch.from_numpy(w)
    _, s_tensor, _ = quantize_tensor(t, bits, per_channel=False)
    q, s_chan, z = quantize_tensor(t, bits, per_channel=True)
    spans = (t.max(dim=1).values.clamp(min=0) - t.min(dim=1).values.clamp(max=0)) > 0
    assert bool((s_chan[spans] <= s_tensor * (1 + 1e-6)).all())
    err_chan = (dequantize_tensor(q, s_chan, z) - t).abs().max()
    assert float(err_chan) <= float(s_tensor) / 2 * (1 + 1e-5) + 1e-6


def test_quantize_exact_small_case():
    q, scale, zero = quantize_tensor(torch.tensor([-1.0, 0.0, 0.5, 1.0]), bits=2)
    assert q.tolist() == [0, 2, 3, 3]
    assert zero.tolist() == [2]
    assert scale.item() == pytest.approx(2 / 3)


@pytest.mark.parametrize("bad", [0, 17, -3, 2.5, "8", True])
def test_bit_width_out_of_range(bad):
    with pytest.raises(BitWidthError, match="1 to 16"):
        check_bits(bad)
    with pytest.raises((BitWidthError, ValueError)):
        QuantConfig(bits=bad)


@pytest.mark.parametrize("granularity", ["per_tensor", "per_channel"])
@pytest.mark.parametrize("bits", [1, 2, 5, 9, 16])
def test_file_round_trip_is_bit_identical(tmp_path, bits, granularity):
    net = small_net()
    config = QuantConfig(bits, granularity)
    path = tmp_path / "m.cbq"
    size = save_quantized(net, config, path)
    assert size == path.stat().st_size
    back, ref = load_quantized(path), apply(net, config)
    for name, t in ref.state_dict().items():
        if not name.endswith("num_batches_tracked"):
            assert torch.equal(back.state_dict()[name], t), name
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(back(x), ref.eval()(x))


def test_lzma_stage_reads_back_and_shrinks():
    net = small_net()
    raw = encode(net, QuantConfig(2), codec="none")
    packed = encode(net, QuantConfig(2), codec="lzma")
    assert len(packed) < len(raw)
    a, b = decode(raw), decode(packed)
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())


def test_apply_never_changes_the_input():
    net = small_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    apply(net, QuantConfig(3))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_nine_bit_student_is_under_300_kb(tmp_path):
    assert save_quantized(build_student(11), QuantConfig(9), tmp_path / "s.cbq") <= 300_000


@given(st.data())
@settings(max_examples=40, deadline=None)
def test_flipped_bytes_are_always_detected(data):
    raw = bytearray(encode(small_net(), QuantConfig(5)))
    positions = data.draw(
        st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=4, unique=True)
    )
    for p in positions:
        raw[p] ^= data.draw(st.integers(1, 255))
    with pytest.raises(FormatError):
        decode(bytes(raw))


@pytest.mark.parametrize("keep", [0, 5, 100, -1])
def test_truncated_file_is_detected(keep):
    raw = encode(small_net(), QuantConfig(4))
    with pytest.raises(FormatError, match="too short|checksum|not a quantized"):
        decode(raw[:keep])


def test_newer_version_and_other_architecture_are_refused():
    import hashlib

    raw = encode(small_net(), QuantConfig(4))
    body = raw[:-32]
    magic, _, codec, hlen = PREAMBLE.unpack_from(body)
    newer = PREAMBLE.pack(magic, FORMAT_VERSION + 1, codec, hlen) + body[PREAMBLE.size :]
    with pytest.raises(FormatError, match="newer than this reader"):
        decode(newer + hashlib.sha256(newer).digest())
    with pytest.raises(FormatError, match="not the expected"):
        decode(raw, expect_spec=build_student().spec())
    assert decode(raw, expect_spec=small_net().spec()) is not None


def test_missing_file(tmp_path):
    with pytest.raises(FormatError, match="does not exist"):
        load_quantized(tmp_path / "nope.cbq")


def test_int8_model_runs_close_to_float_and_restores_the_engine():
    from torch.utils.data import DataLoader, TensorDataset

    from compress.int8 import quantized_engine, run_int8, to_int8

    net = small_net()
    x = torch.randn(16, 3, 32, 32)
    calibration = DataLoader(TensorDataset(x, torch.zeros(16, dtype=torch.long)), batch_size=8)
    before = torch.backends.quantized.engine
    q = to_int8(net, calibration)
    out = run_int8(q, x)
    assert torch.backends.quantized.engine == before
    assert out.shape == (16, 3)
    ref = net(x)
    assert (out - ref).abs().max() < 0.1 * ref.abs().max() + 0.05
    with quantized_engine(q.engine):
        assert torch.backends.quantized.engine == q.engine
