"""Diagnosis-aware pruning: stop a trial when the doctor reads its curves as hopeless,
with the finding code as the reason. An Optuna pruner, so it composes with Optuna's
own: `DiagnosisPruner(optuna.pruners.MedianPruner())` prunes if either says so.

Imported only when optuna is installed (the `search` extra).
"""

from __future__ import annotations

import math
from typing import Any

import optuna

from lossdoctor.diagnosis import diagnose
from lossdoctor.search.reporter import live_run, set_reason

# Findings that mean more epochs will not help, whatever the other trials did.
FATAL = ("nan-loss", "softmax-overflow", "diverging", "constant-loss")
# Findings that mean "slow or stuck": fatal only when far behind the best trial.
BEHIND = ("plateau", "lr-too-low")


class DiagnosisPruner(optuna.pruners.BasePruner):
    """Prune a trial the doctor finds diverging, NaN, softmax-overflowed or frozen at a
    constant; or plateaued / learning too slowly while its objective is far worse
    than the best trial's at the same epoch (`behind_factor`: the loss is that many
    times the best one; for an accuracy, the error rate is).

    `inner` (e.g. MedianPruner) is asked too; its verdict is recorded as its name.
    Curves are diagnosed from `min_epochs` reported epochs on (the regime needs 4).
    """

    def __init__(self, inner: Any = None, *, min_epochs: int = 4,
                 behind_factor: float = 2.0) -> None:
        self.inner = inner
        self.min_epochs = min_epochs
        self.behind_factor = behind_factor

    def prune(self, study: Any, trial: Any) -> bool:
        reason = self.reason(study, trial)
        if reason is None and self.inner is not None and self.inner.prune(study, trial):
            reason = type(self.inner).__name__.removesuffix("Pruner").lower()
        if reason is not None:
            set_reason(trial._trial_id, reason)
        return reason is not None

    def reason(self, study: Any, trial: Any) -> str | None:
        """The finding code that ends `trial`, or None to go on."""
        values = trial.intermediate_values
        if not values:
            return None
        step = max(values)
        if not math.isfinite(values[step]):
            return "nan-loss"
        if len(values) < self.min_epochs:
            return None
        run = live_run(trial._trial_id)
        if run is None:
            return None
        diagnosis = diagnose(run)
        codes = set(diagnosis.codes()) | {diagnosis.regime}
        for code in FATAL:
            if code in codes:
                return code
        for code in BEHIND:
            if code in codes and self._far_behind(study, trial, step, values[step]):
                return code
        return None

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


__all__ = ["BEHIND", "FATAL", "DiagnosisPruner"]
