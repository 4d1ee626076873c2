"""What a training function sees of the search: `reporter.report(epoch, ...)` once per
epoch. Each trial's metrics go to its own lossdoctor run folder (TensorBoard scalars
plus run.json), so `lossdoctor diagnose RUN_DIR` works on any trial afterwards.

The interface, in full::

    def train(params: dict, reporter: TrialReporter):
        torch.manual_seed(reporter.seed)          # differs per trial, reproducible
        for epoch in range(20):
            ...
            reporter.report(epoch, val_loss=..., val_accuracy=..., train_loss=...)
        return model        # or a predict function, a metric, or a dict (see search())

`report` raises `TrialPruned` when the trial should stop (let it propagate: the
search records the trial as pruned with the reason); `reporter.should_stop` says the
same without raising, for loops that want to clean up first.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lossdoctor.live.store import RunStore
from lossdoctor.run import Run

# The metrics the doctor's rules read, by keyword; other keywords are logged as-is.
_TAGS = {"train_loss": "train/loss", "val_loss": "val/loss",
         "train_accuracy": "train/accuracy", "val_accuracy": "val/accuracy"}

# user_attrs key: the diagnosis stopped this trial while the inner pruner would have
# let it go on (see `DiagnosisPruner`).
INNER_KEPT = "lossdoctor_inner_kept"

# A trial, by public Optuna attributes: (study name, trial number).
TrialKey = tuple[str, int]

# The live run of each trial. The pruner reads the whole curve (train and validation)
# from here: Optuna's FrozenTrial only holds the objective's values.
_LIVE: dict[TrialKey, Callable[[], Run]] = {}
# Why the pruner stopped a trial, and whether the inner pruner would have kept it.
_REASONS: dict[TrialKey, tuple[str, bool]] = {}
_LOCK = threading.Lock()


class TrialPruned(Exception):
    """Raised by `report` when the trial should stop; `reason` says why (a finding
    code such as "diverging", or "median" for Optuna's MedianPruner)."""

    def __init__(self, reason: str, epoch: int | None = None) -> None:
        super().__init__(f"trial stopped at epoch {epoch}: {reason}")
        self.reason = reason
        self.epoch = epoch


def live_run(key: TrialKey) -> Run | None:
    with _LOCK:
        get = _LIVE.get(key)
    return get() if get is not None else None


def set_reason(key: TrialKey, reason: str, *, inner_kept: bool = False) -> None:
    """Called by the pruner; the reporter records it on the trial when it stops."""
    with _LOCK:
        _REASONS[key] = (reason, inner_kept)


class TrialReporter:
    """Per-epoch metrics of one trial. Without an Optuna trial (retraining the best
    setting for an ensemble) it only records and never stops training."""

    def __init__(self, run_dir: str | Path, *, params: Mapping[str, Any], seed: int,
                 objective: str = "val_loss", trial: Any = None, number: int | None = None,
                 meta: Mapping[str, Any] | None = None) -> None:
        self.params = dict(params)
        self.seed = seed
        self.number = number
        self.objective = objective
        self.run_dir = Path(run_dir)
        self.epochs = 0
        self.last_value: float | None = None
        self.values: list[float] = []
        self.metrics: dict[str, float] = {}  # the last reported value of each metric
        self.should_stop = False
        self.reason: str | None = None
        self._trial = trial
        self._store = RunStore(self.run_dir, {"search": dict(meta or {}),
                                              "params": self.params, "seed": seed})
        self._id: TrialKey | None = None
        if trial is not None:
            self._id = (trial.study.study_name, trial.number)
            with _LOCK:
                _LIVE[self._id] = self._store.to_run

    def report(self, epoch: int, *, val_loss: float | None = None,
               val_accuracy: float | None = None, train_loss: float | None = None,
               train_accuracy: float | None = None, **other: float) -> None:
        """Log one epoch; raise TrialPruned if the trial should stop here."""
        given = {"val_loss": val_loss, "val_accuracy": val_accuracy,
                 "train_loss": train_loss, "train_accuracy": train_accuracy, **other}
        for key, value in given.items():
            if value is not None:
                self._store.add_scalar(_TAGS.get(key, key), float(value), int(epoch))
                self.metrics[key] = float(value)
        self._store.flush()
        self.epochs += 1
        value = given.get(self.objective)
        if value is None:
            raise ValueError(f"the search optimizes {self.objective!r}, but report() got "
                             f"only {', '.join(k for k, v in given.items() if v is not None)}")
        self.last_value = float(value)
        self.values.append(self.last_value)
        if self._trial is None:
            return
        self._trial.report(self.last_value, int(epoch))
        if self._trial.should_prune():
            with _LOCK:
                reason, inner_kept = _REASONS.pop(self._id, (None, False)) \
                    if self._id is not None else (None, False)
            if inner_kept:
                self._trial.set_user_attr(INNER_KEPT, True)
            name = type(getattr(getattr(self._trial, "study", None), "pruner", None)).__name__
            self.reason = reason or name.removesuffix("Pruner").lower() or "pruner"
            self.should_stop = True
            self._store.meta["stopped"] = {"epoch": int(epoch), "reason": self.reason}
            raise TrialPruned(self.reason, int(epoch))

    def run(self) -> Run:
        return self._store.to_run()

    def close(self, status: str) -> None:
        if self._id is not None:
            with _LOCK:
                _LIVE.pop(self._id, None)
                _REASONS.pop(self._id, None)
        self._store.meta["search_status"] = status
        self._store.close()


def finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


__all__ = ["TrialPruned", "TrialReporter"]
