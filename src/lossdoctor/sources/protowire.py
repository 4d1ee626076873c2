"""Minimal protobuf wire-format decoding, bounds-checked.

Everything works on spans of one buffer (no copies, no allocation sized by a length
field from the input). Malformed input raises `ProtoError`, a ValueError.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

VARINT = 0
I64 = 1
LEN = 2
I32 = 5

Buffer = bytes | bytearray | memoryview

_F32 = struct.Struct("<f")
_F64 = struct.Struct("<d")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class ProtoError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def read_varint(buf: Buffer, pos: int, end: int) -> tuple[int, int]:
    """(value, position after it) of the varint at `pos`; at most 10 bytes."""
    result = 0
    shift = 0
    limit = min(end, pos + 10)
    while pos < limit:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result & 0xFFFFFFFFFFFFFFFF, pos
        shift += 7
    if pos >= end:
        raise ProtoError("varint runs past the end of the message")
    raise ProtoError("varint longer than 10 bytes")


def to_int64(u: int) -> int:
    """Two's-complement reading of a 64-bit varint (protobuf int64)."""
    return u - (1 << 64) if u >= 1 << 63 else u


def to_int32(u: int) -> int:
    """protobuf int32: negative values arrive sign-extended to 64 bits."""
    u &= 0xFFFFFFFF
    return u - (1 << 32) if u >= 1 << 31 else u


# A field: (number, wire type, varint value or 0, payload start, payload end).
Field = tuple[int, int, int, int, int]


def iter_fields(buf: Buffer, start: int, end: int) -> Iterator[Field]:
    """The fields of the message in buf[start:end], in order.

    Groups (wire types 3 and 4) and unknown wire types are errors: no message a
    TensorBoard file holds uses them.
    """
    if start < 0 or end > len(buf) or start > end:
        raise ProtoError("message span outside the buffer")
    pos = start
    while pos < end:
        key, pos = read_varint(buf, pos, end)
        number = key >> 3
        wire = key & 7
        if number == 0:
            raise ProtoError("field number 0")
        if wire == VARINT:
            value, pos = read_varint(buf, pos, end)
            yield number, wire, value, pos, pos
        elif wire == I64:
            if pos + 8 > end:
                raise ProtoError("fixed64 runs past the end of the message")
            yield number, wire, 0, pos, pos + 8
            pos += 8
        elif wire == LEN:
            size, pos = read_varint(buf, pos, end)
            if size > end - pos:
                raise ProtoError(f"length {size} runs past the end of the message")
            yield number, wire, 0, pos, pos + size
            pos += size
        elif wire == I32:
            if pos + 4 > end:
                raise ProtoError("fixed32 runs past the end of the message")
            yield number, wire, 0, pos, pos + 4
            pos += 4
        else:
            raise ProtoError(f"unsupported wire type {wire}")


def fixed32_float(buf: Buffer, pos: int) -> float:
    value: float = _F32.unpack_from(buf, pos)[0]
    return value


def fixed64_double(buf: Buffer, pos: int) -> float:
    value: float = _F64.unpack_from(buf, pos)[0]
    return value


def fixed32_uint(buf: Buffer, pos: int) -> int:
    value: int = _U32.unpack_from(buf, pos)[0]
    return value


def fixed64_uint(buf: Buffer, pos: int) -> int:
    value: int = _U64.unpack_from(buf, pos)[0]
    return value


def packed_varints(buf: Buffer, start: int, end: int) -> list[int]:
    """The varints of a packed repeated field, as unsigned 64-bit values."""
    out = []
    pos = start
    while pos < end:
        value, pos = read_varint(buf, pos, end)
        out.append(value)
    return out


def packed_fixed(buf: Buffer, start: int, end: int, fmt: str) -> list[float]:
    """The values of a packed repeated fixed-width field (`fmt` is "f" or "d")."""
    size = 4 if fmt == "f" else 8
    if (end - start) % size:
        raise ProtoError(f"packed field of {end - start} bytes is not a multiple of {size}")
    unpacker = struct.Struct("<" + fmt)
    return [v[0] for v in unpacker.iter_unpack(bytes(buf[start:end]))]


__all__ = [
    "I32",
    "I64",
    "LEN",
    "VARINT",
    "Field",
    "ProtoError",
    "fixed32_float",
    "fixed32_uint",
    "fixed64_double",
    "fixed64_uint",
    "iter_fields",
    "packed_fixed",
    "packed_varints",
    "read_varint",
    "to_int32",
    "to_int64",
]
