"""How far apart the live doctor's per-layer readings are, so that its own time stays
within a share of the training time.

A reading costs about the same whatever the model (a few fused norms, a copy of the
weights, some reductions per layer), while a training step can take 1 ms or 1 s, so
a fixed "every 10 steps" is free on a large model and several percent on a small one.
The doctor therefore times its own work (hooks, read-backs, writes) and the steps
between, and after the dense start stretches the period between readings to
`period = ceil(extra / (limit * base - plain))`, never below `every` nor above
`max_every`, where `extra` is the doctor's cost of one period beyond its cost on
plain steps, `base` the time of a step without the doctor's work and `plain` the
doctor's cost on a step where it reads nothing (a few microseconds).
"""

from __future__ import annotations

import math
import statistics
from collections import deque

EMA = 0.25  # weight of the newest period's cost: settles within a handful of periods
WINDOW = 15  # plain steps whose median is the step time (an epoch's validation pass,
# charged to the step after it, is an outlier there)


class OverheadBudget:
    """Feed it every step (`step`) and every reading (`period`); it answers the
    number of steps to the next reading.

    limit: the share of training time the doctor may take (0.02 = 2%); None keeps
        the period at `every`.
    """

    def __init__(self, limit: float | None, every: int, max_every: int) -> None:
        if limit is not None and not 0 < limit < 1:
            raise ValueError(f"0 < max_overhead < 1 must hold, but got {limit}")
        self.limit = limit
        self.every = every
        self.max_every = max(every, max_every)
        # Recent plain steps: seconds without the doctor's work, and the doctor's
        # seconds on them.
        self._bases: deque[float] = deque(maxlen=WINDOW)
        self._plains: deque[float] = deque(maxlen=WINDOW)
        self._base: float | None = None
        self._plain: float | None = None
        self._extra: float | None = None  # doctor seconds per period beyond `plain`s
        self._cost = 0.0  # doctor seconds since the last reading
        self._steps = 0  # steps since the last reading
        self.current = every

    def step(self, interval: float, cost: float, plain: bool) -> None:
        """One training step took `interval` seconds of wall time, `cost` of them in
        the doctor; `plain`: the doctor read nothing on it."""
        self._cost += cost
        self._steps += 1
        if plain:
            self._plains.append(cost)
            self._bases.append(max(interval - cost, 0.0))

    def period(self) -> int:
        """Steps from this reading to the next; closes the current period."""
        if self._bases:
            self._base = statistics.median(self._bases)
            self._plain = statistics.median(self._plains)
        if self._steps:
            plain = self._plain or 0.0
            self._extra = _ema(self._extra, max(self._cost - plain * self._steps, 0.0))
        self._cost, self._steps = 0.0, 0
        self.current = self._choose()
        return self.current

    def _choose(self) -> int:
        if self.limit is None or self._base is None or self._extra is None:
            return self.every
        spare = self.limit * self._base - (self._plain or 0.0)
        if spare <= 0:
            return self.max_every
        wanted = math.ceil(self._extra / spare)
        return min(max(self.every, wanted), self.max_every)

    def to_dict(self) -> dict[str, float | int | None]:
        return {"max_overhead": self.limit, "max_every": self.max_every,
                "period": self.current}


def _ema(old: float | None, new: float) -> float:
    return new if old is None else old + EMA * (new - old)
