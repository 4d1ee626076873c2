"""Property tests: damaged or random input gives a result (a valid prefix) or an
InputError, never another exception, a hang, or a huge allocation."""

from __future__ import annotations

import struct
import tracemalloc
from unittest import mock

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lossdoctor.errors import InputError
from lossdoctor.sources import protowire as pw
from lossdoctor.sources import tensorboard
from lossdoctor.sources.crc32c import crc32c_many, crc32c_pure, masked_crc32c
from lossdoctor.sources.tbwriter import (
    _varint,
    encode_file_version_event,
    encode_scalar_event,
    frame_records,
)
from lossdoctor.sources.tensorboard import EventScalars, read_event_bytes

FUZZ = settings(
    max_examples=60,
    deadline=2000,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,  # the same examples on every run: CI stays deterministic
    database=None,
)

tags = st.sampled_from(["loss", "val/loss", "lr", "a", "é✓/x", "grad/" + "w" * 40])
steps = st.one_of(st.integers(0, 300), st.integers(-(2**63), 2**63 - 1))
values = st.floats(width=32, allow_nan=True, allow_infinity=True)
events = st.lists(st.tuples(tags, values, steps), min_size=1, max_size=30)


def _field(key: int, payload: bytes) -> bytes:
    return bytes([key]) + _varint(len(payload)) + payload


def tf2_scalar_event(tag: str, value: float, step: int, wall_time: float) -> bytes:
    """What TF2's tf.summary.scalar writes: a DT_FLOAT scalar tensor + metadata."""
    tensor = b"\x08\x01\x12\x00" + _field(0x22, struct.pack("<f", value))
    meta = _field(0x0A, _field(0x0A, b"scalars"))
    value_msg = _field(0x0A, tag.encode()) + _field(0x42, tensor) + _field(0x4A, meta)
    head = b"\x09" + struct.pack("<d", wall_time) + (b"\x10" + _varint(step) if step else b"")
    return head + _field(0x2A, _field(0x0A, value_msg))


def valid_file(rows: list[tuple[str, float, int]]) -> bytes:
    """Every other record TF2-style, the rest PyTorch-style (simple_value)."""
    records = [encode_file_version_event(1.0)]
    for i, (t, v, s) in enumerate(rows):
        encode = tf2_scalar_event if i % 2 else encode_scalar_event
        records.append(encode(t, v, s, 2.0 + i))
    return frame_records(records)


def read_or_input_error(data: bytes, verify: bool = False) -> EventScalars | None:
    try:
        result = read_event_bytes(data, path="fuzz", verify=verify)
    except InputError:
        return None
    for name, series in result.scalars.items():
        assert isinstance(name, str)
        assert series.steps.dtype == np.int64 and series.values.dtype == np.float64
        assert result.wall_times[name].shape == series.steps.shape
    return result


def points(result: EventScalars) -> list[tuple[str, int, float]]:
    return sorted(
        (tag, int(s), float(v))
        for tag, series in result.scalars.items()
        for s, v in zip(series.steps.tolist(), series.values.tolist(), strict=True)
        if v == v  # NaN never equals itself
    )


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes(data: bytes) -> None:
    read_or_input_error(data)
    read_or_input_error(data, verify=True)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_behind_a_valid_header(tail: bytes) -> None:
    # Random record bodies with a correct length CRC reach the protobuf decoder.
    head = struct.pack("<Q", len(tail))
    record = head + struct.pack("<I", masked_crc32c(head)) + tail + b"\0\0\0\0"
    read_or_input_error(record + record)


@FUZZ
@given(events, st.data())
def test_bit_flips(rows: list[tuple[str, float, int]], data: st.DataObject) -> None:
    raw = bytearray(valid_file(rows))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= 1 << data.draw(st.integers(0, 7))
    read_or_input_error(bytes(raw))
    read_or_input_error(bytes(raw), verify=True)


@FUZZ
@given(events, st.data())
def test_cut_files_give_a_prefix(rows: list[tuple[str, float, int]], data: st.DataObject) -> None:
    full = valid_file(rows)
    cut = data.draw(st.integers(1, len(full)))
    result = read_or_input_error(full[:cut])
    if result is None:
        assert cut < 12  # only a file too short for one header is refused
        return
    expected = read_event_bytes(full)
    assert set(points(result)) <= set(points(expected))
    for tag, series in result.scalars.items():
        whole = expected.scalars[tag]
        n = len(series)
        np.testing.assert_array_equal(series.steps, whole.steps[:n])
        np.testing.assert_array_equal(series.values, whole.values[:n])
    boundaries, pos = {0}, 0
    while pos < len(full):
        pos += struct.unpack_from("<Q", full, pos)[0] + 16
        boundaries.add(pos)
    assert bool(result.warnings) == (cut not in boundaries)


