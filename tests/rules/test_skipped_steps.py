"""skipped-steps on hand-made runs: which skips are a loss scaler at work and which
leave the model untrained (the live runs that record them are in
tests/live/test_torch_loops.py)."""

from __future__ import annotations

import numpy as np

from lossdoctor.findings import Severity
from lossdoctor.rules.skipped_steps import skipped_steps
from lossdoctor.run import SKIPPED_STEPS, TRAIN_LOSS_STEP, Run, Series


def run_with(skipped: list[int] | range, steps: int, read_every: int = 0) -> Run:
    """A run of `steps` steps whose `skipped` steps were dropped: the running count
    at each skip (as the PyTorch Doctor records it), or at every `read_every`-th step
    (as the Keras Doctor reads it)."""
    dropped = np.asarray(skipped, dtype=np.int64)
    series = {TRAIN_LOSS_STEP: Series.from_lists(np.arange(steps), np.linspace(2.3, 0.5, steps))}
    if read_every:
        at = np.arange(read_every - 1, steps, read_every)
        series[SKIPPED_STEPS] = Series.from_lists(at, np.searchsorted(dropped, at, "right"))
    elif dropped.size:
        series[SKIPPED_STEPS] = Series.from_lists(dropped, np.arange(1, dropped.size + 1))
    return Run("r", "mem", "rundir", series)


def test_no_skips_and_a_calibrating_scaler_are_quiet():
    assert skipped_steps(run_with([], 500)) == []
    # A scale started far too high comes down one halving per step, then holds.
    assert skipped_steps(run_with(range(40), 300)) == []
    # The rare skip when the scaler tries a larger scale.
    assert skipped_steps(run_with([0, 1, 2, 150, 290], 300)) == []


def test_a_scaler_that_keeps_skipping_is_critical():
    # Nine steps in ten dropped.
    skipped = [s for s in range(400) if s % 10]
    [finding] = skipped_steps(run_with(skipped, 400))
    assert finding.code == "skipped-steps" and finding.severity is Severity.CRITICAL
    assert finding.evidence["window_steps"] == 200
    assert finding.evidence["share"] == 0.9
    assert finding.evidence["skipped_before_first_update"] == 0
    assert finding.step == 201 and "90% of the last 200" in finding.title


def test_a_quarter_skipped_is_a_warning_from_the_first_skip_in_the_window():
    skipped = list(range(100, 300, 4))
    [finding] = skipped_steps(run_with(skipped, 300))
    assert finding.severity is Severity.WARNING
    assert finding.evidence["share"] == 0.25 and finding.step == 100


def test_every_step_skipped_is_critical_once_it_is_more_than_calibration():
    assert skipped_steps(run_with(range(20), 20)) == []
    [finding] = skipped_steps(run_with(range(64), 64))
    assert finding.severity is Severity.CRITICAL and finding.step == 0
    assert "Every one of the 64" in finding.title


def test_too_few_steps_after_the_first_update_say_nothing_yet():
    assert skipped_steps(run_with([1, 3, 5, 7, 9], 12)) == []


def test_a_count_read_now_and_then_tells_the_same():
    # Read every 5 steps: the calibration at the start is still told apart...
    assert skipped_steps(run_with(range(40), 300, read_every=5)) == []
    # ... and nine drops in ten are still critical.
    skipped = [s for s in range(400) if s % 10]
    [finding] = skipped_steps(run_with(skipped, 400, read_every=57))
    assert finding.severity is Severity.CRITICAL
    assert 0.85 < float(finding.evidence["share"]) < 0.95
