"""Diagnosis-aware pruning: stop a trial when the doctor reads its curves as hopeless,
with the finding code as the reason. An Optuna pruner, so it composes with Optuna's
own: `DiagnosisPruner(optuna.pruners.MedianPruner())` prunes if either says so.

Imported only when optuna is installed (the `search` extra).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import optuna

from lossdoctor.diagnosis import diagnose
from lossdoctor.rules._stats import MIN_RELATIVE_CHANGE
from lossdoctor.search.reporter import INNER_KEPT, live_run, set_reason

# Findings that mean more epochs will not help, whatever the other trials did.
FATAL = ("nan-loss", "softmax-overflow", "diverging", "constant-loss")
# Findings that mean "slow or stuck": fatal only when far behind the best trial.
BEHIND = ("plateau", "lr-too-low")
# Epochs before a trial's own curve is read as stuck (a trend needs 3 points).
TREND_POINTS = 3


class DiagnosisPruner(optuna.pruners.BasePruner):
    """Prune a trial the doctor finds diverging, NaN, softmax-overflowed or frozen at a
    constant, as soon as the finding fires (each rule waits for the points it needs to
    be sure: a NaN needs one); or stuck while its objective is far worse than the
    best trial's at the same epoch (`behind_factor`: the loss is that many times the
    best one; for an accuracy, the error rate is). "Stuck" is, from 3 epochs on, an
    objective whose best value has not moved 5% of its level from the first epoch's
    (reason "plateau"); and, from `min_epochs` on, the doctor's plateau /
    lr-too-low findings on the whole run (which tell converged from stuck).

    `inner` (e.g. MedianPruner) is asked too; its verdict is recorded as its name. It
    judges on the study as it would have been without the diagnosis: a trial the
    diagnosis stopped while `inner` would have let it run counts, for `inner`, as a
    finished trial that stayed at its last value (what "hopeless" asserts). Without
    this, such trials would delay MedianPruner's startup (it counts finished trials
    only) and drop out of its median, and the pair could train more than the median
    pruner alone.
    """

    def __init__(self, inner: Any = None, *, min_epochs: int = 4,
                 behind_factor: float = 2.0) -> None:
        self.inner = inner
        self.min_epochs = min_epochs
        self.behind_factor = behind_factor

    def prune(self, study: Any, trial: Any) -> bool:
        reason = self.reason(study, trial)
        inner = self.inner is not None and bool(self.inner.prune(_InnerView(study), trial))
        if reason is None and inner:
            reason = type(self.inner).__name__.removesuffix("Pruner").lower()
        if reason is not None:
            # Recorded on the trial by its reporter, through Optuna's public API (a
            # pruner is handed a FrozenTrial, which cannot take user attributes).
            set_reason((study.study_name, trial.number), reason,
                       inner_kept=self.inner is not None and not inner)
        return reason is not None

    def reason(self, study: Any, trial: Any) -> str | None:
        """The finding code that ends `trial`, or None to go on."""
        values = trial.intermediate_values
        if not values:
            return None
        step = max(values)
        if not math.isfinite(values[step]):
            return "nan-loss"
        run = live_run((study.study_name, trial.number))
        diagnosis = diagnose(run) if run is not None else None
        codes: set[str] = set()
        if diagnosis is not None:
            codes = set(diagnosis.codes()) | {diagnosis.regime}
            for code in FATAL:  # the rules fire only once they are sure
                if code in codes:
                    return code
        if (len(values) >= TREND_POINTS and self._stuck(study, values)
                and self._far_behind(study, trial, step, values[step])):
            return "plateau"
        if len(values) < self.min_epochs or diagnosis is None:
            return None
        for code in BEHIND:
            if code in codes and self._far_behind(study, trial, step, values[step]):
                return code
        return None

    def _stuck(self, study: Any, values: dict[int, float]) -> bool:
        """The best value so far improved on the first epoch's by less than 5% of its
        level (the doctor's size test for a trend, MIN_RELATIVE_CHANGE; for a maximized
        score, measured on the error rate 1 - score). A curve that fell a long way and
        then levelled off is not stuck: telling converged from a plateau is the
        regime's job, from `min_epochs` on."""
        y = np.array([values[s] for s in sorted(values)], dtype=np.float64)
        if not np.isfinite(y).all():
            return False
        if study.direction == optuna.study.StudyDirection.MAXIMIZE:
            y = 1.0 - y
        first = float(y[0])
        return first - float(np.min(y)) < MIN_RELATIVE_CHANGE * abs(first)

    def _far_behind(self, study: Any, trial: Any, step: int, value: float) -> bool:
        maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
        best: float | None = None
        for other in study.get_trials(deepcopy=False,
                                      states=(optuna.trial.TrialState.COMPLETE,)):
            v = other.intermediate_values.get(step)
            if v is None or not math.isfinite(v) or other.number == trial.number:
                continue
            best = v if best is None else (max(best, v) if maximize else min(best, v))
        if best is None:
            return False
        if maximize:  # a score such as accuracy: compare error rates
            return value < best and (1.0 - value) > self.behind_factor * max(1.0 - best, 1e-3)
        return value > best and value - best > (self.behind_factor - 1.0) * abs(best)


class _InnerView:
    """The study as the inner pruner would have seen it alone: trials the diagnosis
    stopped while the inner pruner would have kept them are listed as complete, their
    last reported value carried on to the last epoch any complete trial reached."""

    def __init__(self, study: Any) -> None:
        self._study = study

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list[Any]:
        state = optuna.trial.TrialState
        trials = self._study.get_trials(deepcopy=deepcopy, states=states)
        if states is not None and state.COMPLETE not in states:
            return list(trials)
        pruned = [t for t in self._study.get_trials(deepcopy=False, states=(state.PRUNED,))
                  if t.user_attrs.get(INNER_KEPT)]
        if not pruned:
            return list(trials)
        done = self._study.get_trials(deepcopy=False, states=(state.COMPLETE,))
        last = max((t.last_step for t in done if t.last_step is not None), default=None)
        out = [t for t in trials if t.number not in {p.number for p in pruned}]
        for t in pruned:
            shadow = copy.copy(t)
            shadow.state = state.COMPLETE
            values = dict(t.intermediate_values)
            if values and last is not None:
                final = values[max(values)]
                values.update({s: final for s in range(max(values) + 1, last + 1)})
            shadow.intermediate_values = values
            out.append(shadow)
        return sorted(out, key=lambda t: t.number)


__all__ = ["BEHIND", "FATAL", "INNER_KEPT", "DiagnosisPruner"]
