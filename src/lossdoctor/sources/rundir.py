"""lossdoctor run folders: TensorBoard event files plus a `run.json` (metadata and
the findings only a live monitor can make, such as where a NaN first appeared).

Per-layer signals are ordinary scalars tagged `layer/<layer>/<signal>`; they keep that
key in the Run (never `extra/...`) and never compete for the loss/accuracy roles.
The same `run_from_raw` builds the Run a live monitor reports on, so `doc.report()`
and `lossdoctor diagnose RUN_DIR` see the same thing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from lossdoctor.errors import InputError
from lossdoctor.run import SKIPPED_STEPS, Histogram, Run, Series
from lossdoctor.sources.epochs import attach_epochs
from lossdoctor.sources.names import canonicalize
from lossdoctor.sources.tensorboard import looks_like_event_file, read_event_file

RUN_JSON = "run.json"
MARKER = "lossdoctor_run"  # key whose presence marks our run.json (value: schema version)
LAYER_PREFIX = "layer/"
FORMAT = "lossdoctor"


def is_lossdoctor_run_dir(path: str | Path) -> bool:
    """Whether `path` is a folder with a lossdoctor `run.json`."""
    p = Path(path) / RUN_JSON
    try:
        if not p.is_file():
            return False
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeError, ValueError):
        return False
    return isinstance(data, dict) and MARKER in data


def run_from_raw(raw: Mapping[str, Series], meta: Mapping[str, Any], *, name: str,
                 source: str, warnings: list[str] | None = None,
                 histograms: Mapping[str, list[Histogram]] | None = None,
                 train_loss: str | None = None, val_loss: str | None = None) -> Run:
    """A Run from raw scalar series (tag -> Series), run.json's content and any
    histograms (tag -> histograms in step order); `train_loss` / `val_loss` name the
    series that hold the losses when their tags do not say so (KeyError if absent)."""
    with_epochs = attach_epochs(raw)
    # The doctor's own signals keep their names; the rest are mapped onto roles.
    layers = {k: v for k, v in with_epochs.items() if _doctors_own(k)}
    others = {k: v for k, v in with_epochs.items() if not _doctors_own(k)}
    series = canonicalize(others, train_loss=train_loss, val_loss=val_loss) if others else {}
    series.update(layers)
    meta_out: dict[str, object] = dict(meta)
    meta_out["live_findings"] = list(meta.get("live_findings", []) or [])
    return Run(name=name, source=source, format=FORMAT, series=series, meta=meta_out,
               warnings=[*(warnings or []), *_doctor_notes(meta)],
               histograms={k: list(v) for k, v in (histograms or {}).items()})


def _doctors_own(tag: str) -> bool:
    return tag.startswith(LAYER_PREFIX) or tag == SKIPPED_STEPS


def _doctor_notes(meta: Mapping[str, Any]) -> list[str]:
    """The live doctor's notes in run.json (signals it skipped and why, where a later
    fit began), shown with the report as the readers' notes are."""
    notes = meta.get("notes")
    if not isinstance(notes, list):
        return []
    return [n["note"] for n in notes
            if isinstance(n, Mapping) and isinstance(n.get("note"), str)]


def _event_files(folder: Path) -> list[Path]:
    out = []
    for p in sorted(folder.iterdir(), key=lambda q: q.name):
        if not p.is_file():
            continue
        if "tfevents" in p.name:
            out.append(p)
            continue
        if p.name == RUN_JSON:
            continue
        try:
            with p.open("rb") as fh:
                if looks_like_event_file(fh.read(12)):
                    out.append(p)
        except OSError:
            continue
    return out


def read_run_json(path: str | Path) -> dict[str, Any]:
    p = Path(path) / RUN_JSON
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeError, ValueError) as exc:
        raise InputError(str(p), f"cannot be read ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict):
        raise InputError(str(p), "not a lossdoctor run.json (expected a JSON object)")
    return data


def read_run_dir(path: str | Path, *, train_loss: str | None = None,
                 val_loss: str | None = None) -> Run:
    """The Run of a lossdoctor run folder: scalars from its event files (joined in
    file-name order), metadata from run.json, live-only findings in
    `meta["live_findings"]`. A torn last record (the process was killed) is read past
    with a warning, like any event file. `train_loss` / `val_loss`: tags of the series
    to take as the losses (`--train-loss`)."""
    folder = Path(path)
    meta = read_run_json(folder)
    parts: dict[str, list[Series]] = {}
    histograms: dict[str, list[Histogram]] = {}
    warnings: list[str] = []
    for f in _event_files(folder):
        try:
            events = read_event_file(f)
        except InputError as exc:
            warnings.append(str(exc))
            continue
        warnings.extend(events.warnings)
        for tag, part in events.scalars.items():
            parts.setdefault(tag, []).append(part)
        for tag, hs in events.histograms.items():
            histograms.setdefault(tag, []).extend(hs)
    raw = {
        tag: chunks[0] if len(chunks) == 1 else Series(
            np.concatenate([c.steps for c in chunks]),
            np.concatenate([c.values for c in chunks]),
        )
        for tag, chunks in parts.items()
    }
    try:
        return run_from_raw(raw, meta, name=folder.resolve().name or str(folder),
                            source=str(folder), warnings=warnings, histograms=histograms,
                            train_loss=train_loss, val_loss=val_loss)
    except KeyError as exc:  # a --train-loss / --val-loss the run does not have
        raise InputError(str(folder), str(exc.args[0])) from exc


__all__ = ["RUN_JSON", "is_lossdoctor_run_dir", "read_run_dir", "read_run_json", "run_from_raw"]
