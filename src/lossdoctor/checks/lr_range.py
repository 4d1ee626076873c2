"""The learning-rate range test, framework-neutral part: the LR sequence, smoothing,
the stop rule and the suggested learning rate.

Train a copy for a few hundred steps while the learning rate grows exponentially
from `start` to `end`; record the loss of each step. The loss first stays flat (LR
too small to matter), then falls (useful LRs), then blows up. The suggestion is
the LR where the smoothed loss falls fastest against log(LR), kept at or below a
tenth of the LR of the lowest loss (the lowest point is already at the edge of
stability).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

SMOOTHING = 0.9  # EMA of the loss (bias-corrected), as in fastai's finder
DIVERGE_FACTOR = 4.0  # stop once the smoothed loss exceeds 4x its best


def lr_sequence(start: float, end: float, steps: int) -> np.ndarray:
    if not (0 < start < end):
        raise ValueError(f"0 < start < end must hold, but got start={start}, end={end}")
    if steps < 2:
        raise ValueError(f"steps must be at least 2, but got {steps}")
    return np.asarray(np.geomspace(start, end, steps), dtype=np.float64)


class Smoother:
    def __init__(self, beta: float = SMOOTHING) -> None:
        self.beta = beta
        self.avg = 0.0
        self.n = 0
        self.best = math.inf

    def add(self, loss: float) -> tuple[float, bool]:
        """(smoothed loss, whether to stop: NaN or diverged)."""
        self.n += 1
        self.avg = self.beta * self.avg + (1 - self.beta) * loss
        smooth = self.avg / (1 - self.beta**self.n)
        if not math.isfinite(smooth):
            return smooth, True
        stop = self.n > 5 and smooth > DIVERGE_FACTOR * self.best
        self.best = min(self.best, smooth)
        return smooth, stop


@dataclass
class LRRangeResult:
    lrs: list[float]
    losses: list[float]  # raw loss of each step
    smoothed: list[float]
    suggested_lr: float
    min_loss_lr: float
    steepest_lr: float
    stopped_early: bool
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "lrs": self.lrs,
            "losses": [v if math.isfinite(v) else None for v in self.losses],
            "smoothed": [v if math.isfinite(v) else None for v in self.smoothed],
            "suggested_lr": self.suggested_lr,
            "min_loss_lr": self.min_loss_lr,
            "steepest_lr": self.steepest_lr,
            "stopped_early": self.stopped_early,
            "notes": list(self.notes),
        }


def suggest(lrs: list[float], losses: list[float], smoothed: list[float],
            stopped_early: bool) -> LRRangeResult:
    notes: list[str] = []
    s = np.asarray(smoothed, dtype=np.float64)
    lr = np.asarray(lrs[: len(s)], dtype=np.float64)
    finite = np.isfinite(s)
    if finite.sum() < 3:
        raise ValueError("the LR range test produced fewer than 3 finite losses; lower "
                         "start_lr")
    s_f, lr_f = s[finite], lr[finite]
    i_min = int(np.argmin(s_f))
    min_lr = float(lr_f[i_min])
    # Steepest fall of the smoothed loss against log(lr), before the minimum.
    if i_min >= 2:
        slope = np.gradient(s_f[: i_min + 1], np.log(lr_f[: i_min + 1]))
        steep_lr = float(lr_f[int(np.argmin(slope))])
    else:
        steep_lr = min_lr / 10
        notes.append("The loss was lowest at the very start: start_lr is too high or "
                     "the model does not learn; try a lower start_lr.")
    suggested = min(steep_lr, min_lr / 10) if i_min >= 2 else steep_lr
    if not stopped_early and i_min == len(s_f) - 1:
        notes.append("The loss was still falling at end_lr: raise end_lr to see where "
                     "it blows up.")
    return LRRangeResult(
        lrs=[float(v) for v in lrs[: len(s)]],
        losses=[float(v) for v in losses],
        smoothed=[float(v) for v in s],
        suggested_lr=suggested,
        min_loss_lr=min_lr,
        steepest_lr=steep_lr,
        stopped_early=stopped_early,
        notes=notes,
    )
