"""What the logged learning rate says about the advice to give."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lossdoctor.findings import CATALOG
from lossdoctor.run import LR, Run

CONSTANT_RATIO = 1.01  # max/min below this: the rate never changed


def lr_summary(run: Run) -> tuple[float, float, bool] | None:
    """(first, last, constant) of the learning rate, when the log has it."""
    series = run.get(LR)
    if series is None:
        return None
    values = series.values[np.isfinite(series.values) & (series.values > 0)]
    if values.size == 0:
        return None
    constant = float(values.max()) <= CONSTANT_RATIO * float(values.min())
    return float(values[0]), float(values[-1]), constant


def fixes_with_lr(run: Run, code: str, evidence: dict[str, float | int | str]) -> Sequence[str]:
    """The catalog's fixes for `code`, led by one that names the run's own learning
    rate: decay it if it never changed, lower the starting value if it already decays."""
    fixes = list(CATALOG[code].fixes)
    summary = lr_summary(run)
    if summary is None:
        return fixes
    first, last, constant = summary
    evidence["lr_first"] = first
    evidence["lr_last"] = last
    if code == "lr-too-high":
        lead = (
            f"Lower the learning rate from {first:.3g} to {first / 10:.3g}-{first / 3:.3g} "
            "(3-10x)" + (", then decay it over time." if constant else
                         f"; it already decays to {last:.3g}, so the start is what hurts.")
        )
    elif constant:
        lead = (
            f"The learning rate stayed at {first:.3g} the whole run: add a decay schedule "
            "(e.g. divide it by 10 when the loss stops falling, or exponential/1/t decay; "
            f"lossdoctor.schedules.StepDecay(base_lr={first:.3g}, drop=0.1, every=...) "
            "works in Keras and PyTorch)."
        )
    else:
        lead = (
            f"The learning rate already decays ({first:.3g} -> {last:.3g}): start lower "
            "(by 3-10x) or decay sooner."
        )
    if code == "lr-too-high":
        return [lead, *fixes[1:]]  # the catalog's first fix is the generic "lower it"
    return [lead, *fixes]
