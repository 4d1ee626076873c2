"""Write TensorBoard event files in pure Python (scalars as `simple_value`,
histograms as `histo`).

Records are encoded as they come and framed in batches: the data CRCs of a batch
are computed together with numpy (`crc32c_many`), which keeps a million scalars
to a couple of seconds.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from functools import lru_cache
from itertools import count
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, NamedTuple

import numpy as np

from lossdoctor.sources.crc32c import crc32c_many, mask_array, masked_crc32c

FILE_VERSION = b"brain.Event:2"
_F64 = struct.Struct("<d")
_F32 = struct.Struct("<f")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_FLT_MAX = 3.4028234663852886e38
_counter = count()


def _varint(value: int) -> bytes:
    value &= 0xFFFFFFFFFFFFFFFF  # negative int64: ten bytes, two's complement
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _float32(value: float) -> bytes:
    try:
        return _F32.pack(value)
    except OverflowError:  # finite but beyond float32: what a float32 cast gives
        return _F32.pack(float("inf") if value > 0 else float("-inf"))


def _len_field(key: int, payload: bytes) -> bytes:
    return bytes((key,)) + _varint(len(payload)) + payload


def encode_scalar_event(tag: str, value: float, step: int, wall_time: float) -> bytes:
    """Event{wall_time, step, summary{value{tag, simple_value}}} as protobuf bytes.

    A zero step is left out, as proto3 serializers do.
    """
    head = b"\x09" + _F64.pack(wall_time)
    if step:
        head += b"\x10" + _varint(step)
    value_msg = _len_field(0x0A, tag.encode("utf-8")) + b"\x15" + _float32(value)
    return head + _len_field(0x2A, _len_field(0x0A, value_msg))


def encode_scalar_events(tag: str, steps: list[int], values: list[float],
                         wall_time: float) -> list[bytes]:
    """`encode_scalar_event` for many points of one tag: everything but the step and
    the value is the same for all of them, so it is encoded once, and the values are
    packed to float32 in one numpy call (the live doctor writes a few dozen such series
    per reading)."""
    tag_field = _len_field(0x0A, tag.encode("utf-8"))
    value_len = len(tag_field) + 5  # tag, then simple_value: key byte + 4 bytes
    summary_head = b"\x0a" + _varint(value_len)
    # summary field, its one value, the tag, the simple_value key; then 4 value bytes
    middle = (b"\x2a" + _varint(len(summary_head) + value_len) + summary_head + tag_field
              + b"\x15")
    head = b"\x09" + _F64.pack(wall_time)
    with np.errstate(over="ignore"):  # finite beyond float32: inf, as _float32 gives
        packed = np.asarray(values, dtype=np.float64).astype("<f4").tobytes()
    if len(packed) != 4 * len(steps):
        raise ValueError(f"{len(steps)} steps but {len(packed) // 4} values")
    out = []
    for i, step in enumerate(steps):
        step = int(step)
        out.append(head + (_step_field(step) if step else b"") + middle
                   + packed[4 * i:4 * i + 4])
    return out


@lru_cache(maxsize=1 << 16)
def _step_field(step: int) -> bytes:
    return b"\x10" + _varint(step)


def _double_field(key: int, value: float) -> bytes:
    return bytes((key,)) + _F64.pack(value)


class HistogramFields(NamedTuple):
    """The numbers of a TensorBoard HistogramProto."""

    minimum: float
    maximum: float
    num: float
    total: float  # HistogramProto.sum
    sum_squares: float
    bucket_limit: np.ndarray  # right edge of each bucket
    bucket: np.ndarray  # count of each bucket


def encode_histogram_event(tag: str, step: int, wall_time: float,
                           h: HistogramFields) -> bytes:
    """Event{wall_time, step, summary{value{tag, histo: HistogramProto}}} as protobuf
    bytes. `bucket_limit[i]` is the right edge of bucket i (TensorBoard's convention:
    bucket i holds the values in (bucket_limit[i-1], bucket_limit[i]])."""
    minimum, maximum, num, total, sum_squares = (float(h.minimum), float(h.maximum),
                                                 float(h.num), float(h.total),
                                                 float(h.sum_squares))
    limits = np.ascontiguousarray(h.bucket_limit, dtype="<f8").reshape(-1)
    counts = np.ascontiguousarray(h.bucket, dtype="<f8").reshape(-1)
    if limits.shape != counts.shape:
        raise ValueError(f"{limits.shape[0]} bucket limits but {counts.shape[0]} buckets")
    histo = (_double_field(0x09, minimum) + _double_field(0x11, maximum)
             + _double_field(0x19, num) + _double_field(0x21, total)
             + _double_field(0x29, sum_squares))
    if limits.shape[0]:
        histo += _len_field(0x32, limits.tobytes()) + _len_field(0x3A, counts.tobytes())
    value_msg = _len_field(0x0A, tag.encode("utf-8")) + _len_field(0x2A, histo)
    head = b"\x09" + _F64.pack(wall_time)
    if step:
        head += b"\x10" + _varint(step)
    return head + _len_field(0x2A, _len_field(0x0A, value_msg))


def histogram_of(values: np.ndarray, bins: int = 30) -> HistogramFields:
    """HistogramProto fields of `values` (non-finite values left out): `bins` equal
    buckets over [min, max]."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    if v.shape[0] == 0:
        empty = np.zeros(0)
        return HistogramFields(0.0, 0.0, 0.0, 0.0, 0.0, empty, empty)
    lo, hi = float(v.min()), float(v.max())
    counts, edges = np.histogram(v, bins=max(1, int(bins)),
                                 range=(lo, hi) if hi > lo else (lo - 0.5, hi + 0.5))
    return HistogramFields(lo, hi, float(v.shape[0]), float(v.sum()), float(np.dot(v, v)),
                           edges[1:], counts.astype(np.float64))


