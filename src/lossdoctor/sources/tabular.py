"""Read tabular training logs: Keras CSVLogger, Lightning metrics.csv, plain CSV, JSON Lines.

The format is detected from the content, never from the file name. The logs of the wild
are messy (CRLF and `\\r\\r\\n` line ends, a title line before the header, `;` or tab
delimiters, several runs appended to one file, Lightning's interleaved rows with empty
cells), so every quirk met in practice has a rule here and a test next to it.

One file gives one or more Runs: Keras' CSVLogger(append=True) keeps appending to the
same file, and the epoch starting over marks each new run.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import pairwise
from pathlib import Path
from typing import BinaryIO

import numpy as np

from lossdoctor.errors import InputError, NotALogError
from lossdoctor.run import TRAIN_LOSS, VAL_LOSS, Run, Series
from lossdoctor.sources.names import assign_roles, canonicalize
from lossdoctor.sources.tb_download import FORMAT as DOWNLOAD_FORMAT
from lossdoctor.sources.tb_download import is_download_header, series_name
from lossdoctor.sources.wandb_export import FORMAT as WANDB_FORMAT
from lossdoctor.sources.wandb_export import runs_in_header

MAX_LINE_BYTES = 1 << 20  # a longer line is not a training log; refuse before reading on
MAX_FILE_BYTES = 1 << 30
MAX_COLUMNS = 10_000  # per-class metrics reach hundreds; tens of thousands is not a log
_DELIMITERS = (",", ";", "\t", "|")
_PROBE_LINES = 30  # lines looked at to find the delimiter and the header
_HEADER_SEARCH = 10  # junk lines tolerated before the header

# Cells that mean "no value here". Keras' CSVLogger writes "NA" for a metric missing in
# an epoch; pandas and Python loggers write "None"/"null". These are missing, not NaN:
# an explicit `nan` is a real NaN loss and a diagnosis in itself.
_MISSING = frozenset({"", "na", "n/a", "#n/a", "none", "null", "-"})
# Spreadsheet and C-runtime spellings of non-finite numbers that float() refuses.
_SPECIAL = {
    "1.#inf": math.inf,
    "+1.#inf": math.inf,
    "-1.#inf": -math.inf,
    "1.#qnan": math.nan,
    "-1.#qnan": math.nan,
    "1.#ind": math.nan,
    "-1.#ind": math.nan,
    "-nan(ind)": math.nan,
    "nan(ind)": math.nan,
    "#num!": math.nan,
}
# `tensor(0.6931, device='cuda:0')`: what str() of a logged torch scalar looks like.
_TENSOR = re.compile(r"^tensor\(\s*([^,)\s]+)")
_CONTROL_BYTES = bytes(c for c in range(32) if c not in (9, 10, 11, 12, 13, 27))
_NAME = re.compile(r"^[A-Za-z_][\w./:@\-\[\]]*$")  # a metric name: no spaces, no number
_DECIMAL_COMMA = re.compile(r"^[+-]?\d*,\d+(?:[eE][+-]?\d+)?$")

_EPOCH_NAMES = frozenset({"epoch", "epochs"})
_STEP_NAMES = frozenset(
    {"step", "steps", "global_step", "globalstep", "iteration", "iterations", "iter", "it",
     "trainer/global_step", "_step"}
)
_ROW_NAMES = frozenset({"", "unnamed: 0", "index"})  # a pandas to_csv() index column


@dataclass
class _Column:
    """One column of the table: values (NaN where missing) and which cells held a value."""

    name: str
    values: np.ndarray  # float64
    present: np.ndarray  # bool: the cell held a number (NaN included); False = missing
    bad: int = 0  # cells that held something that is not a number
    first_bad: str = ""  # the first such cell, quoted in the warning


@dataclass
class _Table:
    columns: list[_Column]
    nrows: int
    boundaries: list[int]  # row indices where a repeated header started a new run
    meta: dict[str, object]
    warnings: list[str]
    has_empty_cells: bool  # Lightning leaves cells empty; Keras writes "NA"
    fmt: str | None = None  # forced format ("jsonl"); None = decide from the columns


# --------------------------------------------------------------------------- sniffing


def looks_like_jsonl(head: bytes) -> bool:
    """True when the first non-blank line of `head` is a JSON object."""
    text = _decode_head(head)
    return text is not None and _first_line_is_object(text)


def _first_line_is_object(text: str) -> bool:
    start = len(text) - len(text.lstrip()) if text[:1].isspace() else 0
    if text[start : start + 1] != "{":
        return False
    end = text.find("\n", start)
    line = text[start:] if end < 0 else text[start:end]
    try:
        return isinstance(json.loads(line), dict)
    except (ValueError, RecursionError):
        # A head may cut a long first line: judge an unfinished one by how it starts.
        return end < 0 and line.startswith('{"')


def looks_like_table(head: bytes) -> bool:
    """True when `head` holds a header row followed by a row of numbers."""
    text = _decode_head(head)
    if text is None or looks_like_jsonl(head):
        return False
    lines = [ln for ln in text.split("\n") if ln.strip()]
    if len(lines) > 2 and not text.endswith("\n"):
        lines = lines[:-1]  # the head may have cut the last line short
    found = _find_header(lines)
    if found is not None and found[0] + 1 < len(lines):
        return True
    # A header longer than the head (hundreds of per-class metric columns): the head
    # ends inside the header or the first row, so judge the names alone.
    if lines and len(lines) <= 2 and not text.endswith("\n"):
        fields = [f.strip().strip('"') for f in _split(lines[0], _choose_delimiter(lines[:1]))]
        return len(fields) >= 3 and all(_NAME.match(f) for f in fields[:-1])
    return False


def header_only(head: bytes) -> list[str] | None:
    """The column names of a table that has its header and no rows yet (a CSV log of a
    run that ended before its first row was written); None for anything else."""
    text = _decode_head(head)
    if text is None or not text.endswith("\n") or looks_like_jsonl(head):
        return None
    lines = [ln for ln in text.split("\n") if ln.strip()]
    found = _find_header(lines) if len(lines) == 1 else None
    if found is None or not all(_NAME.match(name) for name in found[2]):
        return None
    return found[2]


def has_loss(run: Run) -> bool:
    """True when the run has a training-loss series with at least one point."""
    series = run.series.get(TRAIN_LOSS)
    return series is not None and len(series) > 0


# --------------------------------------------------------------------------- reading


def read_table_file(
    path: str | Path,
    *,
    train_loss: str | None = None,
    val_loss: str | None = None,
) -> list[Run]:
    """Read a CSV/TSV/`;`-separated log or a JSON Lines log into one Run per run it holds.

    `train_loss` / `val_loss` name the columns that hold the losses when the names do
    not say so. Raises InputError (path, short problem) for anything unreadable.
    """
    p = Path(path)
    src = str(path)
    data = _read_bytes(p, src)
    warnings: list[str] = []
    text = _decode(data, src, warnings)
    if not text.strip():
        raise InputError(src, "empty file")
    if _first_line_is_object(text[:MAX_LINE_BYTES]):
        table = _parse_jsonl(text, src, warnings)
    else:
        table = _parse_delimited(text, src, warnings)
    return _build_runs(table, p, src, train_loss, val_loss)


def _read_bytes(p: Path, src: str) -> bytes:
    try:
        if p.is_dir():
            raise InputError(src, "is a directory, not a log file")
        size = p.stat().st_size
    except FileNotFoundError:
        raise InputError(src, "no such file") from None
    except OSError as exc:
        raise InputError(src, f"cannot read ({exc.strerror or exc})") from None
    if size > MAX_FILE_BYTES:
        raise InputError(src, f"file is larger than {MAX_FILE_BYTES >> 20} MiB")
    try:
        with p.open("rb") as f:
            if size <= MAX_LINE_BYTES:
                return f.read(MAX_LINE_BYTES + 1)
            return _read_capped(f, src)
    except FileNotFoundError:
        raise InputError(src, "no such file") from None
    except IsADirectoryError:
        raise InputError(src, "is a directory, not a log file") from None
    except OSError as exc:
        raise InputError(src, f"cannot read ({exc.strerror or exc})") from None


def _read_capped(f: BinaryIO, src: str) -> bytes:
    """Read in 1 MiB blocks, refusing as soon as one line grows past MAX_LINE_BYTES."""
    read = f.read
    chunks: list[bytes] = []
    since_break = 0  # bytes since the last line break
    total = 0
    while True:
        block: bytes = read(MAX_LINE_BYTES)
        if not block:
            break
        total += len(block)
        if total > MAX_FILE_BYTES:
            raise InputError(src, f"file is larger than {MAX_FILE_BYTES >> 20} MiB")
        first = _first_break(block)
        if first < 0:
            since_break += len(block)
        else:
            since_break += first
            if since_break <= MAX_LINE_BYTES:
                since_break = len(block) - 1 - max(block.rfind(b"\n"), block.rfind(b"\r"))
        if since_break > MAX_LINE_BYTES:
            raise InputError(
                src, f"a line is longer than {MAX_LINE_BYTES >> 20} MiB: not a training log"
            )
        chunks.append(block)
    return b"".join(chunks)


def _first_break(block: bytes) -> int:
    n, r = block.find(b"\n"), block.find(b"\r")
    if n < 0:
        return r
    return n if r < 0 else min(n, r)


def _decode_head(head: bytes) -> str | None:
    """Text of a file's first bytes, or None when they are binary."""
    if not head:
        return None
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        text = head.decode("utf-16", "replace")
    else:
        if _is_binary(head):
            return None
        text = head.decode("utf-8", "replace")
    return _normalize(text)


