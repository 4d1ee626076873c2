"""The `.wandb` file every Weights & Biases run leaves on the machine that ran it
(`wandb/run-<date>-<id>/run-<id>.wandb`, online runs too; `offline-run-...` offline),
read without wandb.

Its framing is LevelDB's log format: a 7-byte header (`:W&B`, a 2-byte magic, a
version byte), then 32 KiB blocks of records, each `crc32 (4) | length (2) | type (1) |
data`, where a record that does not fit in a block is split into FIRST, MIDDLE and
LAST pieces and a block's last few bytes may be zero padding. Each whole record is a
protobuf `wandb_internal.Record`; of those, this reads `history` (field 2: one
`wandb.log` call, items of `key` or `nested_key` and `value_json`), `run` (17:
`run_id` 1, `project` 3, `display_name` 8) and `exit` (18: `exit_code` 1), numbers
W&B keeps stable because the files are persistent.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from pathlib import Path

from lossdoctor.errors import InputError
from lossdoctor.run import Run
from lossdoctor.sources.protowire import LEN, VARINT, ProtoError, iter_fields, to_int64

FORMAT = "wandb"
MAX_BYTES = 1 << 30
IDENT = b":W&B"
_HEADER = struct.Struct("<4sHB")
_RECORD = struct.Struct("<IHB")
_BLOCK = 32768
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4
_CRC_SEED = {t: zlib.crc32(bytes((t,))) for t in (_FULL, _FIRST, _MIDDLE, _LAST)}
# Record fields (wandb/proto/wandb_internal.proto).
_HISTORY, _RUN, _EXIT = 2, 17, 18


def looks_like_wandb(head: bytes) -> bool:
    return head[:4] == IDENT and len(head) >= _HEADER.size


def _records(data: bytes, warnings: list[str]) -> list[bytes]:
    """The whole records of the file, in order; a damaged or unfinished tail (a run
    still writing, or killed) ends the list with a warning."""
    out: list[bytes] = []
    pos = _HEADER.size
    pieces: list[bytes] = []
    while pos + _RECORD.size <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _RECORD.size:  # too little room for a record header: padding
            pos += left
            continue
        crc, length, kind = _RECORD.unpack_from(data, pos)
        if kind == 0 and length == 0:  # the zero padding of a block's end
            pos += left
            continue
        body = data[pos + _RECORD.size:pos + _RECORD.size + length]
        if (kind not in _CRC_SEED or len(body) < length
                or zlib.crc32(body, _CRC_SEED[kind]) != crc):
            warnings.append(f"stopped at byte {pos}: a damaged or unfinished record (a run "
                            "still writing, or stopped); the records before it are read")
            return out
        pos += _RECORD.size + length
        if kind == _FULL:
            out.append(body)
        elif kind == _FIRST:
            pieces = [body]
        elif kind == _MIDDLE:
            pieces.append(body)
        else:
            out.append(b"".join([*pieces, body]))
            pieces = []
    return out


def _json_number(text: str) -> float | None:
    try:
        value = json.loads(text, parse_constant=lambda c: math.nan if c == "NaN" else
                           (math.inf if c == "Infinity" else -math.inf))
    except (ValueError, RecursionError):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None  # a table, an image, a histogram: not a curve
    return float(value)


def _history_row(buf: bytes, start: int, end: int) -> dict[str, object]:
    row: dict[str, object] = {}
    for number, wire, _, a, b in iter_fields(buf, start, end):
        if number != 1 or wire != LEN:
            continue
        key, nested, value = "", [], None
        for n, w, _, c, d in iter_fields(buf, a, b):
            if n == 1 and w == LEN:
                key = buf[c:d].decode("utf-8", errors="replace")
            elif n == 2 and w == LEN:
                nested.append(buf[c:d].decode("utf-8", errors="replace"))
            elif n == 16 and w == LEN:
                value = _json_number(buf[c:d].decode("utf-8", errors="replace"))
        name = key or "/".join(nested)
        if value is not None and name and (name == "_step" or not name.startswith("_")):
            row[name] = value  # `_timestamp` and `_runtime` are W&B's own clock
    return row


def _strings(buf: bytes, start: int, end: int, wanted: dict[int, str]) -> dict[str, str]:
    return {wanted[n]: buf[a:b].decode("utf-8", errors="replace")
            for n, w, _, a, b in iter_fields(buf, start, end) if n in wanted and w == LEN}


def read_wandb_file(path: Path, *, train_loss: str | None = None,
                    val_loss: str | None = None) -> list[Run]:
    from lossdoctor.sources.tabular import read_records

    source = str(path)
    if path.stat().st_size > MAX_BYTES:
        raise InputError(source, ".wandb file larger than 1 GiB")
    data = path.read_bytes()
    if not looks_like_wandb(data):
        raise InputError(source, "not a W&B run file (no :W&B header)")
    version = _HEADER.unpack_from(data)[2]
    warnings: list[str] = []
    rows: list[dict[str, object]] = []
    info: dict[str, str] = {}
    exit_code: int | None = None
    try:
        for record in _records(data, warnings):
            for number, wire, _, a, b in iter_fields(record, 0, len(record)):
                if number == _HISTORY and wire == LEN:
                    if row := _history_row(record, a, b):
                        rows.append(row)
                elif number == _RUN and wire == LEN:
                    info.update(_strings(record, a, b, {1: "run_id", 3: "project",
                                                        8: "display_name"}))
                elif number == _EXIT and wire == LEN:
                    exit_code = next((to_int64(v) for n, w, v, _, _ in
                                      iter_fields(record, a, b) if n == 1 and w == VARINT), 0)
    except ProtoError as exc:
        warnings.append(f"a record could not be decoded ({exc}); the ones before it are read")
    if not rows:
        raise InputError(source, "a W&B run with no logged numbers (wandb.log) in its file")
    if exit_code:
        warnings.append(f"the run's process exited with code {exit_code}")
    runs = read_records(rows, path, FORMAT, train_loss=train_loss, val_loss=val_loss)
    for run in runs:
        run.warnings = [*warnings, *run.warnings]
        run.meta.update(info, file_version=version)
        if exit_code is not None:
            run.meta["exit_code"] = exit_code
    return runs


def display_name(run: Run) -> str | None:
    """`brisk-pond-1 [4xbxx0cf]`: the name W&B shows, and the run's id."""
    name, run_id = run.meta.get("display_name"), run.meta.get("run_id")
    if not name:
        return None
    return f"{name} [{run_id}]" if run_id else str(name)


__all__ = ["display_name", "looks_like_wandb", "read_wandb_file"]
