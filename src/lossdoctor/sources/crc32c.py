"""CRC-32C (Castagnoli) and the TFRecord CRC mask, in pure Python + numpy.

TFRecord framing (TensorBoard event files) checksums every length field and every
record with a *masked* CRC-32C. `zlib.crc32` is a different polynomial.

Three ways to compute it, fastest first:

* an accelerator package (`google_crc32c` or `crc32c`) when one is importable;
* `crc32c_many`: many spans of one buffer at once, vectorized with numpy. The
  CRC is affine over GF(2): crc(data) = raw0(data) ^ Z(len(data)), where raw0 runs
  the register from 0 (so leading zero bytes do not change it) and Z depends only
  on the length. Spans are therefore right-aligned in zero-padded rows and all rows
  advance together, four bytes per numpy step. Long spans are cut into chunks that
  are combined with a precomputed "append n zero bytes" operator;
* a table loop in pure Python for short single buffers.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import lru_cache

import numpy as np

_POLY = 0x82F63B78  # Castagnoli polynomial, bit-reflected
_MASK_DELTA = 0xA282EAD8  # from TFRecord / leveldb
_U32 = 0xFFFFFFFF


def _byte_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        table.append(c)
    return table


_T0 = _byte_table()

# Slicing-by-4 tables: _TK[k][b] is the register after byte b followed by k zero bytes.
_TK = [_T0]
for _ in range(3):
    _prev = _TK[-1]
    _TK.append([(_prev[i] >> 8) ^ _T0[_prev[i] & 0xFF] for i in range(256)])

# Two 16-bit tables fold the four slicing tables pairwise: one numpy step takes four
# bytes with two table lookups.
_b = np.arange(65536, dtype=np.uint32)
_TLO = (np.array(_TK[3], dtype=np.uint32)[_b & 0xFF]
        ^ np.array(_TK[2], dtype=np.uint32)[_b >> 8])
_THI = (np.array(_TK[1], dtype=np.uint32)[_b & 0xFF]
        ^ np.array(_TK[0], dtype=np.uint32)[_b >> 8])
del _b, _prev

_LITTLE = sys.byteorder == "little"

# Spans up to this length are bucketed into padded rows; longer ones are chunked.
_ROW_MAX = 4096
# Upper bound on the elements of one temporary (rows x width) matrix.
_CHUNK_ELEMS = 1 << 21


def _load_accelerator() -> Callable[[bytes], int] | None:
    try:
        import google_crc32c  # type: ignore[import-not-found, unused-ignore]

        value: Callable[[bytes], int] = google_crc32c.value
        return value
    except Exception:
        pass
    try:
        import crc32c as _crc32c_pkg  # type: ignore[import-not-found, unused-ignore]

        func: Callable[[bytes], int] = _crc32c_pkg.crc32c
        return func
    except Exception:
        return None


_ACCEL = _load_accelerator()


def crc32c_pure(data: bytes | bytearray | memoryview) -> int:
    """CRC-32C of `data` by a plain table loop (slow; the reference)."""
    crc = _U32
    t = _T0
    for byte in bytes(data):
        crc = t[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ _U32


def crc32c(data: bytes | bytearray | memoryview) -> int:
    """CRC-32C of `data` (accelerated when a crc32c package is installed)."""
    if _ACCEL is not None:
        return int(_ACCEL(bytes(data))) & _U32
    if len(data) <= 256:
        return crc32c_pure(data)
    arr = np.frombuffer(data, dtype=np.uint8)
    out = crc32c_many(arr, np.zeros(1, np.int64), np.array([len(arr)], np.int64))
    return int(out[0])


def mask(crc: int) -> int:
    """The TFRecord mask: rotate right by 15 bits and add a constant."""
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & _U32


def unmask(masked: int) -> int:
    rot = (masked - _MASK_DELTA) & _U32
    return ((rot >> 17) | (rot << 15)) & _U32


def masked_crc32c(data: bytes | bytearray | memoryview) -> int:
    return mask(crc32c(data))


def mask_array(crc: np.ndarray) -> np.ndarray:
    """`mask` applied to a uint32 array."""
    c = crc.astype(np.uint32)
    return ((c >> np.uint32(15)) | (c << np.uint32(17))) + np.uint32(_MASK_DELTA)


# ---- GF(2) operators: "append n zero bytes" to a raw register --------------------

_Op = tuple[int, ...]  # images of the 32 basis vectors


def _apply(op: _Op, v: int) -> int:
    r = 0
    i = 0
    while v:
        if v & 1:
            r ^= op[i]
        v >>= 1
        i += 1
    return r


def _compose(a: _Op, b: _Op) -> _Op:
    """a after b."""
    return tuple(_apply(a, b[i]) for i in range(32))


@lru_cache(maxsize=64)
def _zeros_pow2(k: int) -> _Op:
    """Operator for 2**k zero bytes."""
    if k == 0:
        return tuple(_T0[(1 << i) & 0xFF] ^ ((1 << i) >> 8) for i in range(32))
    half = _zeros_pow2(k - 1)
    return _compose(half, half)


def _shift_zeros(v: int, n: int) -> int:
    """The raw register `v` after n zero bytes."""
    k = 0
    while n:
        if n & 1:
            v = _apply(_zeros_pow2(k), v)
        n >>= 1
        k += 1
    return v


@lru_cache(maxsize=4096)
def _z(n: int) -> int:
    """What the initial register ~0 contributes after n bytes, final xor included."""
    return _shift_zeros(_U32, n) ^ _U32


@lru_cache(maxsize=16)
def _shift_tables(n: int) -> tuple[list[int], list[int], list[int], list[int]]:
    """Byte tables for "append n zero bytes": four lookups per combine step."""
    op: _Op = tuple(_shift_zeros(1 << i, n) for i in range(32))
    tables = []
    for p in range(4):
        t = [0] * 256
        for b in range(1, 256):
            low = b & -b
            t[b] = t[b ^ low] ^ op[8 * p + low.bit_length() - 1]
        tables.append(t)
    return tables[0], tables[1], tables[2], tables[3]


# ---- vectorized raw CRC of rows -------------------------------------------------

def _raw0_rows(mat: np.ndarray) -> np.ndarray:
    """Raw CRC (register from 0, no final xor) of each row of a C-contiguous uint8
    matrix whose width is a multiple of 4."""
    m, width = mat.shape
    crc = np.zeros(m, dtype=np.uint32)
    if width == 0 or m == 0:
        return crc
    words = mat.view("<u4")
    for k in range(width // 4):
        x = crc ^ words[:, k]
        if _LITTLE:
            halves = x.view(np.uint16).reshape(m, 2)
            crc = _TLO[halves[:, 0]] ^ _THI[halves[:, 1]]
        else:  # pragma: no cover - big-endian hosts
            crc = _TLO[x & np.uint32(0xFFFF)] ^ _THI[x >> np.uint32(16)]
    return crc


def crc32c_rows(mat: np.ndarray) -> np.ndarray:
    """CRC-32C of each row of a uint8 matrix whose width is a multiple of 4."""
    mat = np.ascontiguousarray(mat, dtype=np.uint8)
    if mat.ndim != 2 or mat.shape[1] % 4:
        raise ValueError(f"need a 2-D matrix with a width divisible by 4, got {mat.shape}")
    return _raw0_rows(mat) ^ np.uint32(_z(int(mat.shape[1])))


def _raw0_long(span: np.ndarray) -> int:
    """Raw CRC of one long span: equal chunks in parallel, then combined."""
    n = int(span.shape[0])
    chunk = max(64, int(np.sqrt(n)) // 8 * 8)
    rows = -(-n // chunk)
    padded = np.zeros(rows * chunk, dtype=np.uint8)
    padded[rows * chunk - n:] = span  # leading zeros do not move a zero register
    parts = _raw0_rows(padded.reshape(rows, chunk)).tolist()
    t0, t1, t2, t3 = _shift_tables(chunk)
    state = 0
    for part in parts:
        state = (t0[state & 0xFF] ^ t1[(state >> 8) & 0xFF]
                 ^ t2[(state >> 16) & 0xFF] ^ t3[state >> 24] ^ part)
    return state


def _windows(buf: np.ndarray, width: int) -> np.ndarray | None:
    """A read-only view with a row of `width` bytes starting at every offset."""
    if buf.shape[0] < width or buf.strides[0] != 1:
        return None
    return np.lib.stride_tricks.as_strided(
        buf, shape=(buf.shape[0] - width + 1, width), strides=(1, 1), writeable=False
    )


def _width(length: int) -> int:
    if length <= 256:
        return max(8, -(-length // 8) * 8)
    return 1 << (length - 1).bit_length()


def crc32c_many(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """CRC-32C of each span buf[starts[i] : starts[i] + lengths[i]] (uint32 array).

    `buf` is a 1-D uint8 array; spans must lie inside it.
    """
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    out = np.zeros(starts.shape[0], dtype=np.uint32)
    if starts.shape[0] == 0:
        return out
    if int(lengths.min()) < 0 or int((starts + lengths).max()) > buf.shape[0]:
        raise ValueError("span outside the buffer")
    if buf.shape[0] == 0:  # only empty spans; give the masked gathers a byte to read
        buf = np.zeros(1, dtype=np.uint8)
    raw = np.zeros(starts.shape[0], dtype=np.uint32)
    long_idx = np.flatnonzero(lengths > _ROW_MAX)
    for i in long_idx.tolist():
        s, n = int(starts[i]), int(lengths[i])
        raw[i] = _raw0_long(buf[s:s + n])
    short = np.flatnonzero(lengths <= _ROW_MAX)
    if short.shape[0]:
        widths = np.where(lengths[short] <= 256,
                          np.maximum(8, (lengths[short] + 7) // 8 * 8), 0)
        big = lengths[short] > 256
        if big.any():
            widths[big] = [_width(int(x)) for x in lengths[short][big].tolist()]
        for width in np.unique(widths).tolist():
            sel = short[widths == width]
            cols = np.arange(width, dtype=np.int64)
            step = max(1, _CHUNK_ELEMS // width)
            # Row i holds the width bytes that end where span i ends; the bytes
            # before the span are zeroed (right alignment).
            windows = _windows(buf, width)
            for lo in range(0, sel.shape[0], step):
                part = sel[lo:lo + step]
                first = starts[part] + lengths[part] - width
                pad = (width - lengths[part])[:, None]
                if windows is not None and int(first.min()) >= 0:
                    mat = windows[first]  # one row copy each
                    mat[cols[None, :] < pad] = 0
                else:  # spans near the start of a short buffer
                    keep = cols[None, :] >= pad
                    idx = np.where(keep, first[:, None] + cols[None, :], 0)
                    mat = np.where(keep, buf[idx], np.uint8(0))
                raw[part] = _raw0_rows(np.ascontiguousarray(mat, dtype=np.uint8))
    # Per-length constant: few distinct lengths in practice, each cached.
    uniq, inv = np.unique(lengths, return_inverse=True)
    zs = np.array([_z(int(n)) for n in uniq.tolist()], dtype=np.uint32)
    out[:] = raw ^ zs[inv]
    return out


__all__ = [
    "crc32c",
    "crc32c_many",
    "crc32c_pure",
    "crc32c_rows",
    "mask",
    "mask_array",
    "masked_crc32c",
    "unmask",
]
