"""Optimizer steps skipped for non-finite gradients: a loss scaler that keeps
dropping steps, or a loop whose guard does."""

from __future__ import annotations

import numpy as np

from lossdoctor.findings import Finding, Severity, make_finding
from lossdoctor.run import SKIPPED_STEPS, Run

WINDOW = 200  # the latest steps whose skipped share is judged
MIN_WINDOW = 20  # ... once there are this many after the first update
MIN_SKIPPED = 5
WARN_SHARE = 0.2
CRITICAL_SHARE = 0.5  # most steps make no update: training has all but stopped
# Every step skipped from the start: a scaler calibrating from 2**16 down needs at
# most a few dozen halvings, so this many with no update at all is not calibration.
MIN_ALL_SKIPPED = 32


def skipped_steps(run: Run) -> list[Finding]:
    """Too many of the latest steps skipped (`WARN_SHARE` of up to `WINDOW` steps after
    the first update), or no update at all in `MIN_ALL_SKIPPED` steps. The skips
    before the first update are a scaler bringing its scale down and are not
    counted. Reads the running count `SKIPPED_STEPS`; where it was read only now and
    then, the window starts after the last reading before it (a little longer)."""
    series = run.get(SKIPPED_STEPS)
    if series is None or not len(series):
        return []
    at = series.steps.astype(np.int64)
    counts = np.maximum.accumulate(np.nan_to_num(series.values, nan=0.0))
    total = int(counts[-1])
    if total <= 0:
        return []
    loss = run.densest_train_loss()
    last = int(at[-1]) if loss is None or not len(loss) else max(int(at[-1]), int(loss.steps[-1]))
    steps = last + 1
    # A count equal to the steps so far: every one of them was skipped (a prefix).
    all_skipped = np.flatnonzero(counts >= at + 1)
    before_first_update = int(at[all_skipped[-1]]) + 1 if all_skipped.size else 0
    evidence: dict[str, float | int | str] = {
        "skipped_steps": total, "steps": steps,
        "skipped_before_first_update": before_first_update,
    }
    if before_first_update >= steps:
        if steps < MIN_ALL_SKIPPED:
            return []
        return [make_finding(
            "skipped-steps", step=0, evidence=evidence, severity=Severity.CRITICAL,
            title=f"Every one of the {steps} optimizer steps so far was skipped: the "
            "gradients were never finite, so the weights have not changed")]
    start = max(before_first_update, steps - WINDOW)
    earlier = np.flatnonzero(at < start)
    before = 0.0
    if earlier.size:  # the window starts right after the count read last before it
        start, before = int(at[earlier[-1]]) + 1, float(counts[earlier[-1]])
    window = steps - start
    skipped = total - before
    if window < MIN_WINDOW or skipped < MIN_SKIPPED:
        return []
    share = skipped / window
    if share < WARN_SHARE:
        return []
    first = int(at[np.flatnonzero((at >= start) & (counts > before))[0]])
    evidence.update({"window_from_step": start, "window_steps": window,
                     "skipped_in_window": int(skipped), "share": round(share, 4)})
    return [make_finding(
        "skipped-steps", step=first, evidence=evidence,
        severity=Severity.CRITICAL if share >= CRITICAL_SHARE else None,
        title=f"{share:.0%} of the last {window} optimizer steps were skipped: their "
        "gradients were not finite")]
