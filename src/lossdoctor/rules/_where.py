"""Turning an index into a series into the step/epoch a finding reports."""

from __future__ import annotations

from lossdoctor.run import Series


def locate(series: Series, index: int) -> tuple[int | None, int | None]:
    """(step, epoch) of point `index`. Epoch-level logs whose steps are the epochs
    report only the epoch, so a finding does not say the same number twice."""
    step = int(series.steps[index])
    if series.epochs is None:
        return step, None
    epoch = int(series.epochs[index])
    if (series.steps == series.epochs).all():
        return None, epoch
    return step, epoch
