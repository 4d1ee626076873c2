"""Optimizer steps skipped for non-finite gradients: a loss scaler that keeps
dropping steps, or a loop whose guard does."""

from __future__ import annotations

import numpy as np

from lossdoctor.findings import Finding, Severity, make_finding
from lossdoctor.run import SKIPPED_STEP, Run

WINDOW = 200  # the latest steps whose skipped share is judged
MIN_WINDOW = 20  # ... once there are this many after the first update
MIN_SKIPPED = 5
WARN_SHARE = 0.2
CRITICAL_SHARE = 0.5  # most steps make no update: training has all but stopped
# Every step skipped from the start: a scaler calibrating from 2**16 down needs at
# most a few dozen halvings, so this many with no update at all is not calibration.
MIN_ALL_SKIPPED = 32


def _leading_run(steps: np.ndarray) -> int:
    """How many of the sorted unique `steps` are 0, 1, 2, ... without a gap: the skips
    before the first update."""
    expected = np.arange(steps.size)
    gaps = np.flatnonzero(steps != expected)
    return int(gaps[0]) if gaps.size else int(steps.size)


def skipped_steps(run: Run) -> list[Finding]:
    """Too many of the latest steps skipped (`WARN_SHARE` of up to `WINDOW` steps after
    the first update), or no update at all in `MIN_ALL_SKIPPED` steps. The skips
    before the first update are a scaler bringing its scale down and are not
    counted."""
    series = run.get(SKIPPED_STEP)
    if series is None or not len(series):
        return []
    skipped = np.unique(series.steps[series.values > 0])
    if not skipped.size:
        return []
    loss = run.densest_train_loss()
    last = int(skipped[-1])
    if loss is not None and len(loss):
        last = max(last, int(loss.steps[-1]))
    steps = last + 1
    before_first_update = _leading_run(skipped)
    evidence: dict[str, float | int | str] = {
        "skipped_steps": int(skipped.size), "steps": steps,
        "skipped_before_first_update": before_first_update,
    }
    if before_first_update == steps:
        if steps < MIN_ALL_SKIPPED:
            return []
        return [make_finding(
            "skipped-steps", step=0, evidence=evidence, severity=Severity.CRITICAL,
            title=f"Every one of the {steps} optimizer steps so far was skipped: the "
            "gradients were never finite, so the weights have not changed")]
    start = max(before_first_update, steps - WINDOW)
    window = steps - start
    recent = skipped[skipped >= start]
    if window < MIN_WINDOW or recent.size < MIN_SKIPPED:
        return []
    share = recent.size / window
    if share < WARN_SHARE:
        return []
    evidence.update({"window_from_step": start, "window_steps": window,
                     "skipped_in_window": int(recent.size), "share": round(share, 4)})
    return [make_finding(
        "skipped-steps", step=int(recent[0]), evidence=evidence,
        severity=Severity.CRITICAL if share >= CRITICAL_SHARE else None,
        title=f"{share:.0%} of the last {window} optimizer steps were skipped: their "
        "gradients were not finite")]