def encode_file_version_event(wall_time: float) -> bytes:
    return b"\x09" + _F64.pack(wall_time) + _len_field(0x1A, FILE_VERSION)


def frame_records(records: list[bytes]) -> bytes:
    """TFRecord framing of `records`: length, masked length CRC, data, masked data CRC."""
    if not records:
        return b""
    body = b"".join(records)
    lengths = np.fromiter((len(r) for r in records), dtype=np.int64, count=len(records))
    starts = np.zeros(len(records), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    data_crcs = mask_array(crc32c_many(np.frombuffer(body, dtype=np.uint8), starts, lengths))
    length_crc: dict[int, bytes] = {}
    out = bytearray()
    for record, crc in zip(records, data_crcs.tolist(), strict=True):
        n = len(record)
        header = length_crc.get(n)
        if header is None:
            packed = _U64.pack(n)
            header = length_crc[n] = packed + _U32.pack(masked_crc32c(packed))
        out += header
        out += record
        out += _U32.pack(crc)
    return bytes(out)


class EventFileWriter:
    """Scalars into a new `events.out.tfevents.<time>.<host>.<pid>` file.

    Records are buffered; they reach the disk on `flush()`, on `close()`, and every
    `max_queue` records. A file is never overwritten: a name already taken gets a
    counter.
    """

    def __init__(self, directory: str | os.PathLike[str], filename_suffix: str = "",
                 *, max_queue: int = 1000) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        now = time.time()
        base = f"events.out.tfevents.{int(now):010d}.{socket.gethostname()}.{os.getpid()}"
        self._file: BinaryIO
        name = base + filename_suffix
        while True:
            try:
                self._file = (self.directory / name).open("xb")
                break
            except FileExistsError:
                name = f"{base}.{next(_counter)}{filename_suffix}"
        self.path = self.directory / name
        self.max_queue = max(1, max_queue)
        self._pending: list[bytes] = [encode_file_version_event(now)]
        self._closed = False
        self.flush()

    def add_scalar(self, tag: str, value: float, step: int,
                   wall_time: float | None = None) -> None:
        if self._closed:
            raise ValueError(f"{self.path}: the writer is closed")
        wall = time.time() if wall_time is None else float(wall_time)
        self._pending.append(encode_scalar_event(tag, float(value), int(step), wall))
        if len(self._pending) >= self.max_queue:
            self.flush()

    def add_scalars(self, tag: str, steps: list[int], values: list[float],
                    wall_time: float | None = None) -> None:
        """Many points of one tag at once (all with the same wall time)."""
        if self._closed:
            raise ValueError(f"{self.path}: the writer is closed")
        wall = time.time() if wall_time is None else float(wall_time)
        self._pending.extend(encode_scalar_events(tag, steps, values, wall))
        if len(self._pending) >= self.max_queue:
            self.flush()

    def add_histogram(self, tag: str, values: np.ndarray | list[float], step: int,
                      wall_time: float | None = None, bins: int = 30) -> None:
        """A histogram of `values` (`bins` equal buckets over [min, max]; NaN/inf left
        out), as TensorBoard's HistogramProto."""
        fields = histogram_of(np.asarray(values), bins)
        self._add_histo(tag, step, wall_time, fields)

    def add_histogram_counts(self, tag: str, edges: np.ndarray | list[float],
                             counts: np.ndarray | list[float], step: int,
                             wall_time: float | None = None, *,
                             minimum: float | None = None, maximum: float | None = None,
                             total: float = 0.0, sum_squares: float = 0.0) -> None:
        """A histogram already binned: `counts[i]` values in [edges[i], edges[i+1]]
        (len(edges) == len(counts) + 1). min/max default to the outer edges."""
        e = np.asarray(edges, dtype=np.float64).reshape(-1)
        c = np.asarray(counts, dtype=np.float64).reshape(-1)
        if e.shape[0] != c.shape[0] + 1:
            raise ValueError(f"{c.shape[0]} counts need {c.shape[0] + 1} edges, "
                             f"but got {e.shape[0]}")
        fields = HistogramFields(
            float(e[0]) if minimum is None else float(minimum),
            float(e[-1]) if maximum is None else float(maximum),
            float(c.sum()), float(total), float(sum_squares), e[1:], c)
        self._add_histo(tag, step, wall_time, fields)

    def _add_histo(self, tag: str, step: int, wall_time: float | None,
                   fields: HistogramFields) -> None:
        if self._closed:
            raise ValueError(f"{self.path}: the writer is closed")
        wall = time.time() if wall_time is None else float(wall_time)
        self._pending.append(encode_histogram_event(tag, int(step), wall, fields))
        if len(self._pending) >= self.max_queue:
            self.flush()

    def flush(self) -> None:
        if self._closed:
            return
        if self._pending:
            self._file.write(frame_records(self._pending))
            self._pending = []
        self._file.flush()

    def close(self) -> None:
        if self._closed:
            return
        self.flush()
        self._file.close()
        self._closed = True

    def __enter__(self) -> EventFileWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


__all__ = [
    "FILE_VERSION",
    "EventFileWriter",
    "HistogramFields",
    "encode_file_version_event",
    "encode_histogram_event",
    "encode_scalar_event",
    "encode_scalar_events",
    "frame_records",
    "histogram_of",
]
