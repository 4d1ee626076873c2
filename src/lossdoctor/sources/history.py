"""Keras `history.history` saved with json.dump: one object mapping each metric to
its per-epoch list (`{"loss": [...], "val_loss": [...], ...}`); and Hugging Face's
`trainer_state.json`, whose `log_history` holds one record per logging step or
evaluation (read as JSON Lines are)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from lossdoctor.errors import InputError, NotALogError
from lossdoctor.run import Run, Series
from lossdoctor.sources.names import canonicalize

MAX_BYTES = 256 * 1024 * 1024


def looks_like_history_json(head: bytes) -> bool:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return text.startswith(b"{") and b'"' in text[:200] and b"[" in text[:4096] and (
        text.count(b"\n{") == 0  # JSON Lines has an object per line
    )


def _number(value: object) -> float | None:
    if isinstance(value, bool) or value is None:
        return None if value is None else float(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def load_json(path: Path, what: str) -> object:
    """The JSON document in `path` (NaN and Infinity as Python writes them), or an
    InputError naming the file: too large, or not JSON."""
    if path.stat().st_size > MAX_BYTES:
        raise InputError(str(path), f"{what} larger than 256 MiB")
    try:
        return json.loads(path.read_bytes().decode("utf-8", errors="replace"),
                          parse_constant=lambda c: math.nan if c == "NaN" else
                          (math.inf if c == "Infinity" else -math.inf))
    except (json.JSONDecodeError, RecursionError) as exc:
        raise InputError(str(path), f"not valid JSON ({exc})") from None


def read_history_json(
    path: Path, *, train_loss: str | None = None, val_loss: str | None = None
) -> list[Run]:
    source = str(path)
    doc = load_json(path, "history JSON")
    if isinstance(doc, dict) and isinstance(doc.get("log_history"), list):
        # Hugging Face's trainer_state.json: one record per logging step or evaluation.
        from lossdoctor.sources.tabular import read_records

        records = [r for r in doc["log_history"] if isinstance(r, dict)]
        if not records:
            raise InputError(source, "trainer_state.json with an empty log_history")
        return read_records(records, path, "hf-trainer-state", train_loss=train_loss,
                            val_loss=val_loss)
    if isinstance(doc, dict) and isinstance(doc.get("history"), dict):
        doc = doc["history"]  # {"history": {...}, "params": {...}}
    if not isinstance(doc, dict):
        raise NotALogError(source, "JSON is not an object of metric lists")
    raw: dict[str, Series] = {}
    for name, values in doc.items():
        if not isinstance(values, list) or not values:
            continue
        numbers = [_number(v) for v in values]
        if any(n is None for n in numbers):
            continue
        epochs = np.arange(len(numbers), dtype=np.int64)
        raw[str(name)] = Series(epochs, np.asarray(numbers, dtype=np.float64), epochs.copy())
    if not raw:
        raise NotALogError(source, "no numeric metric lists in the JSON object")
    return [
        Run(
            name=path.name,
            source=source,
            format="keras-history",
            series=canonicalize(raw, train_loss=train_loss, val_loss=val_loss),
            meta={"columns": list(raw)},
        )
    ]
