"""Read scalars from TensorBoard event files, without TensorFlow or protobuf.

An event file is a TFRecord stream (see `crc32c`): `u64 length | u32 masked CRC of
the length | data | u32 masked CRC of the data`, each data an `Event` protobuf.

Speed comes from two passes instead of one protobuf parse per record:

1. hopping from record to record along the length fields (a Python loop that
   hands over to numpy while the record sizes repeat a cycle, see `_hop`); the
   length CRCs are then checked for all records at once;
2. numpy decoding of the common layouts, `Event{wall_time, step, summary{value{
   tag, simple_value}}}` (PyTorch, tensorboardX, TF1) and the TF2 scalar tensor
   (`tf.summary.scalar`, Keras): the bytes between the step and the value identify
   the tag, so records are grouped by those bytes (hashed, then compared), one
   record per group is checked by a strict parser, and the whole group is decoded
   by gathers. Every other record (file_version, histograms, images, odd
   encodings) goes through the general decoder (`_Decoder`).

Histograms come in two forms, both read by the general decoder into `Histogram`s:
a `histo` HistogramProto (PyTorch, TF1) and a TF2 `tf.summary.histogram` tensor
(Keras' `histogram_freq`), a [k, 3] table of (left edge, right edge, count) rows
recognised by its plugin name, which TF may write only with a tag's first value.
"""

from __future__ import annotations

import struct
from array import array
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lossdoctor.errors import InputError
from lossdoctor.run import Histogram, Run, Series
from lossdoctor.sources import protowire as pw
from lossdoctor.sources.crc32c import crc32c_many, crc32c_rows, mask_array, masked_crc32c
from lossdoctor.sources.epochs import attach_epochs
from lossdoctor.sources.names import canonicalize

# Keras writes one run folder per split; their tags get the folder as a prefix.
SPLIT_DIRS = ("train", "validation", "val", "valid", "eval")

_HEADER = 12  # u64 length + u32 length CRC
_FOOTER = 4  # u32 data CRC
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")

# TensorProto dtypes a scalar can have: DT_FLOAT, DT_DOUBLE, DT_BFLOAT16, DT_HALF.
_DT_FLOAT, _DT_DOUBLE, _DT_BFLOAT16, _DT_HALF = 1, 2, 14, 19
_SCALAR_DTYPES = {_DT_FLOAT: 4, _DT_DOUBLE: 8, _DT_BFLOAT16: 2, _DT_HALF: 2}
_SCALAR_PLUGINS = {"", "scalars"}
_HISTOGRAM_PLUGIN = "histograms"

# Fast-path limits: header bytes per group (tag + framing) and the step varint.
_FAST_HEADER_MAX = 256
_HASH_MUL = np.uint64(0x9E3779B97F4A7C15)
_CHUNK = 1 << 16  # records per vectorized batch
_NONE = np.zeros(0, dtype=np.int64)


@dataclass
class EventScalars:
    """The scalar series of one event file, in the order they were written."""

    path: str
    scalars: dict[str, Series]
    wall_times: dict[str, np.ndarray]
    warnings: list[str] = field(default_factory=list)
    file_version: str | None = None
    records: int = 0  # whole records read
    # Histograms by tag, in the order written: `histo` values (PyTorch, TF1) and TF2
    # histogram tensors (`tf.summary.histogram`, Keras' `histogram_freq`).
    histograms: dict[str, list[Histogram]] = field(default_factory=dict)


def looks_like_event_file(head: bytes) -> bool:
    """Whether `head` (the first 12 or more bytes of a file) starts a TFRecord stream.

    The masked CRC of the length field has to match: 1 chance in 2**32 by accident.
    """
    if len(head) < _HEADER:
        return False
    stored: int = _U32.unpack_from(head, 8)[0]
    return masked_crc32c(head[:8]) == stored


# ---- framing --------------------------------------------------------------------

def _unaligned(data: bytes, dtype: str, size: int) -> np.ndarray:
    """A view with one element starting at every byte offset (stride 1)."""
    count = len(data) - size + 1
    if count <= 0:
        return np.zeros(0, dtype=dtype)
    return np.ndarray((count,), dtype=dtype, buffer=data, offset=0, strides=(1,))


