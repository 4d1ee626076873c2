"""How far apart the live doctor's per-layer readings are, so that its cost stays
within a share of the training time.

A reading costs about the same whatever the model (a few fused norms, a copy of the
weights, some reductions per layer), while a training step can take 1 ms or 1 s, so
a fixed "every 10 steps" is free on a large model and several percent on a small one.

The cost of a reading is measured on the wall clock, not only by timing the doctor's
own code: forward hooks slow the modules down, and the step after a reading runs
with colder caches, costs no timer inside the doctor sees (on a small CNN on a CPU
they were about a third of the total). So each step is labelled by the caller:
"plain" (the doctor read nothing on it or on the step before), "edge" (the step
after an epoch ended, whose time holds the user's validation; left out), or a kind
of work (a reading, a reading with activations, a read-back, the step after one).
The step time `base` is the median of recent plain steps; what a kind of work costs
is the median of what its recent steps took beyond `base` (robust to the odd step
the OS stalls); a period's cost `extra` is the sum of that over its work steps
(between what the doctor timed itself in the period and `MAX_HIDDEN_FACTOR` times
that), averaged over recent periods; `plain` is the doctor's own time on a plain step
(a few microseconds). After the dense start the period between readings is
`ceil(extra / (limit * base - plain))`, never below `every` nor above `max_every`.
"""

from __future__ import annotations

import math
import statistics
from collections import deque

from lossdoctor.live.schedule import Schedule

WINDOW = 31  # plain steps whose median is the step time
WORK_WINDOW = 9  # steps of one kind of work whose median is its cost
MIN_WORK = 3  # ... once there are this many (one stalled step cannot be the median)
# A period's wall-clock cost is taken between what the doctor timed and this many times
# that: on a CPU the hidden part was about 0.6x the timed one; where steps jitter by
# more than the doctor costs (large models), the wall clock cannot tell, and the cap
# keeps that jitter from spacing readings out.
MAX_HIDDEN_FACTOR = 3.0
PERIODS = 8  # recent periods whose mean cost sets the next (readings of different
# cost alternate: activations every other reading, a probe every few)


class OverheadBudget:
    """Feed it every step (`step`) and every reading (`period`); it answers the
    number of steps to the next reading.

    limit: the share of training time the doctor may take (0.02 = 2%); None keeps
        the period at `every`.
    max_every: the longest period (default 10 x `every`).
    """

    def __init__(self, limit: float | None, every: int, max_every: int | None = None) -> None:
        if limit is not None and not 0 < limit < 1:
            raise ValueError(f"0 < max_overhead < 1 must hold, but got {limit}")
        self.limit = limit
        self.every = every
        self.max_every = max(every, 10 * every if max_every is None else max_every)
        self._bases: deque[float] = deque(maxlen=WINDOW)  # plain steps, doctor excluded
        self._plains: deque[float] = deque(maxlen=WINDOW)  # doctor seconds on them
        self._works: dict[str, deque[float]] = {}  # per kind: steps beyond `base`
        self._counts: dict[str, int] = {}  # work steps of each kind in this period
        self._timed = 0.0  # the doctor's own time in this period
        self._extras: deque[float] = deque(maxlen=PERIODS)  # recent periods' costs
        self.spent = 0.0  # estimated doctor seconds, all steps
        self.own = 0.0  # doctor seconds its own timers saw, all steps
        self.total_time = 0.0  # wall seconds, all steps
        self.current = every

    def step(self, interval: float, cost: float, kind: str) -> None:
        """One training step took `interval` seconds of wall time, `cost` of them
        inside the doctor; kind: "plain", "edge", or any other name for a kind of
        work (see the module doc)."""
        self.own += cost
        self.total_time += interval
        if kind == "plain":
            self._plains.append(cost)
            self._bases.append(max(interval - cost, 0.0))
            self.spent += cost
        else:
            if kind != "edge" and self._bases:
                past = self._works.setdefault(kind, deque(maxlen=WORK_WINDOW))
                past.append(interval - statistics.median(self._bases))
                self._counts[kind] = self._counts.get(kind, 0) + 1
            self._timed += cost  # an edge, or work before any plain step: only this

    def period(self) -> int:
        """Steps from this reading to the next; closes the current period."""
        if all(len(self._works[kind]) >= MIN_WORK for kind in self._counts):
            extra = sum(n * statistics.median(self._works[kind])
                        for kind, n in self._counts.items())
        else:
            extra = 0.0  # too few steps of some kind yet: what the doctor timed
        extra = min(max(extra, self._timed), MAX_HIDDEN_FACTOR * self._timed)
        self._extras.append(extra)
        self.spent += extra
        self._counts, self._timed = {}, 0.0
        self.current = self._choose()
        return self.current

    def _choose(self) -> int:
        if self.limit is None or not self._bases or not self._extras:
            return self.every
        base = statistics.median(self._bases)
        spare = self.limit * base - statistics.median(self._plains)
        if spare <= 0:
            return self.max_every
        wanted = math.ceil(statistics.fmean(self._extras) / spare)
        return min(max(self.every, wanted), self.max_every)

    def share(self) -> float | None:
        """The doctor's estimated share of the wall time so far (the open period at
        what the doctor timed)."""
        spent = self.spent + self._timed
        return spent / self.total_time if self.total_time > 0 else None

    def to_dict(self) -> dict[str, float | int | None]:
        share = self.share()
        return {"max_overhead": self.limit, "max_every": self.max_every,
                "period": self.current,
                "measured_share": None if share is None else round(share, 5),
                "own_time_share": round(self.own / self.total_time, 5)
                if self.total_time > 0 else None}