def _is_binary(data: bytes) -> bool:
    head = data[:8192].rstrip(b"\x00")
    if b"\x00" in head:
        return True
    control = len(head) - len(head.translate(None, _CONTROL_BYTES))
    if control > max(2, len(head) // 20):
        return True
    text = head.decode("utf-8", "replace")
    return text.count("\ufffd") > max(2, len(text) // 5)


def _normalize(text: str) -> str:
    if "\ufeff" in text:
        text = text.replace("\ufeff", "")  # a BOM at the start, or one per appended file
    if "\r" in text:
        # CRLF, and the `\r\r\n` that Windows text mode makes of csv's own CRLF.
        text = text.replace("\r\r\n", "\n").replace("\r\n", "\n").replace("\r", "\n")
    return text


def _decode(data: bytes, src: str, warnings: list[str]) -> str:
    if not data.strip(b" \t\r\n\x00"):
        raise InputError(src, "empty file")
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):  # PowerShell's `>` writes UTF-16
        return _normalize(data.decode("utf-16", "replace"))
    stripped = data.rstrip(b"\x00")
    if len(stripped) < len(data):
        # A crash while writing leaves the file's tail zero-filled.
        warnings.append(f"ignored {len(data) - len(stripped)} NUL bytes at the end of the file")
    if _is_binary(stripped):
        raise InputError(src, "not a text log (binary content)")
    text = stripped.decode("utf-8", "replace")
    if "\x00" in text:
        warnings.append("ignored NUL bytes inside the file")
        text = text.replace("\x00", "")
    return _normalize(text)


# --------------------------------------------------------------------------- delimited


def _split(line: str, delim: str) -> list[str]:
    if '"' in line:
        try:
            return next(csv.reader([line], delimiter=delim))
        except (csv.Error, StopIteration):
            return line.split(delim)
    return line.split(delim)


def _is_number(cell: str) -> bool:
    s = cell.strip()
    try:
        float(s)
    except ValueError:
        return _lenient_float(s) is not None
    return True


def _is_data_row(fields: list[str]) -> bool:
    """Mostly numbers (empty cells aside): a text column such as a note may remain."""
    numbers = texts = 0
    for f in fields:
        s = f.strip()
        if s.lower() in _MISSING:
            continue
        if _is_number(s):
            numbers += 1
        else:
            texts += 1
    return numbers >= max(1, texts)


def _trim(fields: list[str]) -> list[str]:
    """Drop the empty fields a trailing delimiter leaves."""
    end = len(fields)
    while end > 1 and not fields[end - 1].strip():
        end -= 1
    return fields[:end]


def _choose_delimiter(lines: Sequence[str]) -> str:
    best, best_score = ",", (0, 0)
    for d in _DELIMITERS:
        counts = [ln.count(d) for ln in lines]
        nonzero = [c for c in counts if c]
        if not nonzero:
            continue
        mode = max(set(nonzero), key=nonzero.count)
        score = (counts.count(mode), mode)
        if score > best_score:
            best, best_score = d, score
    return best


def _find_header(lines: Sequence[str]) -> tuple[int, str, list[str]] | None:
    """(index of the header line, delimiter, column names) among the first lines.

    The header is the line just before the first row of numbers, with as many fields,
    and not itself numbers. Lines before it (a title such as `model_history_log`) are junk.
    """
    probe = lines[:_PROBE_LINES]
    if not probe:
        return None
    delim = _choose_delimiter(probe)
    for i in range(min(_HEADER_SEARCH + 1, len(probe))):
        fields = _split(probe[i], delim)
        if _is_data_row(fields):
            if i == 0:
                return None  # numbers on the first line: no header
            header = _trim(_split(probe[i - 1], delim))
            k = len(header)
            fits = len(fields) == k or (
                len(fields) > k and not any(f.strip() for f in fields[k:])
            )
            if fits and not _is_data_row(header):
                return i - 1, delim, header
            return None
    # No row of numbers yet: a header-only file still has a header.
    first = _trim(_split(probe[0], delim))
    if len(probe) == 1 and len(first) > 1 and not _is_data_row(first) and all(
        f.strip() for f in first
    ):
        return 0, delim, first
    return None


def _header_names(raw: list[str]) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    next_k: dict[str, int] = {}
    for field in raw:
        name = base = field.strip().strip('"').strip()
        while name in seen:  # a duplicated column name keeps both columns: `acc`, `acc.2`
            next_k[base] = next_k.get(base, 1) + 1
            name = f"{base}.{next_k[base]}"
        seen.add(name)
        names.append(name)
    return names


def _parse_delimited(text: str, src: str, warnings: list[str]) -> _Table:
    lines = text.rstrip().split("\n")
    if "\n\n" in text or any(ln.isspace() or not ln for ln in lines[: _PROBE_LINES + 1]):
        lines = [ln for ln in lines if ln and not ln.isspace()]
    # else: the common case, no per-line blank test; a blank-ish line further down makes
    # the fast path below fail and the slow path drops it.
    found = _find_header(lines)
    if found is None:
        probe = lines[:_PROBE_LINES]
        delim = _choose_delimiter(probe)
        if any(_is_data_row(_split(ln, delim)) for ln in probe):
            raise InputError(src, "no header row naming the columns")
        raise InputError(src, "no numeric columns")
    h, delim, raw_header = found
    if len(raw_header) > MAX_COLUMNS:
        raise InputError(src, f"more than {MAX_COLUMNS} columns: not a training log")
    names = _header_names(raw_header)
    data = lines[h + 1 :]
    if not data:
        raise InputError(src, "no numeric columns (a header but no data rows)")
    meta: dict[str, object] = {"columns": names, "delimiter": delim}
    if h:
        meta["skipped_lines"] = h
        warnings.append(f"skipped {h} line(s) before the header")
    # Fast path: every row has the header's field count and every cell is a number.
    # numpy's C loader checks the field counts and converts the block in one call;
    # a 1000-row, 6-column Keras log reads in about 2 ms, most of it float parsing.
    if '"' not in text:
        table = _fast_block(data, names, delim, meta, warnings)
        if table is not None:
            return table
    return _parse_slow(text.split("\n"), raw_header, names, delim, h, meta, warnings)


# A cell no log holds (a subnormal): stands in for an empty cell so that numpy's loader
# can read Lightning's sparse rows in one call, then marks them missing.
_EMPTY_MARK = "9.8765e-321"
_EMPTY_MARK_VALUE = float(_EMPTY_MARK)


def _fast_block(
    data: list[str],
    names: list[str],
    delim: str,
    meta: dict[str, object],
    warnings: list[str],
) -> _Table | None:
    k = len(names)
    n = len(data)
    rows: Sequence[str] = data
    sparse = False
    for attempt in range(2):
        try:
            block = np.loadtxt(
                rows, delimiter=delim, comments=None, quotechar=None, ndmin=2,
                dtype=np.float64,
            )
        except ValueError:
            joined = "\n".join(data)
            if attempt or not _has_empty_field(joined, delim):
                return None
            d = re.escape(delim)
            joined = re.sub(rf"(?:(?<={d})|^)(?={d}|$)", _EMPTY_MARK, joined, flags=re.M)
            rows = joined.split("\n")
            sparse = True
            continue
        if block.shape != (n, k):
            return None
        cols_t = block.T.copy()
        if not sparse:
            ones = np.ones(n, dtype=bool)
            cols = [_Column(c, cols_t[j], ones) for j, c in enumerate(names)]
            return _Table(cols, n, [], meta, warnings, False)
        cols = []
        for j, c in enumerate(names):
            present = cols_t[j] != _EMPTY_MARK_VALUE
            values = np.where(present, cols_t[j], np.nan)
            cols.append(_Column(c, values, present))
        return _Table(cols, n, [], meta, warnings, True)
    return None


def _has_empty_field(joined: str, d: str) -> bool:
    return (
        d + d in joined
        or f"\n{d}" in joined
        or f"{d}\n" in joined
        or joined.startswith(d)
        or joined.endswith(d)
    )


def _parse_slow(
    all_lines: list[str],
    raw_header: list[str],
    names: list[str],
    delim: str,
    header_index: int,
    meta: dict[str, object],
    warnings: list[str],
) -> _Table:
    """Row by row: empty cells, quotes, ragged rows, repeated headers, junk lines."""
    k = len(names)
    header_key = [f.strip() for f in raw_header]
    first_key = header_key[0]
    rows: list[list[str]] = []
    boundaries: list[int] = []
    skipped: list[int] = []
    padded = False  # the last row was cut short and filled with empty cells
    to_skip = header_index + 1  # non-blank lines up to the header
    last = max(i for i, ln in enumerate(all_lines) if ln and not ln.isspace())
    quoted = any('"' in ln for ln in all_lines)
    for i, line in enumerate(all_lines):
        if not line or line.isspace():
            continue
        if to_skip:
            to_skip -= 1
            continue
        fields = _split(line, delim) if quoted else line.split(delim)
        if len(fields) > k and not any(f.strip() for f in fields[k:]):
            fields = fields[:k]  # trailing delimiter
        if len(fields) == k:
            if fields[0].strip() == first_key and [f.strip() for f in fields] == header_key:
                # The header again: another run was appended (or files were concatenated).
                if rows and (not boundaries or boundaries[-1] != len(rows)):
                    boundaries.append(len(rows))
                continue
            rows.append(fields)
        elif len(fields) < k and i == last and _is_data_row(fields):
            warnings.append(f"line {i + 1}: the last row is incomplete (the file was cut)")
            rows.append(fields + [""] * (k - len(fields)))
            padded = True
        else:
            skipped.append(i + 1)
    if skipped:
        warnings.append(
            f"skipped {len(skipped)} line(s) that do not fit the {k}-column header "
            f"(first: line {skipped[0]})"
        )
    n = len(rows)
    cols: list[_Column] = []
    has_empty = False
    whole = n - 1 if padded else n  # a cut row's filler is not Lightning's empty cells
    for j, name in enumerate(names):
        cells = [r[j] for r in rows]
        col = _convert_cells(name, cells)
        if not has_empty and not col.present[:whole].all():
            has_empty = any(not c.strip() for c in cells[:whole])
        cols.append(col)
    return _Table(cols, n, boundaries, meta, warnings, has_empty)


def _convert_cells(name: str, cells: list[str]) -> _Column:
    n = len(cells)
    try:
        # Vectorized first: empty cells become missing; anything else must be a number.
        arr = np.array(cells, dtype=str)
        stripped = np.char.strip(arr)
        missing = stripped == ""
        filled = np.where(missing, "nan", stripped)
        values = filled.astype(np.float64)
        return _Column(name, values, ~missing)
    except ValueError:
        pass
    values = np.full(n, np.nan)
    present = np.zeros(n, dtype=bool)
    bad = 0
    first_bad = ""
    for i, cell in enumerate(cells):
        s = cell.strip()
        if s.lower() in _MISSING:
            continue
        try:
            v = float(s)
        except ValueError:
            w = _lenient_float(s)
            if w is None:
                bad += 1
                if not first_bad:
                    first_bad = s[:40]
                continue
            v = w
        values[i] = v
        present[i] = True
    return _Column(name, values, present, bad, first_bad)


def _lenient_float(s: str) -> float | None:
    low = s.lower()
    if low in _SPECIAL:
        return _SPECIAL[low]
    m = _TENSOR.match(s)
    if m:
        try:
            return float(m.group(1))
        except ValueError:
            return None
    if low.endswith("%"):
        return None  # a percentage is a unit change we should not guess
    if _DECIMAL_COMMA.match(s):  # "0,1234" from a European spreadsheet (with `;` delimiters)
        try:
            return float(s.replace(",", "."))
        except ValueError:
            return None
    return None


# --------------------------------------------------------------------------- jsonl


def _flatten(obj: dict[str, object], prefix: str, out: dict[str, object], depth: int) -> None:
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            if depth < 4:
                _flatten(value, f"{name}/", out, depth + 1)
            continue
        out[name] = value


def _parse_jsonl(text: str, src: str, warnings: list[str]) -> _Table:
    records: list[dict[str, object]] = []
    line_nos: list[int] = []
    bad_lines: list[int] = []
    last_bad = ""
    for i, line in enumerate(text.split("\n")):
        s = line.strip()
        if not s:
            continue
        try:
            obj = json.loads(s)
        except (ValueError, RecursionError):
            bad_lines.append(i + 1)
            last_bad = s
            continue
        if not isinstance(obj, dict):
            bad_lines.append(i + 1)
            last_bad = s
            continue
        records.append(obj)
        line_nos.append(i + 1)
    if bad_lines:
        cut = (not line_nos or bad_lines[-1] > line_nos[-1]) and not last_bad.endswith("}")
        tail = " (the last line was cut)" if cut and len(bad_lines) == 1 else ""
        warnings.append(
            f"skipped {len(bad_lines)} line(s) that are not JSON objects "
            f"(first: line {bad_lines[0]}){tail}"
        )
    return _records_table(records, src, warnings, "jsonl")


# Hugging Face's Trainer ends its log with a summary record (`train_runtime`, and
# `train_loss`: the mean over the whole run, which must not become a point of the curve).
SUMMARY_KEYS = ("train_runtime",)


def _records_table(objects: Sequence[dict[str, object]], src: str, warnings: list[str],
                   fmt: str) -> _Table:
    """A table from JSON objects, one row each (nested objects flattened to `a/b`)."""
    records: list[dict[str, object]] = []
    for obj in objects:
        if any(key in obj for key in SUMMARY_KEYS):
            continue
        flat: dict[str, object] = {}
        _flatten(obj, "", flat, 0)
        records.append(flat)
    names: dict[str, None] = {}
    for rec in records:
        for key in rec:
            names.setdefault(key, None)
    if not records or not names or not any(
            _json_number(v) is not None for rec in records for v in rec.values()):
        raise NotALogError(src, "no numeric columns")
    if len(names) > MAX_COLUMNS:
        raise InputError(src, f"more than {MAX_COLUMNS} keys: not a training log")
    n = len(records)
    cols: list[_Column] = []
    has_empty = False
    for name in names:
        values = np.full(n, np.nan)
        present = np.zeros(n, dtype=bool)
        bad = 0
        first_bad = ""
        for i, rec in enumerate(records):
            if name not in rec:
                has_empty = True
                continue
            v = rec[name]
            num = _json_number(v)
            if num is None:
                if v is not None:
                    bad += 1
                    if not first_bad:
                        first_bad = str(v)[:40]
                continue
            values[i] = num
            present[i] = True
        cols.append(_Column(name, values, present, bad, first_bad))
    meta: dict[str, object] = {"columns": list(names)}
    return _Table(cols, n, [], meta, warnings, has_empty, fmt=fmt)


def read_records(objects: Sequence[dict[str, object]], path: Path, fmt: str, *,
                 train_loss: str | None = None, val_loss: str | None = None) -> list[Run]:
    """Runs from JSON objects read elsewhere (one log record each, as in JSON Lines):
    Hugging Face's `trainer_state.json` keeps them in `log_history`."""
    table = _records_table(objects, str(path), [], fmt)
    return _build_runs(table, path, str(path), train_loss, val_loss)


def _json_number(v: object) -> float | None:
    if isinstance(v, bool):  # bool is an int in Python; a flag is not a metric
        return None
    if isinstance(v, int | float):
        try:
            return float(v)
        except OverflowError:  # an int beyond float range
            return math.inf if v > 0 else -math.inf
    if isinstance(v, str):
        s = v.strip()
        try:
            return float(s)
        except ValueError:
            return _lenient_float(s)
    return None


# --------------------------------------------------------------------------- runs


def _kind_of(name: str) -> str | None:
    low = name.strip().lower()
    if low in _EPOCH_NAMES:
        return "epoch"
    if low in _STEP_NAMES:
        return "step"
    if low in _ROW_NAMES or low.startswith("unnamed:"):
        return "row"
    return None


def _index_values(col: _Column | None) -> np.ndarray | None:
    """The column as floats usable as an index (missing, non-finite or absurd = NaN)."""
    if col is None:
        return None
    v = np.where(col.present, col.values, np.nan)
    with np.errstate(invalid="ignore"):
        v[~(np.abs(v) < 2.0**53)] = np.nan
    return v


def _ffill(v: np.ndarray) -> np.ndarray:
    """Missing entries take the previous known value, leading ones the first known."""
    ok = ~np.isnan(v)
    if ok.all() or not ok.any():
        return v
    idx = np.where(ok, np.arange(v.size), 0)
    np.maximum.accumulate(idx, out=idx)
    out = v[idx]
    first = int(np.argmax(ok))
    out[:first] = v[first]
    return out


def _fill_epochs(epoch: np.ndarray, step: np.ndarray | None) -> np.ndarray:
    """Lightning's lr-monitor rows carry a step but no epoch: take the epoch of a row at
    the same step when there is one, else the previous row's."""
    missing = np.isnan(epoch)
    if not missing.any() or missing.all():
        return epoch
    out = epoch.copy()
    if step is not None:
        known = ~missing & ~np.isnan(step)
        ks, ke = step[known], epoch[known]
        order = np.argsort(ks, kind="stable")
        ks, ke = ks[order], ke[order]
        want = missing & ~np.isnan(step)
        if ks.size == 0 or not want.any():
            return _ffill(out)
        pos = np.searchsorted(ks, step[want])
        pos_c = np.minimum(pos, ks.size - 1)
        hit = ks[pos_c] == step[want]
        tgt = np.flatnonzero(want)[hit]
        out[tgt] = ke[pos_c[hit]]
    return _ffill(out)


def _restarts(index: np.ndarray, strict: bool) -> list[int]:
    """Rows where the index goes back: each starts a new run.

    strict: only a decrease counts (a Lightning step, or epoch, repeats on the train and
    validation rows); otherwise a repeat counts too (Keras writes one row per epoch).
    """
    ok = ~np.isnan(index)
    pos = np.flatnonzero(ok)
    if pos.size < 2:
        return []
    vals = index[pos]
    diff = np.diff(vals)
    back = diff < 0 if strict else diff <= 0
    return [int(p) for p in pos[1:][back]]


def _build_runs(
    table: _Table,
    path: Path,
    src: str,
    train_loss: str | None,
    val_loss: str | None,
) -> list[Run]:
    if table.fmt is None and (
        wandb := runs_in_header([c.name for c in table.columns])
    ) is not None:
        return _wandb_runs(table, wandb, path, src, train_loss, val_loss)
    if table.fmt is None and is_download_header([c.name for c in table.columns]):
        # One series, named only by the file: `Value` takes the name it stands for.
        name = series_name(path)
        table = replace(table, columns=[table.columns[1], replace(table.columns[2], name=name)],
                        fmt=DOWNLOAD_FORMAT, meta=dict(table.meta, series=name))
    warnings = table.warnings
    by_kind: dict[str, _Column] = {}
    metrics: list[_Column] = []
    for col in table.columns:
        kind = _kind_of(col.name)
        # An index column keeps its role despite a stray cell (read as missing, filled).
        if kind is not None and kind not in by_kind and col.present.sum() > col.bad:
            by_kind[kind] = col
        elif col.name == "" and not col.present.any():
            continue  # the empty column a trailing delimiter in the header leaves
        else:
            metrics.append(col)
    metric_names = [c.name for c in metrics]
    for override in (train_loss, val_loss):
        if override is not None and override not in metric_names:
            shown = ", ".join(metric_names) or "none"
            raise InputError(src, f"no column named {override!r} (columns: {shown})")

    # The loss columns keep whatever numbers they hold; another column with text in it
    # (a `True`/`False` flag, a file name) is skipped with a warning. Roles are only
    # worked out when some column has a gap to judge (not on the fast path).
    counts = [int(c.present.sum()) for c in metrics]
    doubtful = any(c.bad or n == 0 for c, n in zip(metrics, counts, strict=True))
    roles = (
        assign_roles(metric_names, train_loss=train_loss, val_loss=val_loss)
        if doubtful
        else {}
    )
    protected = {roles.get(TRAIN_LOSS), roles.get(VAL_LOSS)} - {None}
    kept: list[_Column] = []
    skipped: list[str] = []
    for col, numbers in zip(metrics, counts, strict=True):
        if col.bad and col.name not in protected and col.bad >= numbers:
            skipped.append(col.name)
            warnings.append(
                f"column {col.name!r} is not numeric (e.g. {col.first_bad!r}): skipped"
            )
            continue
        if col.bad:
            warnings.append(
                f"column {col.name!r}: {col.bad} cell(s) are not numbers "
                f"(e.g. {col.first_bad!r}): read as missing"
            )
        if numbers == 0:
            skipped.append(col.name)
            if col.name in protected:
                warnings.append(f"column {col.name!r} holds no numbers: skipped")
            continue
        kept.append(col)
    if doubtful:
        kept_names = {c.name for c in kept}
        # An all-empty loss column is an error: there is nothing to diagnose and the user
        # named or expected that column. An all-NaN one is kept: a run that went NaN from
        # the first epoch is a diagnosis (nan-loss), not unreadable input.
        for override in (train_loss, val_loss):
            if override is not None and override not in kept_names:
                raise InputError(src, f"the loss column {override!r} holds no numbers")
        auto_train = roles.get(TRAIN_LOSS)
        if (
            train_loss is None
            and auto_train is not None
            and auto_train not in kept_names
            and TRAIN_LOSS not in assign_roles(kept_names)
        ):
            raise InputError(src, f"the loss column {auto_train!r} holds no numbers")
    if not kept:
        raise InputError(src, "no numeric columns")
    if skipped:
        table.meta["skipped_columns"] = skipped

    epoch = _index_values(by_kind.get("epoch"))
    step = _index_values(by_kind.get("step"))
    # An index column with no usable number (all empty, or past 2**53) is no index:
    # cutting runs on it while the segments fall back to another would let steps
    # go backwards inside a run.
    if step is not None and np.isnan(step).all():
        step = None
    if epoch is not None and np.isnan(epoch).all():
        epoch = None
    if table.fmt is not None:
        fmt = table.fmt
    elif step is not None and (epoch is not None or table.has_empty_cells):
        fmt = "lightning-csv"  # Keras never writes a step column
    elif epoch is not None and table.has_empty_cells:
        fmt = "lightning-csv"  # Keras writes "NA", Lightning leaves the cell empty
    elif epoch is not None:
        fmt = "keras-csv"
    else:
        fmt = "csv"
    sparse = table.has_empty_cells or fmt == "lightning-csv"

    # Segments: a restart of the index (or a repeated header) starts another run.
    if step is not None:
        cuts = _restarts(step, strict=True)
        index_name = "step"
    elif epoch is not None:
        cuts = _restarts(epoch, strict=sparse)
        index_name = "epoch"
    else:
        cuts = []
        index_name = "row"
    n = table.nrows
    edges = sorted({0, n, *cuts, *table.boundaries})
    segments = [(a, b) for a, b in pairwise(edges) if b > a]

    runs: list[Run] = []
    for k, (a, b) in enumerate(segments, start=1):
        runs.append(
            _segment_run(
                table, kept, epoch, step, a, b, fmt, index_name,
                name=path.stem if len(segments) == 1 else f"{path.stem}#{k}",
                src=src, train_loss=train_loss, val_loss=val_loss,
                part=(k, len(segments)),
            )
        )
    if not runs:
        raise InputError(src, "no numeric columns")
    return runs


def _wandb_runs(
    table: _Table,
    runs: dict[str, list[tuple[int, str]]],
    path: Path,
    src: str,
    train_loss: str | None,
    val_loss: str | None,
) -> list[Run]:
    """One Run per W&B run of a panel export (`wandb_export`): the x-axis column and the
    run's value columns under their metric names, on the rows where the run has a
    point."""
    x = table.columns[0]
    out: list[Run] = []
    for run_name, columns in runs.items():
        rows = np.logical_or.reduce([table.columns[i].present for i, _ in columns])
        picked = [replace(x, values=x.values[rows], present=x.present[rows])]
        picked += [replace(table.columns[i], name=metric, values=table.columns[i].values[rows],
                           present=table.columns[i].present[rows]) for i, metric in columns]
        sub = _Table(picked, int(rows.sum()), [], dict(table.meta, wandb_run=run_name),
                     list(table.warnings), has_empty_cells=True)
        for run in _build_runs(sub, path, src, train_loss, val_loss):
            restart = run.name.partition("#")[2]  # the run's log restarted its steps
            run.name = f"{path.stem}#{run_name}" + (f".{restart}" if restart else "")
            run.format = WANDB_FORMAT
            out.append(run)
    return out


def _segment_run(
    table: _Table,
    kept: list[_Column],
    epoch_all: np.ndarray | None,
    step_all: np.ndarray | None,
    a: int,
    b: int,
    fmt: str,
    index_name: str,
    *,
    name: str,
    src: str,
    train_loss: str | None,
    val_loss: str | None,
    part: tuple[int, int],
) -> Run:
    warnings = list(table.warnings)
    epoch = None if epoch_all is None else epoch_all[a:b]
    step = None if step_all is None else step_all[a:b]
    if epoch is not None:
        epoch = _fill_epochs(epoch, step)
        if np.isnan(epoch).all():
            epoch = None
    if step is not None:
        step = _ffill(step)
        if np.isnan(step).all():
            step = None
    if step is None:
        step = epoch if epoch is not None else np.arange(b - a, dtype=np.float64)
        if np.isnan(step).any():  # an epoch cell missing in a Keras row
            step = np.arange(b - a, dtype=np.float64)
    steps = step.astype(np.int64)
    epochs = None if epoch is None else np.floor(epoch).astype(np.int64)

    raw: dict[str, Series] = {}
    for col in kept:
        present = col.present[a:b]
        values = col.values[a:b]
        if present.all():
            raw[col.name] = Series(steps, values, epochs)
        elif present.any():
            raw[col.name] = Series(
                steps[present], values[present], None if epochs is None else epochs[present]
            )
    tl = train_loss if train_loss in raw else None
    vl = val_loss if val_loss in raw else None
    for override, used in ((train_loss, tl), (val_loss, vl)):
        if override is not None and used is None:
            warnings.append(f"the column {override!r} holds no numbers in this run")
    meta = dict(table.meta)
    meta["index"] = index_name
    meta["rows"] = b - a
    if part[1] > 1:
        meta["segment"], meta["segments"] = part
        meta["first_row"] = a  # 0-based data row where this run starts in the file
    if epochs is not None and epochs.size:
        meta["first_epoch"] = int(epochs[0])
        if epochs[0] > 0:
            meta["resumed"] = True  # Keras `initial_epoch`: a continued run, not a new one
    return Run(
        name=name,
        source=src,
        format=fmt,
        series=canonicalize(raw, train_loss=tl, val_loss=vl),
        meta=meta,
        warnings=warnings,
    )


__all__ = [
    "MAX_LINE_BYTES",
    "has_loss",
    "looks_like_jsonl",
    "looks_like_table",
    "read_table_file",
]
