"""The framework-neutral core of a live doctor: stores scalars, turns exceptions in
signals into one `monitor-error` each, records live-only findings (nan-origin), and
reports each finding once as it appears."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

from lossdoctor.diagnosis import Diagnosis, diagnose
from lossdoctor.findings import Finding, Severity
from lossdoctor.live.printer import default_writer, format_line
from lossdoctor.live.schedule import Schedule
from lossdoctor.live.store import RunStore

# Both doctors bin histograms on the device into this many equal bins and read back
# rows of [start, width, counts].
HISTOGRAM_BINS = 30


class StopTraining(Exception):  # named for what the user's loop should do
    """Raised from `Doctor.log()` / `log_epoch()` when `stop_on_critical=True` and a
    critical finding appeared. Never raised inside framework hooks."""

    def __init__(self, finding: Finding):
        super().__init__(format_line(finding))
        self.finding = finding


class LiveMonitor:
    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        *,
        framework: str,
        schedule: Schedule | None = None,
        meta: Mapping[str, Any] | None = None,
        on_finding: Callable[[Finding], None] | None = None,
        stop_on_critical: bool = False,
        verbose: bool = True,
    ) -> None:
        self.schedule = schedule or Schedule()
        self.store = RunStore(run_dir, {"framework": framework,
                                        "schedule": self.schedule.to_dict(), **(meta or {})})
        self.on_finding = on_finding
        self.stop_on_critical = stop_on_critical
        self.verbose = verbose
        self.should_stop = False  # True once a critical finding appeared (stop_on_critical)
        self.stop_finding: Finding | None = None
        # A finding shows again when it grows more severe at the same place (a layer's
        # dead units turning into the whole layer): stop_on_critical must see that.
        self._seen: set[tuple[str, str | None, Severity]] = set()
        self._errored: set[str] = set()
        self._write = default_writer()

    # --- findings -------------------------------------------------------------------
    def _emit(self, findings: list[Finding]) -> None:
        for f in findings:
            key = (f.code, f.layer, f.severity)
            if key in self._seen:
                continue
            self._seen.add(key)
            if self.verbose:
                self._write(format_line(f))
            if self.on_finding is not None:
                try:
                    self.on_finding(f)
                except Exception as exc:  # the user's callback must not stop training
                    self.monitor_error("on_finding", exc)
            if self.stop_on_critical and f.severity is Severity.CRITICAL and not self.should_stop:
                self.should_stop = True
                self.stop_finding = f

    def live_finding(self, code: str, *, step: int | None = None, epoch: int | None = None,
                     layer: str | None = None, evidence: Mapping[str, Any] | None = None,
                     title: str | None = None) -> None:
        """Record a finding only a live monitor can make (it lands in run.json)."""
        entry: dict[str, Any] = {"code": code, "step": step, "epoch": epoch, "layer": layer,
                                 "evidence": dict(evidence or {})}
        if title:
            entry["title"] = title
        self.store.meta["live_findings"].append(entry)
        self.store.write_meta()
        from lossdoctor.rules.layers import finding_from_entry

        self._emit([finding_from_entry(entry)])

    def note(self, signal: str, text: str, level: str = "info") -> None:
        """A note in run.json's `notes` (a signal skipped and why, where a stage
        began), shown with the report; never raises."""
        with contextlib.suppress(Exception):
            self.store.meta.setdefault("notes", []).append(
                {"level": level, "signal": signal, "note": text})
            self.store.write_meta()

    def has_live_finding(self, code: str) -> bool:
        return any(e.get("code") == code for e in self.store.meta["live_findings"])

    def monitor_error(self, signal: str, exc: BaseException) -> None:
        """One `monitor-error` per signal; never raises."""
        if signal in self._errored:
            return
        self._errored.add(signal)
        # The store itself failing: stay silent rather than break training.
        with contextlib.suppress(Exception):
            self.live_finding(
                "monitor-error",
                evidence={"signal": signal, "error": f"{type(exc).__name__}: {exc}"[:500]},
                title=f"Signal {signal!r} could not be computed; training went on",
            )

    @contextmanager
    def guard(self, signal: str) -> Iterator[None]:
        """Run a signal's code; an exception becomes a monitor-error, not a crash."""
        try:
            yield
        except Exception as exc:
            self.monitor_error(signal, exc)

    def check(self) -> Diagnosis | None:
        """Diagnose what has been recorded so far and report new findings."""
        with self.guard("diagnose"):
            d = self.report()
            self._emit(d.findings)
            return d
        return None

    def raise_if_stopping(self) -> None:
        if self.should_stop and self.stop_finding is not None:
            finding, self.stop_finding = self.stop_finding, None
            raise StopTraining(finding)

    # --- store ----------------------------------------------------------------------
    def scalar(self, tag: str, value: float, step: int) -> None:
        self.store.add_scalar(tag, value, step)

    def histogram(self, tag: str, edges: Any, counts: Any, step: int) -> None:
        """A binned histogram (see `RunStore.histogram`)."""
        self.store.histogram(tag, edges, counts, step)

    def histogram_row(self, tag: str, row: np.ndarray, step: int) -> None:
        """A histogram read back as [start, width, `HISTOGRAM_BINS` counts] of equal
        bins; skipped when the tensor held no finite value."""
        start, width, counts = float(row[0]), float(row[1]), row[2:]
        if not (np.isfinite(start) and np.isfinite(width)) or not counts.any():
            return
        self.histogram(tag, start + width * np.linspace(0.0, 1.0, len(counts) + 1), counts,
                       step)

    def flush(self) -> None:
        with self.guard("flush"):
            self.store.flush()

    def report(self) -> Diagnosis:
        return diagnose(self.store.to_run())

    @property
    def closed(self) -> bool:
        return self.store.closed

    def close(self) -> None:
        if self.closed:
            return
        with self.guard("close"):
            self.store.close()

    def reopen(self) -> None:
        """Go on recording after `close()`; findings already reported stay reported."""
        self.store.reopen()
