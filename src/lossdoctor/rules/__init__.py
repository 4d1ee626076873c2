"""Rules: pure functions of a run, each returning findings (`[]` when the series it
needs is absent)."""

from __future__ import annotations

from collections.abc import Callable

from lossdoctor.findings import Finding
from lossdoctor.rules.curves import (
    barely_learning,
    generalization_gap,
    loss_spike,
    lr_too_high,
    lr_too_low,
)
from lossdoctor.rules.layers import LAYER_RULES
from lossdoctor.rules.numerics import frozen_loss, nan_loss
from lossdoctor.rules.regime import RegimeVerdict, assess_regime, regime_rule
from lossdoctor.rules.skipped_steps import skipped_steps
from lossdoctor.run import Run

Rule = Callable[[Run], list[Finding]]

# The regime is always assessed by diagnose(); regime_rule is the same verdict as a
# plain rule for callers composing their own list.
DEFAULT_RULES: tuple[Rule, ...] = (
    nan_loss,
    frozen_loss,
    skipped_steps,
    lr_too_high,
    lr_too_low,
    barely_learning,
    generalization_gap,
    loss_spike,
    # Per-layer signals of a live doctor, and its live-only findings (run.json).
    *LAYER_RULES,
)

__all__ = [
    "DEFAULT_RULES",
    "RegimeVerdict",
    "Rule",
    "assess_regime",
    "frozen_loss",
    "generalization_gap",
    "loss_spike",
    "lr_too_high",
    "lr_too_low",
    "nan_loss",
    "regime_rule",
]