@FUZZ
@given(events, st.integers(0, 2**64 - 1), st.booleans(), st.data())
def test_absurd_length_fields(rows: list[tuple[str, float, int]], length: int, good_crc: bool,
                              data: st.DataObject) -> None:
    raw = bytearray(valid_file(rows))
    offsets, pos = [], 0
    while pos < len(raw):
        offsets.append(pos)
        pos += struct.unpack_from("<Q", raw, pos)[0] + 16
    at = data.draw(st.sampled_from(offsets))
    head = struct.pack("<Q", length)
    raw[at:at + 8] = head
    if good_crc:
        raw[at + 8:at + 12] = struct.pack("<I", masked_crc32c(head))
    tracemalloc.start()
    try:
        read_or_input_error(bytes(raw))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * len(raw) + (4 << 20)  # nothing sized by the length field


@FUZZ
@given(st.binary(max_size=200))
def test_protowire_random(data: bytes) -> None:
    try:
        for _num, wire, _value, start, end in pw.iter_fields(data, 0, len(data)):
            assert 0 <= start <= end <= len(data)
            if wire == pw.LEN:
                pw.packed_varints(data, start, end)
    except pw.ProtoError:
        pass


@FUZZ
@given(st.integers(-(2**63), 2**64 - 1))
def test_varint_round_trip(value: int) -> None:
    raw = _varint(value) + b"rest"
    decoded, pos = pw.read_varint(raw, 0, len(raw))
    assert decoded == value & (2**64 - 1) and raw[pos:] == b"rest"
    assert pw.to_int64(decoded) == (value if value < 2**63 else value - 2**64)
    try:
        pw.read_varint(raw, 0, pos - 1)
    except pw.ProtoError:
        pass
    else:
        raise AssertionError("a cut varint must be refused")


@FUZZ
@given(st.binary(max_size=3000), st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 3000)),
                                          max_size=20))
def test_crc32c_many_matches_reference(buf: bytes, spans: list[tuple[int, int]]) -> None:
    arr = np.frombuffer(buf, dtype=np.uint8)
    spans = [(min(s, len(buf)), n) for s, n in spans]
    spans = [(s, min(n, len(buf) - s)) for s, n in spans]
    got = crc32c_many(arr, np.array([s for s, _ in spans], dtype=np.int64),
                      np.array([n for _, n in spans], dtype=np.int64))
    assert got.tolist() == [crc32c_pure(buf[s:s + n]) for s, n in spans]


@FUZZ
@given(events, st.data())
def test_fast_path_agrees_with_general_decoder(rows: list[tuple[str, float, int]],
                                               data: st.DataObject) -> None:
    raw = bytearray(valid_file(rows))
    if data.draw(st.booleans()):  # and on damaged files
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= 1 << data.draw(st.integers(0, 7))
    fast = read_or_input_error(bytes(raw))
    empty = np.zeros(0, dtype=np.int64)
    none = (empty, empty, empty, np.zeros(0), np.zeros(0))
    with mock.patch.object(tensorboard, "_fast_decode", lambda *a: none):
        slow = read_or_input_error(bytes(raw))
    assert (fast is None) == (slow is None)
    if fast is not None and slow is not None:
        assert list(fast.scalars) == list(slow.scalars)
        for tag, series in fast.scalars.items():
            np.testing.assert_array_equal(series.steps, slow.scalars[tag].steps)
            np.testing.assert_array_equal(series.values, slow.scalars[tag].values)
            np.testing.assert_array_equal(fast.wall_times[tag], slow.wall_times[tag])


@FUZZ
@given(events)
def test_valid_files_read_back(rows: list[tuple[str, float, int]]) -> None:
    result = read_event_bytes(valid_file(rows), verify=True)
    assert result.warnings == []
    for tag in {t for t, _, _ in rows}:
        want = [(s, v) for t, v, s in rows if t == tag]
        series = result.scalars[tag]
        assert series.steps.tolist() == [s for s, _ in want]
        np.testing.assert_array_equal(series.values, np.float32([v for _, v in want]))


def long_regular_file(n: int, tags: int) -> bytes:
    """Hundreds of same-sized records: the layout the vectorized framing path takes."""
    records = [encode_file_version_event(1.0)]
    for i in range(n):
        records.append(encode_scalar_event(f"t{i % tags}", 1.0 / (i + 1), 1000 + i, 2.0 + i))
    return frame_records(records)


@FUZZ
@given(st.integers(60, 900), st.integers(1, 4), st.data())
def test_long_regular_files_cut_or_flipped(n: int, tags: int, data: st.DataObject) -> None:
    full = long_regular_file(n, tags)
    # Mostly near the end: a run killed mid-write, the case the fast path must handle.
    back = data.draw(st.one_of(st.integers(1, 120), st.integers(1, len(full) - 12)))
    cut = len(full) - back
    result = read_or_input_error(full[:cut])
    assert result is not None
    expected = read_event_bytes(full)
    for tag, series in result.scalars.items():
        whole = expected.scalars[tag]
        np.testing.assert_array_equal(series.steps, whole.steps[: len(series)])
    raw = bytearray(full)
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= 1 << data.draw(st.integers(0, 7))
    read_or_input_error(bytes(raw))
    read_or_input_error(bytes(raw), verify=True)