class ReadingPlan:
    """When per-layer readings are due: every `dense_every` steps during the dense
    start, then `budget.period()` steps after each reading. The dense start counts from
    `origin` (0, or where a later stage of training began: `restart`)."""

    def __init__(self, schedule: Schedule, budget: OverheadBudget) -> None:
        self.schedule = schedule
        self.budget = budget
        self.period = schedule.every  # steps between readings after the dense start
        self.origin = 0
        self._next = schedule.dense_steps
        self._apply_every, self._first_apply = 1, 0  # see `align`
        self._owed = False  # a reading fell due on a step without an update

    def align(self, apply_every: int, first_apply: int) -> None:
        """The optimizer updates the weights only on every `apply_every`-th step from
        step `first_apply` on (gradient accumulation). A reading that falls due on a
        step in between is taken on the next update step instead: the weights do not
        move in between, so a reading there would see an update of zero."""
        self._apply_every, self._first_apply = max(apply_every, 1), first_apply
        self._owed = False

    def due(self, step: int) -> bool:
        at = step - self.origin
        if at < self.schedule.dense_steps:
            scheduled = at % self.schedule.dense_every == 0
        else:
            scheduled = step >= self._next
        if self._apply_every == 1:
            return scheduled
        self._owed = self._owed or scheduled
        return self._owed and (step - self._first_apply) % self._apply_every == 0

    def next_due(self, step: int) -> int:
        """The first step from `step` on at which a reading is due."""
        dense, every = self.schedule.dense_steps, self.schedule.dense_every
        at = step - self.origin
        if at < dense:
            first = -(-at // every) * every
            if first < dense:
                return self.origin + first
        return max(step, self._next)

    def restart(self, step: int) -> None:
        """A later stage of training begins at `step`: a dense start again from there."""
        self.origin = step
        self._next = step + self.schedule.dense_steps
        self._owed = False

    def taken(self, step: int) -> None:
        """A reading was taken at `step`: after the dense start, the next is one
        budget period on."""
        self._owed = False
        if step - self.origin >= self.schedule.dense_steps:
            self.period = self.budget.period()
            self._next = step + self.period

    @property
    def stretch(self) -> int:
        """How many times the asked schedule the budget spaces readings out (for
        rarer readings such as histograms and probes)."""
        return max(1, self.period // self.schedule.every)