def _hop(data: bytes) -> tuple[np.ndarray, int]:
    """Record offsets by following the length fields (unchecked), and the offset
    where the bytes stop forming whole records.

    Hopping is sequential, so it runs in Python, but most logs repeat a short cycle
    of record sizes (the same tags every step). After each Python stretch the last
    sizes are checked for a period; if there is one, the predicted next offsets are
    checked all at once with numpy (a length field that matches the prediction *is*
    the hop) and the Python loop resumes at the first record that breaks the cycle.
    The offsets are exactly those a plain hop would give.
    """
    chunks: list[np.ndarray] = []
    offsets = array("q")
    append = offsets.append
    unpack = _U64.unpack_from
    frame = _HEADER + _FOOTER
    limit = len(data) - frame
    u64 = _unaligned(data, "<u8", 8)
    pos = 0
    window = 64
    guess = 256  # records per numpy check; doubles while the cycle holds
    while pos <= limit:
        count = 0
        while pos <= limit and count < window:
            append(pos)
            pos += unpack(data, pos)[0] + frame
            count += 1
        if pos > limit or count < window:
            break
        sizes = offsets[-window:].tolist()
        sizes = [b - a for a, b in zip(sizes, [*sizes[1:], pos], strict=True)]
        period = next((k for k in range(1, window // 2 + 1) if sizes[k:] == sizes[:-k]), 0)
        if not period:
            window = min(window * 2, 4096)  # no cycle: mostly Python, fewer checks
            continue
        cycle = np.array(sizes[-period:], dtype=np.int64)
        within = np.concatenate([[0], np.cumsum(cycle)[:-1]])
        reps = max(1, min(guess // period, (limit - pos) // int(cycle.sum()) + 1))
        starts = (pos + int(cycle.sum()) * np.arange(reps, dtype=np.int64)[:, None]
                  + within[None, :]).reshape(-1)
        expect = np.tile(cycle - frame, reps)
        inside = starts <= limit
        ok = inside.copy()
        ok[inside] = u64[starts[inside]] == expect[inside].astype(np.uint64)
        broken = np.flatnonzero(~ok)
        good = int(broken[0]) if broken.shape[0] else int(starts.shape[0])
        if good:
            if offsets:
                chunks.append(np.frombuffer(offsets, dtype=np.int64).copy())
                offsets = array("q")
                append = offsets.append
            chunks.append(starts[:good])
            pos = int(starts[good - 1] + np.tile(cycle, reps)[good - 1])
        guess = min(guess * 2, 1 << 18) if good == starts.shape[0] else 256
        window = 64
    if pos > len(data):  # the last hop overran the end: that record is not whole
        if offsets:
            pos = offsets.pop()
        else:  # it came from the vectorized stretch
            pos = int(chunks[-1][-1])
            chunks[-1] = chunks[-1][:-1]
    chunks.append(np.frombuffer(offsets, dtype=np.int64))
    return np.concatenate(chunks), pos


# ---- general decoder ------------------------------------------------------------

def _plugin_name(buf: bytes, start: int, end: int) -> str:
    # SummaryMetadata.plugin_data (1) -> PluginData.plugin_name (1)
    for num, wire, _, a, b in pw.iter_fields(buf, start, end):
        if num == 1 and wire == pw.LEN:
            for num2, wire2, _, a2, b2 in pw.iter_fields(buf, a, b):
                if num2 == 1 and wire2 == pw.LEN:
                    return buf[a2:b2].decode("utf-8", "replace")
    return ""


def _is_scalar_shape(buf: bytes, start: int, end: int) -> bool:
    # TensorShapeProto: dim (2) { size (1) }, unknown_rank (3)
    for num, wire, value, a, b in pw.iter_fields(buf, start, end):
        if num == 3 and wire == pw.VARINT and value:
            return False
        if num == 2 and wire == pw.LEN:
            size = 0  # a dim without a size field has size 0
            for num2, wire2, value2, _, _ in pw.iter_fields(buf, a, b):
                if num2 == 1 and wire2 == pw.VARINT:
                    size = pw.to_int64(value2)
            if size != 1:
                return False
    return True


def _half_to_float(bits: int, dtype: int) -> float:
    bits &= 0xFFFF
    if dtype == _DT_BFLOAT16:
        return pw.fixed32_float(_U32.pack(bits << 16), 0)
    return float(np.array([bits], dtype=np.uint16).view(np.float16)[0])


def _tensor_scalar(buf: bytes, start: int, end: int) -> float | None:
    """The value of a scalar float TensorProto, or None for anything else."""
    dtype = 0
    scalar_shape = True
    content: tuple[int, int] | None = None
    first: float | None = None
    half_bits: int | None = None
    for num, wire, value, a, b in pw.iter_fields(buf, start, end):
        if num == 1 and wire == pw.VARINT:
            dtype = value
        elif num == 2 and wire == pw.LEN:
            scalar_shape = _is_scalar_shape(buf, a, b)
        elif num == 4 and wire == pw.LEN:
            content = (a, b)
        elif num == 5:  # float_val, packed or not
            if (wire == pw.LEN and b - a >= 4) or wire == pw.I32:
                first = pw.fixed32_float(buf, a) if first is None else first
        elif num == 6:  # double_val
            if (wire == pw.LEN and b - a >= 8) or wire == pw.I64:
                first = pw.fixed64_double(buf, a) if first is None else first
        elif num == 13:  # half_val: float16/bfloat16 bits in int32 varints
            if wire == pw.LEN and b > a:
                half_bits = pw.read_varint(buf, a, b)[0] if half_bits is None else half_bits
            elif wire == pw.VARINT and half_bits is None:
                half_bits = value
    itemsize = _SCALAR_DTYPES.get(dtype)
    if itemsize is None or not scalar_shape:
        return None
    if content is not None and content[1] > content[0]:
        a, b = content
        if b - a != itemsize:
            return None
        if dtype == _DT_FLOAT:
            return pw.fixed32_float(buf, a)
        if dtype == _DT_DOUBLE:
            return pw.fixed64_double(buf, a)
        return _half_to_float(buf[a] | (buf[a + 1] << 8), dtype)
    if dtype in (_DT_HALF, _DT_BFLOAT16):
        return None if half_bits is None else _half_to_float(half_bits, dtype)
    return first


_MAX_BUCKETS = 1 << 20


def _packed_doubles(buf: bytes, a: int, b: int) -> np.ndarray:
    if (b - a) % 8:
        raise pw.ProtoError("packed doubles: length not a multiple of 8")
    return np.frombuffer(buf, dtype="<f8", count=(b - a) // 8, offset=a).astype(np.float64)


def _histogram(buf: bytes, start: int, end: int, step: int) -> Histogram | None:
    """A HistogramProto (min 1, max 2, num 3, sum 4, sum_squares 5, bucket_limit 6,
    bucket 7; doubles, the repeated ones packed or not); None when malformed or
    inconsistent (bucket and limit counts differ, a negative or non-finite count)."""
    nums = [0.0, 0.0, 0.0]
    limits: list[np.ndarray] = []
    counts: list[np.ndarray] = []
    try:
        for num, wire, _, a, b in pw.iter_fields(buf, start, end):
            if num in (1, 2, 3) and wire == pw.I64:
                nums[num - 1] = pw.fixed64_double(buf, a)
            elif num in (6, 7):
                out = limits if num == 6 else counts
                if wire == pw.LEN:
                    out.append(_packed_doubles(buf, a, b))
                elif wire == pw.I64:
                    out.append(_packed_doubles(buf, a, a + 8))
                else:
                    return None
    except pw.ProtoError:
        return None
    lim = np.concatenate(limits) if limits else np.zeros(0)
    cnt = np.concatenate(counts) if counts else np.zeros(0)
    if lim.shape != cnt.shape or lim.shape[0] > _MAX_BUCKETS:
        return None
    if not (np.isfinite(cnt).all() and (cnt >= 0).all()) or np.isnan(lim).any():
        return None
    if lim.shape[0] > 1 and not bool((np.diff(lim) >= 0).all()):
        return None
    return Histogram(step=step, bucket_limit=lim, bucket=cnt, min=nums[0], max=nums[1],
                     num=nums[2])


# Element types of a TF2 histogram tensor read from tensor_content.
_CONTENT_DTYPES = {_DT_FLOAT: "<f4", _DT_DOUBLE: "<f8", _DT_HALF: "<f2", _DT_BFLOAT16: "<u2"}
# Rows a short repeated field may be padded to: beyond that the bytes present bound
# the size, so a few bytes of input never claim megabytes.
_MAX_PADDED_ROWS = 4096


def _histogram_rows(buf: bytes, start: int, end: int) -> int | None:
    """k for a TensorShapeProto [k, 3]; None for any other shape."""
    sizes: list[int] = []
    for num, wire, value, a, b in pw.iter_fields(buf, start, end):
        if num == 3 and wire == pw.VARINT and value:
            return None  # unknown rank
        if num == 2 and wire == pw.LEN:
            size = 0  # a dim without a size field has size 0
            for num2, wire2, value2, _, _ in pw.iter_fields(buf, a, b):
                if num2 == 1 and wire2 == pw.VARINT:
                    size = pw.to_int64(value2)
            sizes.append(size)
    if len(sizes) != 2 or sizes[1] != 3 or not 0 <= sizes[0] <= _MAX_BUCKETS:
        return None
    return sizes[0]


def _halves(bits: np.ndarray, dtype: int) -> np.ndarray:
    """float16 or bfloat16 bit patterns (uint16) as float64."""
    bits = bits.astype(np.uint16)
    if dtype == _DT_BFLOAT16:
        return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32).astype(np.float64)
    return bits.view(np.float16).astype(np.float64)


class _NotATable(Exception):
    """A `histograms` tensor that is no [k, 3] float table: skipped like any other
    summary lossdoctor does not read, not counted as a malformed histogram."""


def _tensor_values(buf: bytes, start: int, end: int) -> tuple[int, np.ndarray] | None:
    """(k, the 3k values) of a float TensorProto of shape [k, 3]; None when the
    values do not fit the shape. Raises `_NotATable` for another shape or dtype.

    Values come from tensor_content, or else from the repeated field of the dtype
    (float_val, double_val, half_val) with TensorFlow's rules: none means zeros,
    fewer than the shape holds are padded with the last one."""
    dtype = 0
    rows: int | None = None
    content: tuple[int, int] | None = None
    repeated: dict[int, list[np.ndarray]] = {5: [], 6: [], 13: []}
    for num, wire, value, a, b in pw.iter_fields(buf, start, end):
        if num == 1 and wire == pw.VARINT:
            dtype = value
        elif num == 2 and wire == pw.LEN:
            rows = _histogram_rows(buf, a, b)
        elif num == 4 and wire == pw.LEN:
            content = (a, b)
        elif num in (5, 6):  # float_val, double_val: packed or one at a time
            size = 4 if num == 5 else 8
            if wire == pw.LEN or wire == (pw.I32 if num == 5 else pw.I64):
                if (b - a) % size:
                    return None
                repeated[num].append(np.frombuffer(buf, dtype="<f4" if num == 5 else "<f8",
                                                   count=(b - a) // size, offset=a))
            else:
                return None
        elif num == 13:  # half_val: bit patterns as int32 varints
            if wire not in (pw.LEN, pw.VARINT):
                return None
            bits = pw.packed_varints(buf, a, b) if wire == pw.LEN else [value]
            repeated[13].append(np.array(bits, dtype=np.uint64) & np.uint64(0xFFFF))
    kind = _CONTENT_DTYPES.get(dtype)
    if kind is None or rows is None:
        raise _NotATable
    size = 3 * rows
    if content is not None and content[1] > content[0]:
        a, b = content
        if b - a != size * np.dtype(kind).itemsize:
            return None
        raw = np.frombuffer(buf, dtype=kind, count=size, offset=a)
        values = _halves(raw, dtype) if dtype == _DT_BFLOAT16 else raw.astype(np.float64)
        return rows, values
    field_of = {_DT_FLOAT: 5, _DT_DOUBLE: 6}.get(dtype, 13)
    parts = repeated[field_of]
    got = np.concatenate(parts) if parts else np.zeros(0)
    if field_of == 13:
        got = _halves(got, dtype)
    got = got.astype(np.float64)
    if got.shape[0] > size:
        return None
    if got.shape[0] < size:
        if rows > _MAX_PADDED_ROWS:
            return None
        fill = got[-1] if got.shape[0] else 0.0
        got = np.concatenate([got, np.full(size - got.shape[0], fill)])
    return rows, got


def _tensor_histogram(buf: bytes, start: int, end: int, step: int) -> Histogram | None:
    """A TF2 histogram: a TensorProto of shape [k, 3], rows (left edge, right edge,
    count) in increasing order (TF writes k buckets of equal width over [min, max];
    all of them at that one value when every value is equal; zero rows, or k rows of
    zeros, when there are no values). As a `Histogram`: the right edges are the bucket
    limits, min the first left edge and max the last right edge, num the total count;
    a gap between two rows becomes a bucket of count 0. (TF's buckets are closed on
    the left, `Histogram`'s on the right; the counts stay as written.)

    None when malformed: a NaN or infinite edge or count (TF's bucketing of data that
    holds NaN or inf), a negative count, edges out of order, values that do not fit
    the shape. Raises `_NotATable` for a tensor of another shape or dtype."""
    try:
        got = _tensor_values(buf, start, end)
    except pw.ProtoError:
        return None
    if got is None:
        return None
    rows, values = got
    if rows == 0:
        empty = np.zeros(0)
        return Histogram(step=step, bucket_limit=empty, bucket=empty, min=0.0, max=0.0,
                         num=0.0)
    table = values.reshape(rows, 3)
    left, right, counts = table[:, 0], table[:, 1], table[:, 2]
    if not np.isfinite(table).all() or (counts < 0).any() or (right < left).any():
        return None
    if not (bool((np.diff(left) >= 0).all()) and bool((np.diff(right) >= 0).all())):
        return None
    gaps = np.flatnonzero(left[1:] > right[:-1])
    if gaps.shape[0]:  # values between two rows: none there
        right = np.insert(right, gaps + 1, left[gaps + 1])
        counts = np.insert(counts, gaps + 1, 0.0)
    return Histogram(step=step, bucket_limit=np.ascontiguousarray(right),
                     bucket=np.ascontiguousarray(counts), min=float(left[0]),
                     max=float(table[-1, 1]), num=float(counts.sum()))


class _Decoder:
    """The general path: one protobuf walk per record. Keeps the plugin each tag
    announced (TF writes the metadata with a tag's first value, maybe only then)."""

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.plugin_of: dict[str, str] = {}
        self.file_version: str | None = None
        self.histograms: dict[str, list[Histogram]] = {}
        self.bad_histograms = 0
        # (tag, TF2 tensor or `histo`, span) of the current record's histograms
        self._histo_spans: list[tuple[str, bool, int, int]] = []

    def event(self, start: int, end: int) -> tuple[float, int, list[tuple[str, float]]]:
        buf = self.buf
        wall = 0.0
        step = 0
        summaries: list[tuple[int, int]] = []
        self._histo_spans = []
        for num, wire, value, a, b in pw.iter_fields(buf, start, end):
            if num == 1 and wire == pw.I64:
                wall = pw.fixed64_double(buf, a)
            elif num == 2 and wire == pw.VARINT:
                step = pw.to_int64(value)
            elif num == 3 and wire == pw.LEN:
                self.file_version = buf[a:b].decode("utf-8", "replace")
            elif num == 5 and wire == pw.LEN:
                summaries.append((a, b))
        out: list[tuple[str, float]] = []
        for a, b in summaries:
            for num, wire, _, va, vb in pw.iter_fields(buf, a, b):
                if num == 1 and wire == pw.LEN:
                    item = self.value(va, vb)
                    if item is not None:
                        out.append(item)
        for name, is_tensor, a, b in self._histo_spans:  # parsed once the record is whole
            try:
                histo = (_tensor_histogram if is_tensor else _histogram)(buf, a, b, step)
            except _NotATable:
                continue
            if histo is None:
                self.bad_histograms += 1
            else:
                self.histograms.setdefault(name, []).append(histo)
        return wall, step, out

    def value(self, start: int, end: int) -> tuple[str, float] | None:
        buf = self.buf
        tag = b""
        kind = ""  # the oneof `value`: the last one set wins
        simple = 0.0
        tensor = (0, 0)
        histo = (0, 0)
        plugin: str | None = None
        for num, wire, _, a, b in pw.iter_fields(buf, start, end):
            if num == 1 and wire == pw.LEN:
                tag = buf[a:b]
            elif num == 2 and wire == pw.I32:
                kind, simple = "simple", pw.fixed32_float(buf, a)
            elif num == 8 and wire == pw.LEN:
                kind, tensor = "tensor", (a, b)
            elif num == 5 and wire == pw.LEN:
                kind, histo = "histo", (a, b)
            elif num in (3, 4, 5, 6):  # old histogram, image, malformed histogram, audio
                kind = "other"
            elif num == 9 and wire == pw.LEN:
                plugin = _plugin_name(buf, a, b)
        name = tag.decode("utf-8", "replace")
        if plugin is not None:
            self.plugin_of[name] = plugin
        else:
            plugin = self.plugin_of.get(name, "")
        if kind == "simple":
            return name, simple
        if kind == "histo":
            self._histo_spans.append((name, False, *histo))
            return None
        if kind == "tensor" and plugin == _HISTOGRAM_PLUGIN:
            self._histo_spans.append((name, True, *tensor))
            return None
        if kind == "tensor" and plugin in _SCALAR_PLUGINS:
            scalar = _tensor_scalar(buf, *tensor)
            if scalar is not None:
                return name, scalar
        return None


@dataclass(frozen=True)
class _Layout:
    """A record layout the fast path decodes: the float32 value sits between two
    constant byte strings at the end of the record."""

    before: bytes  # the bytes right before the value
    after: bytes  # the bytes after it, up to the end of the record


# PyTorch / tensorboardX / TF1: ... value{tag, simple_value (key 0x15)}
_SIMPLE = _Layout(b"\x15", b"")
# TF2 tf.summary.scalar and Keras: ... value{tag, tensor{dtype: DT_FLOAT, shape: {},
# tensor_content: 4 bytes}, metadata{plugin_data{plugin_name: "scalars"}}}
_SCALARS_META = b"\x4a\x0b\x0a\x09\x0a\x07scalars"
_TF2 = _Layout(b"\x42\x0a\x08\x01\x12\x00\x22\x04", _SCALARS_META)
# The same without the empty shape (protobuf's Python serializer leaves it out), and
# PyTorch's `new_style=True`: dtype and a packed float_val.
_TF2_NO_SHAPE = _Layout(b"\x42\x08\x08\x01\x22\x04", _SCALARS_META)
_TORCH_NEW_STYLE = _Layout(b"\x42\x08\x08\x01\x2a\x04", _SCALARS_META)
_LAYOUTS = (_SIMPLE, _TF2, _TF2_NO_SHAPE, _TORCH_NEW_STYLE)


def _fast_template(buf: bytes, start: int, end: int, value_at: int) -> str | None:
    """The tag when the record is exactly Event{wall_time, [step], summary{value}}
    with one Value{tag, [node_name], [scalars metadata], and either simple_value or
    a scalar DT_FLOAT tensor_content} whose 4 value bytes start at `value_at`; None
    for anything else (then its group goes the general way).

    Every record of a group shares all bytes but the wall time, the step varint and
    those 4 value bytes, so what holds for one member holds for all.
    """
    try:
        fields = list(pw.iter_fields(buf, start, end))
        nums = [f[0] for f in fields]
        if nums not in ([1, 2, 5], [1, 5]) or fields[0][1] != pw.I64:
            return None
        if len(nums) == 3 and fields[1][1] != pw.VARINT:
            return None
        summary = fields[-1]
        if summary[1] != pw.LEN or summary[4] != end:
            return None
        values = list(pw.iter_fields(buf, summary[3], end))
        if len(values) != 1 or values[0][:2] != (1, pw.LEN):
            return None
        inner = list(pw.iter_fields(buf, values[0][3], values[0][4]))
        tags = [f for f in inner if f[0] == 1]
        if len(tags) != 1 or tags[0][1] != pw.LEN:
            return None
        found = False
        for num, wire, _, a, b in inner:
            if num == 2 and wire == pw.I32 and a == value_at:
                found = True
            elif num == 8 and wire == pw.LEN:
                found = _tf2_scalar_at(buf, a, b, value_at)
            elif num == 9 and wire == pw.LEN:
                if _plugin_name(buf, a, b) not in _SCALAR_PLUGINS:
                    return None
            elif num not in (1, 7):
                return None
        if not found or sum(1 for f in inner if f[0] in (2, 8)) != 1:
            return None
        return buf[tags[0][3]:tags[0][4]].decode("utf-8", "replace")
    except pw.ProtoError:
        return None


def _tf2_scalar_at(buf: bytes, start: int, end: int, value_at: int) -> bool:
    """A TensorProto that is a DT_FLOAT scalar whose tensor_content, or packed
    float_val, is the 4 bytes at value_at."""
    fields = list(pw.iter_fields(buf, start, end))
    nums = sorted(f[0] for f in fields)
    if nums not in ([1, 2, 4], [1, 4], [1, 2, 5], [1, 5]):
        return False
    for num, wire, value, a, b in fields:
        if num == 1 and (wire != pw.VARINT or value != _DT_FLOAT):
            return False
        if num == 2 and (wire != pw.LEN or not _is_scalar_shape(buf, a, b)):
            return False
        if num in (4, 5) and (wire != pw.LEN or (a, b) != (value_at, value_at + 4)):
            return False
    return True


def _matches(u8: np.ndarray, u64: np.ndarray, pos: np.ndarray, const: bytes) -> np.ndarray:
    """Whether the bytes at each of `pos` equal `const` (8 bytes per comparison)."""
    ok = np.ones(pos.shape[0], dtype=bool)
    if len(const) < 8:
        for k, byte in enumerate(const):
            ok &= u8[pos + k] == byte
        return ok
    # Whole words, the last one ending exactly at the end of `const`.
    for k in [*range(0, len(const) - 7, 8), len(const) - 8]:
        ok &= u64[pos + k] == np.uint64(int.from_bytes(const[k:k + 8], "little"))
    return ok


class _Tags:
    """Tag ids in order of discovery, and the fast-path verdict for each header."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.names: list[str] = []
        # (layout, header bytes) -> tag id, or -1 when that group is not fast
        self.headers: dict[tuple[_Layout, bytes], int] = {}

    def id(self, name: str) -> int:
        tid = self.ids.get(name)
        if tid is None:
            tid = self.ids[name] = len(self.names)
            self.names.append(name)
        return tid


def _fast_decode(
    data: bytes, ds: np.ndarray, de: np.ndarray, tags_seen: _Tags, layout: _Layout,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Decode the records of one common layout with numpy.

    Returns (record index, tag id, step, value, wall time) of the records it took.
    """
    u8 = np.frombuffer(data, dtype=np.uint8)
    u64 = _unaligned(data, "<u8", 8)
    nothing = (_NONE, _NONE, _NONE, np.zeros(0), np.zeros(0))
    if u64.shape[0] == 0 or ds.shape[0] == 0:
        return nothing
    last64 = u64.shape[0] - 1
    tail = len(layout.before) + 4 + len(layout.after)  # constant bytes + the value
    # 0x09 (wall_time) first and the layout's bytes at the end.
    ok = (de - ds >= 17 + tail) & (u8[ds] == 0x09)  # 9: wall time, 8: shortest header
    sel = np.flatnonzero(ok)
    sel = sel[_matches(u8, u64, de[sel] - tail, layout.before)]
    if layout.after:
        sel = sel[_matches(u8, u64, de[sel] - len(layout.after), layout.after)]
    if sel.shape[0] == 0:
        return nothing
    if sel.shape[0] != ds.shape[0]:
        ds, de = ds[sel], de[sel]
    # One unaligned 64-bit load after the wall time: 0x10 (the step key), then the
    # step varint, up to 7 bytes. Keep the bytes up to the first without a
    # continuation bit, then squeeze out those bits (7-bit groups -> 14 -> 28 -> 56).
    p = ds + 9
    word = u64[np.minimum(p, last64)]
    has_step = (word & np.uint64(0xFF)) == np.uint64(0x10)
    word >>= np.uint64(8)
    stops = ~word & np.uint64(0x0080808080808080)
    lowest = stops & (~stops + np.uint64(1))
    x = word & ((lowest - np.uint64(1)) | lowest) & np.uint64(0x7F7F7F7F7F7F7F7F)
    x = (x & np.uint64(0x007F007F007F007F)) | ((x & np.uint64(0x7F007F007F007F00)) >> np.uint64(1))
    x = (x & np.uint64(0x00003FFF00003FFF)) | ((x & np.uint64(0x3FFF00003FFF0000)) >> np.uint64(2))
    x = (x & np.uint64(0x000000000FFFFFFF)) | ((x & np.uint64(0x0FFFFFFF00000000)) >> np.uint64(4))
    nbytes = (np.frexp(lowest.astype(np.float64))[1] // 8).astype(np.int64)  # bit 8k+7 -> k+1
    s = np.where(has_step, p + 1 + nbytes, p)
    hl = de - tail - s  # header: summary key .. tag bytes (and any metadata)
    ok = (~has_step | (stops != 0)) & (hl >= 8) & (hl <= _FAST_HEADER_MAX)
    if not ok.all():
        keep = np.flatnonzero(ok)
        sel, ds, de, s, hl, x, has_step = (sel[keep], ds[keep], de[keep], s[keep], hl[keep],
                                           x[keep], has_step[keep])
    if sel.shape[0] == 0:
        return nothing
    step = np.where(has_step, x.view(np.int64), 0)
    # Group by header bytes: hash 8-byte words (the last one ends at the header's
    # end, so no masking), then compare every row with its group's representative
    # so a hash collision can never mislabel a record.
    end_word = de - tail - 8
    nwords = int((hl.max() + 7) // 8)
    words = np.empty((nwords, sel.shape[0]), dtype=np.uint64)
    h = hl.astype(np.uint64)
    for j in range(nwords):
        w = u64[np.minimum(s + 8 * j, end_word)]
        words[j] = w
        h = (h ^ w) * _HASH_MUL
    h ^= h >> np.uint64(29)
    ordered = np.sort(h)
    uniq = ordered[np.concatenate([[True], ordered[1:] != ordered[:-1]])]
    inv = np.searchsorted(uniq, h)
    rep = np.empty(uniq.shape[0], dtype=np.int64)
    rep[inv] = np.arange(sel.shape[0])  # any member will do as the representative
    same = hl == hl[rep][inv]
    for j in range(nwords):
        same &= words[j] == words[j][rep][inv]
    group_tag = np.full(uniq.shape[0], -1, dtype=np.int64)
    value_back = 4 + len(layout.after)  # the value starts this far before the end
    for g, member in enumerate(rep.tolist()):
        a, b = int(ds[member]), int(de[member])
        key = (layout, data[int(s[member]):b - tail])
        tid = tags_seen.headers.get(key)
        if tid is None:
            name = _fast_template(data, a, b, b - value_back)
            tid = -1 if name is None else tags_seen.id(name)
            tags_seen.headers[key] = tid
        group_tag[g] = tid
    tags = group_tag[inv]
    take = np.flatnonzero(same & (tags >= 0))
    if take.shape[0] != sel.shape[0]:
        sel, ds, de, tags, step = sel[take], ds[take], de[take], tags[take], step[take]
    with np.errstate(invalid="ignore"):  # a signaling NaN quietly stays a NaN
        values = _unaligned(data, "<f4", 4)[de - value_back].astype(np.float64)
    walls = _unaligned(data, "<f8", 8)[ds + 1].astype(np.float64)
    return sel, tags, step.astype(np.int64), values, walls


# ---- reading --------------------------------------------------------------------

def _stop_at_corruption(path: str, at: int, good: int, verify: bool,
                        warnings: list[str]) -> None:
    if good == 0:
        raise InputError(
            path, f"not a TensorBoard event file, or corrupt (bad record header at byte {at})"
        )
    if verify:
        raise InputError(path, f"corrupt record header (length CRC mismatch) at byte offset {at}")
    warnings.append(
        f"{path}: corrupt record header at byte {at} (length CRC mismatch); "
        f"read the {good} records before it and stopped there"
    )


def read_event_bytes(data: bytes, *, path: str = "<bytes>", verify: bool = False) -> EventScalars:
    """Scalars from the bytes of an event file. See `read_event_file`."""
    data = bytes(data)
    if len(data) == 0:
        raise InputError(path, "empty file")
    warnings: list[str] = []
    offsets, tail = _hop(data)
    lengths = np.zeros(0, dtype=np.int64)
    bad = lengths
    if offsets.shape[0]:
        lengths = _unaligned(data, "<u8", 8)[offsets]
        stored = _unaligned(data, "<u4", 4)[offsets + 8]
        as_bytes = lengths.astype("<u8").view(np.uint8).reshape(-1, 8)
        bad = np.flatnonzero(stored != mask_array(crc32c_rows(as_bytes)))
    if bad.shape[0]:
        k = int(bad[0])
        at = int(offsets[k])
        offsets, lengths = offsets[:k], lengths[:k]
        _stop_at_corruption(path, at, k, verify, warnings)
    elif tail < len(data):
        whole = int(offsets.shape[0])
        if len(data) - tail >= _HEADER and not looks_like_event_file(data[tail:tail + _HEADER]):
            _stop_at_corruption(path, tail, whole, verify, warnings)
        elif whole == 0 and len(data) < _HEADER:
            raise InputError(
                path, f"not a TensorBoard event file ({len(data)} bytes, shorter than a record)"
            )
        else:
            warnings.append(
                f"{path}: the last record is truncated at byte {tail} of {len(data)} (the run "
                f"may still be writing, or was killed); read the {whole} whole records before it"
            )
    ds = offsets + _HEADER
    de = ds + lengths.astype(np.int64)
    if verify and offsets.shape[0]:
        got = mask_array(crc32c_many(np.frombuffer(data, dtype=np.uint8), ds, de - ds))
        mismatch = np.flatnonzero(got != _unaligned(data, "<u4", 4)[de])
        if mismatch.shape[0]:
            at = int(offsets[int(mismatch[0])])
            raise InputError(path, f"data CRC mismatch in the record at byte offset {at}")
    return _decode(path, data, ds, de, verify, warnings)


def _decode(path: str, data: bytes, ds: np.ndarray, de: np.ndarray, verify: bool,
            warnings: list[str]) -> EventScalars:
    seen = _Tags()
    tag_names = seen.names
    is_fast = np.zeros(ds.shape[0], dtype=bool)
    chunks = []
    for layout in _LAYOUTS:
        left = np.flatnonzero(~is_fast)
        # Chunks keep numpy's temporaries small enough to stay in cache.
        for lo in range(0, left.shape[0], _CHUNK):
            part = left[lo:lo + _CHUNK]
            got = _fast_decode(data, ds[part], de[part], seen, layout)
            if got[0].shape[0]:
                chunks.append((part[got[0]], *got[1:]))
                is_fast[part[got[0]]] = True
    chunks = chunks or [(_NONE, _NONE, _NONE, np.zeros(0), np.zeros(0))]
    if len(chunks) == 1:
        rec, tags, steps, values, walls = chunks[0]
    else:
        rec, tags, steps, values, walls = (
            np.concatenate([c[k] for c in chunks]) for k in range(5)
        )
    slow = np.flatnonzero(~is_fast)
    decoder = _Decoder(data)
    s_rec: list[int] = []
    s_tag: list[int] = []
    s_step: list[int] = []
    s_val: list[float] = []
    s_wall: list[float] = []
    skipped = 0
    first_skip = ""
    for r, a, b in zip(slow.tolist(), ds[slow].tolist(), de[slow].tolist(), strict=True):
        try:
            wall, step, items = decoder.event(a, b)
        except pw.ProtoError as exc:
            if not skipped:
                crc_ok = verify or masked_crc32c(data[a:b]) == _U32.unpack_from(data, b)[0]
                why = str(exc) if crc_ok else "data CRC mismatch"
                first_skip = f"byte {a - _HEADER}: {why}"
            skipped += 1
            continue
        for name, value in items:
            tid = seen.id(name)
            s_rec.append(r)
            s_tag.append(tid)
            s_step.append(step)
            s_val.append(value)
            s_wall.append(wall)
    if skipped:
        warnings.append(
            f"{path}: skipped {skipped} record(s) that could not be decoded "
            f"(first at {first_skip})"
        )
    if decoder.bad_histograms:
        warnings.append(f"{path}: skipped {decoder.bad_histograms} malformed histogram(s)")
    if s_rec or (len(chunks) > 1 and not bool((np.diff(rec) > 0).all())):
        # Back to the order written.
        rec = np.concatenate([rec, np.array(s_rec, dtype=np.int64)])
        tags = np.concatenate([tags, np.array(s_tag, dtype=np.int64)])
        steps = np.concatenate([steps, np.array(s_step, dtype=np.int64)])
        values = np.concatenate([values, np.array(s_val, dtype=np.float64)])
        walls = np.concatenate([walls, np.array(s_wall, dtype=np.float64)])
        order = np.argsort(rec, kind="stable")
        tags, steps, values, walls = tags[order], steps[order], values[order], walls[order]
    scalars: dict[str, Series] = {}
    wall_times: dict[str, np.ndarray] = {}
    if tags.shape[0]:
        # Stable grouping by tag; int16 keys take numpy's radix sort.
        key = tags.astype(np.int16) if len(tag_names) < 32768 else tags
        by_tag = np.argsort(key, kind="stable")
        cuts = np.flatnonzero(np.diff(key[by_tag])) + 1
        groups = np.split(by_tag, cuts)
        groups.sort(key=lambda g: int(g[0]))  # tags in the order of their first value
        for g in groups:
            name = tag_names[int(tags[g[0]])]
            scalars[name] = Series(steps[g], values[g])
            wall_times[name] = walls[g]
    return EventScalars(
        path=path,
        scalars=scalars,
        wall_times=wall_times,
        warnings=warnings,
        file_version=decoder.file_version,
        records=int(ds.shape[0]),
        histograms=decoder.histograms,
    )


def _read_bytes(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read()
    except OSError as exc:
        raise InputError(str(path), exc.strerror or str(exc)) from exc


def read_event_file(path: str | Path, *, verify: bool = False) -> EventScalars:
    """The scalar series of one event file, whatever its name.

    Values come from `simple_value` (PyTorch, tensorboardX, TF1) and from scalar
    float tensors (TF2 `tf.summary.scalar`, the Keras TensorBoard callback);
    histograms go to `histograms`, both `histo` ones (PyTorch's `add_histogram`,
    TF1) and TF2 tensor ones (`tf.summary.histogram`, Keras' `histogram_freq`); a
    malformed one is skipped with a warning. Other summaries (images, text, the
    Keras model config) are skipped.
    Steps keep the order written, duplicates included (a restarted run).

    A truncated last record (a run still writing, or killed) or a corrupt record
    header after some good records ends the read with a warning. `verify` also
    checks every record's data CRC and turns any corruption into an InputError
    naming the byte offset.
    """
    p = Path(path)
    return read_event_bytes(_read_bytes(p), path=str(p), verify=verify)


def _is_event_file(path: Path) -> bool:
    if not path.is_file():
        return False
    if "tfevents" in path.name:
        return True
    try:
        with path.open("rb") as f:
            return looks_like_event_file(f.read(_HEADER))
    except OSError:
        return False


def _event_files(directory: Path) -> list[Path]:
    try:
        entries = sorted(directory.iterdir(), key=lambda p: p.name)
    except OSError:
        return []
    return [p for p in entries if _is_event_file(p)]


# Bytes of each event file read to rule a folder out as an `add_scalars` folder before
# reading it whole: a run with several tags shows a second one long before this.
_PEEK = 1 << 16


def _tags(path: Path, limit: int | None = None) -> set[str] | None:
    """The scalar tags in an event file (in its first `limit` bytes); None when it
    cannot be read."""
    try:
        with path.open("rb") as f:
            data = f.read() if limit is None else f.read(limit)
        return set(read_event_bytes(data, path=str(path)).scalars)
    except (OSError, InputError):
        return None


def _scalars_child(sub: Path) -> str | None:
    """The key of a folder that `SummaryWriter.add_scalars(main_tag, {key: value})`
    (PyTorch, tensorboardX) wrote: each key goes to its own folder beside the writer's
    file, `<main_tag, "/" as "_">_<key>`, holding the one tag `main_tag`. None for any
    other folder (a peek at each file's start rules most out)."""
    files = _event_files(sub) if "_" in sub.name else []
    if not files:
        return None
    for limit in (_PEEK, None):
        tags: set[str] = set()
        for f in files:
            found = _tags(f, limit)
            if found is None:
                return None
            tags |= found
        if len(tags) > 1:
            return None
    if len(tags) != 1:
        return None
    prefix = tags.pop().replace("/", "_") + "_"
    key = sub.name[len(prefix):]
    return key if sub.name.startswith(prefix) and key else None


def _run_files(directory: Path) -> list[tuple[str, str, Path]]:
    """(tag prefix, tag suffix, file) for the run folder, its Keras split subfolders
    (`train/epoch_loss`) and its `add_scalars` subfolders (`loss_val/` holding `loss`:
    `loss/val`), each folder's files sorted by name (the name embeds the creation
    time)."""
    found = [("", "", p) for p in _event_files(directory)]
    for sub in run_subfolders(directory):
        if sub.name in SPLIT_DIRS:
            found.extend((sub.name + "/", "", p) for p in _event_files(sub))
        else:
            found.extend(("", "/" + str(_scalars_child(sub)), p) for p in _event_files(sub))
    return found


def run_subfolders(directory: Path) -> list[Path]:
    """The subfolders of a run folder that belong to its run: Keras' split folders
    (`SPLIT_DIRS`) and the folders `add_scalars` writes (see `_scalars_child`)."""
    try:
        subs = sorted((p for p in directory.iterdir() if p.is_dir()), key=lambda p: p.name)
    except OSError:
        return []
    return [sub for sub in subs
            if (sub.name in SPLIT_DIRS and _event_files(sub)) or _scalars_child(sub)]


def is_tensorboard_run_dir(path: str | Path) -> bool:
    """Whether `path` is a folder holding event files, directly or in the subfolders
    of its run (`run_subfolders`)."""
    p = Path(path)
    return p.is_dir() and bool(_run_files(p))


def read_tensorboard_run(path: str | Path, *, verify: bool = False,
                         train_loss: str | None = None, val_loss: str | None = None) -> Run:
    """A Run from a TensorBoard run folder (or one event file).

    Every event file of the folder is read, and those of its split subfolders
    (`SPLIT_DIRS`: `train/`, `validation/`, ...) with the subfolder name as a tag
    prefix (`validation/epoch_loss`), and those of `add_scalars` subfolders with the
    key as a suffix (`loss/val`), so the names map onto train and val roles.
    Series with the same tag in several files are joined in file-name order.
    """
    p = Path(path)
    if p.is_file():
        parent = p.parent
        if parent.name in SPLIT_DIRS:
            files, name = [(parent.name + "/", "", p)], parent.parent.name or parent.name
        else:
            files, name = [("", "", p)], parent.name or str(parent)
    elif p.is_dir():
        files, name = _run_files(p), p.resolve().name or str(p)
        if not files:
            raise InputError(str(p), "no TensorBoard event files in this folder")
    else:
        raise InputError(str(p), "no such file or folder")
    parts: dict[str, list[Series]] = {}
    histograms: dict[str, list[Histogram]] = {}
    warnings: list[str] = []
    errors: list[InputError] = []
    for prefix, suffix, f in files:
        try:
            events = read_event_file(f, verify=verify)
        except InputError as exc:
            # One unreadable file should not hide the others, unless asked to verify.
            if verify:
                raise
            errors.append(exc)
            warnings.append(str(exc))
            continue
        warnings.extend(events.warnings)
        for tag, part in events.scalars.items():
            parts.setdefault(prefix + tag + suffix, []).append(part)
        for tag, hs in events.histograms.items():
            histograms.setdefault(prefix + tag + suffix, []).extend(hs)
    if not parts:
        if len(errors) == 1 and len(files) == 1:
            raise errors[0]
        raise InputError(str(p), "no scalar series in the event files")
    raw = {
        tag: chunks[0] if len(chunks) == 1 else Series(
            np.concatenate([c.steps for c in chunks]),
            np.concatenate([c.values for c in chunks]),
        )
        for tag, chunks in parts.items()
    }
    try:
        series = canonicalize(attach_epochs(raw), train_loss=train_loss, val_loss=val_loss)
    except KeyError as exc:
        raise InputError(str(p), str(exc.args[0])) from exc
    return Run(
        name=name,
        source=str(p),
        format="tensorboard",
        series=series,
        meta={"event_files": [str(f) for _, _, f in files]},
        warnings=warnings,
        histograms=histograms,
    )


__all__ = [
    "SPLIT_DIRS",
    "EventScalars",
    "is_tensorboard_run_dir",
    "looks_like_event_file",
    "read_event_bytes",
    "read_event_file",
    "read_tensorboard_run",
    "run_subfolders",
]
