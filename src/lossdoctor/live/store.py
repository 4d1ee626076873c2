"""A run directory written while training: TensorBoard event files for every scalar and
an atomically replaced run.json for metadata and live-only findings.

Crash safety: scalars reach the file on `flush()` (the OS keeps them after a
`kill -9`); run.json is written to a temporary file and `os.replace`d, so a reader sees
the old or the new one, never half of one. The same values are kept in memory (rounded
to float32, as the event file stores them), so the report made in the process equals
the one read back from disk.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import struct
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from lossdoctor.run import Histogram, Run, Series
from lossdoctor.sources.rundir import MARKER, RUN_JSON, run_from_raw
from lossdoctor.sources.tbwriter import EventFileWriter

SCHEMA_VERSION = 1
_F32 = struct.Struct("<f")


def as_float32(value: float) -> float:
    """`value` as the event file will hold it (float32; beyond its range, inf)."""
    try:
        return float(_F32.unpack(_F32.pack(value))[0])
    except OverflowError:
        return math.copysign(math.inf, value)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    text = json.dumps(_json_safe(data), indent=1, sort_keys=False)
    fd, tmp = tempfile.mkstemp(prefix=".run.", suffix=".json.tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class RunStore:
    """Scalars and metadata of one run, on disk and in memory."""

    def __init__(self, run_dir: str | os.PathLike[str], meta: Mapping[str, Any] | None = None):
        self.run_dir = Path(run_dir)
        if (self.run_dir / RUN_JSON).exists():
            # Never write over a run: its findings would be mixed with this one's.
            raise FileExistsError(
                f"{self.run_dir} already holds a lossdoctor run ({RUN_JSON} exists); "
                "choose a new run_dir"
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.meta: dict[str, Any] = {MARKER: SCHEMA_VERSION, "status": "running",
                                     "started": time.time(), "live_findings": []}
        self.meta.update(meta or {})
        self._writer = EventFileWriter(self.run_dir, max_queue=1 << 30)
        self.closed = False
        self._steps: dict[str, list[int]] = {}
        self._values: dict[str, list[float]] = {}
        self._histograms: dict[str, list[Histogram]] = {}
        self.write_meta()

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        v = as_float32(float(value))
        self._writer.add_scalar(tag, v, step)
        self._steps.setdefault(tag, []).append(int(step))
        self._values.setdefault(tag, []).append(v)

    def add_scalars(self, tag: str, steps: list[int], values: np.ndarray) -> None:
        with np.errstate(over="ignore"):  # beyond float32: inf, as the file stores it
            vs = np.asarray(values, dtype=np.float64).astype(np.float32).astype(
                np.float64).tolist()
        self._writer.add_scalars(tag, steps, vs)
        self._steps.setdefault(tag, []).extend(int(s) for s in steps)
        self._values.setdefault(tag, []).extend(vs)

    def histogram(self, tag: str, edges: np.ndarray, counts: np.ndarray, step: int) -> None:
        """A histogram already binned: `counts[i]` values in [edges[i], edges[i+1]]
        (len(edges) == len(counts) + 1), written as TensorBoard's HistogramProto and kept
        in memory as a reader of the event file sees it."""
        e = np.asarray(edges, dtype=np.float64).reshape(-1)
        c = np.asarray(counts, dtype=np.float64).reshape(-1)
        self._writer.add_histogram_counts(tag, e, c, step)
        self._histograms.setdefault(tag, []).append(Histogram(
            step=int(step), bucket_limit=e[1:].copy(), bucket=c.copy(), min=float(e[0]),
            max=float(e[-1]), num=float(c.sum())))

    def flush(self) -> None:
        self._writer.flush()

    def write_meta(self) -> None:
        write_json_atomic(self.run_dir / RUN_JSON, self.meta)

    def raw(self) -> dict[str, Series]:
        return {tag: Series.from_lists(self._steps[tag], self._values[tag])
                for tag in self._steps}

    def to_run(self) -> Run:
        # Round-trip meta through JSON so it matches what a reader of run.json sees.
        meta = json.loads(json.dumps(_json_safe(self.meta)))
        return run_from_raw(self.raw(), meta, name=self.run_dir.resolve().name,
                            source=str(self.run_dir), histograms=self._histograms)

    def close(self) -> None:
        self.closed = True
        self.meta["status"] = "closed"
        self.meta["ended"] = time.time()
        self._writer.close()
        self.write_meta()

    def reopen(self) -> None:
        """Record again after `close()` (a later stage of the same training): into a
        new event file beside the first (readers join them in name order), with what
        was recorded before still in memory."""
        if not self.closed:
            return
        self._writer = EventFileWriter(self.run_dir, max_queue=1 << 30)
        self.closed = False
        self.meta["status"] = "running"
        self.meta.pop("ended", None)
        self.write_meta()
