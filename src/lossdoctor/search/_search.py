"""search(): Optuna is the engine; lossdoctor adds the expert layer on top (log-space
ranges, a fixed validation set reported every epoch, diagnosis-aware pruning, a
warning when the best value sits on an edge of its range, ensembles)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from lossdoctor._imports import try_import
from lossdoctor.diagnosis import diagnose
from lossdoctor.findings import Finding, make_finding
from lossdoctor.search.reporter import TrialPruned, TrialReporter
from lossdoctor.search.space import EDGE_FRACTION, Edge, Space, as_space, edges, suggest

TrainFn = Callable[[dict[str, Any], TrialReporter], Any]
MAXIMIZE = ("accuracy", "acc", "score", "auc", "f1")
SURPLUS = "lossdoctor_surplus"


def _optuna() -> Any:
    optuna = try_import("optuna", "search")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _seed_for(seed: int, *parts: object) -> int:
    text = "/".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


def _make_sampler(kind: Any, seed: int) -> Any:
    optuna = _optuna()
    if not isinstance(kind, str):
        return kind
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if kind != "random":
        raise ValueError(f"sampler must be 'random', 'tpe' or an Optuna sampler, but got {kind!r}")

    base: Any = optuna.samplers.RandomSampler

    class TrialSeededRandomSampler(base):  # type: ignore[misc]
        """Trial n's parameters depend only on (seed, n, name): several workers sharing
        one study never draw the same setting, and a rerun draws the same ones."""

        def sample_independent(self, study: Any, trial: Any, name: str, dist: Any) -> Any:
            rng = optuna.samplers.RandomSampler(seed=_seed_for(seed, trial.number, name))
            return rng.sample_independent(study, trial, name, dist)

    return TrialSeededRandomSampler(seed=seed)


def make_pruner(kind: Any) -> Any:
    """"diagnosis" (default), "median", "diagnosis+median", "none", or an Optuna pruner."""
    optuna = _optuna()
    if not isinstance(kind, str):
        return kind
    from lossdoctor.search.pruning import DiagnosisPruner

    median = optuna.pruners.MedianPruner
    table: dict[str, Callable[[], Any]] = {
        "none": optuna.pruners.NopPruner,
        "median": median,
        "diagnosis": DiagnosisPruner,
        "diagnosis+median": lambda: DiagnosisPruner(median()),
    }
    if kind not in table:
        raise ValueError(f"pruner must be one of {', '.join(table)} or an Optuna pruner, "
                         f"but got {kind!r}")
    return table[kind]()


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "study"


@dataclass
class TrialSummary:
    number: int
    state: str  # "complete" | "pruned" | "fail" | "running" | "waiting"
    value: float | None
    params: dict[str, Any]
    run_dir: str | None
    epochs: int
    reason: str | None  # why it was pruned or failed
    regime: str | None
    metrics: dict[str, float] = field(default_factory=dict)  # last reported values

    def to_dict(self) -> dict[str, Any]:
        value = self.value if self.value is None or math.isfinite(self.value) else None
        return {"number": self.number, "state": self.state, "value": value,
                "params": self.params, "run_dir": self.run_dir, "epochs": self.epochs,
                "reason": self.reason, "regime": self.regime,
                "metrics": {k: v for k, v in self.metrics.items() if math.isfinite(v)}}


def _summaries(study: Any, n_trials: int) -> list[TrialSummary]:
    out = []
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get(SURPLUS) or t.number >= n_trials:
            continue
        out.append(TrialSummary(
            number=t.number, state=t.state.name.lower(), value=t.value, params=dict(t.params),
            run_dir=t.user_attrs.get("run_dir"), epochs=len(t.intermediate_values),
            reason=t.user_attrs.get("prune_reason") or t.user_attrs.get("error"),
            regime=t.user_attrs.get("regime"), metrics=dict(t.user_attrs.get("metrics", {}))))
    return sorted(out, key=lambda s: s.number)


@dataclass
class SearchResult:
    study_name: str
    storage: str
    objective: str
    direction: str  # "minimize" | "maximize"
    space: Space
    n_trials: int
    trials: list[TrialSummary]
    findings: list[Finding]
    edges: list[Edge]
    # What this process's train function returned, by trial number (models or predict
    # functions for an ensemble); trials run by other workers are not here.
    outputs: dict[int, Any] = field(default_factory=dict)
    rounds: list[SearchResult] = field(default_factory=list)  # earlier rounds (--extend)
    study: Any = None

    def ranked(self) -> list[TrialSummary]:
        """Completed trials, best first."""
        done = [t for t in self.trials if t.state == "complete" and t.value is not None
                and math.isfinite(t.value)]
        sign = 1.0 if self.direction == "minimize" else -1.0
        return sorted(done, key=lambda t: sign * float(t.value or 0.0))

    @property
    def best(self) -> TrialSummary | None:
        ranked = self.ranked()
        return ranked[0] if ranked else None

    @property
    def epochs_trained(self) -> int:
        return sum(t.epochs for t in self.trials)

    def counts(self) -> dict[str, int]:
        return dict(Counter(t.state for t in self.trials))

    def prune_reasons(self) -> dict[str, int]:
        return dict(Counter(t.reason or "?" for t in self.trials if t.state == "pruned"))

    def to_html(self, ensemble: Any = None, *, fragment: bool = False) -> str:
        """The search as HTML: each hyperparameter against the objective (log scale for
        log ranges, edges marked), findings, and `ensemble` (an EnsembleReport)."""
        from lossdoctor.report.searchplot import render_search_html

        return render_search_html(self, ensemble, fragment=fragment)

    def _repr_html_(self) -> str:
        return self.to_html(fragment=True)

    def save_html(self, path: str | os.PathLike[str], ensemble: Any = None, *,
                  force: bool = False) -> Path:
        """Write the HTML page; never replaces a file unless `force`."""
        from lossdoctor.report.html import write_text_safely

        return write_text_safely(self.to_html(ensemble), path, force=force)

    def to_dict(self) -> dict[str, Any]:
        best = self.best
        return {
            "study": self.study_name, "storage": self.storage, "objective": self.objective,
            "direction": self.direction, "n_trials": self.n_trials,
            "space": {k: v.describe() for k, v in self.space.items()},
            "counts": self.counts(), "pruned_by": self.prune_reasons(),
            "epochs_trained": self.epochs_trained,
            "best": best.to_dict() if best is not None else None,
            "findings": [f.to_dict() for f in self.findings],
            "trials": [t.to_dict() for t in self.trials],
            "rounds": [r.to_dict() for r in self.rounds],
        }


def boundary_findings(found: list[Edge], objective: str) -> list[Finding]:
    out = []
    for e in found:
        out.append(make_finding(
            "search-best-at-boundary",
            title=f"Best {e.name}={e.value:.4g} sits at the {e.edge} edge of "
                  f"{e.dimension.describe()}",
            evidence={"parameter": e.name, "edge": e.edge, "best_value": e.value,
                      "position": round(e.position, 4), "range": e.dimension.describe(),
                      "widened": e.widened.describe(), "objective": objective},
            fixes=[f"Search {e.name} in {e.widened.describe()} (lossdoctor search --extend "
                   "does it for you).",
                   "Keep the other ranges; a value at the edge means the optimum is "
                   "probably beyond it."],
        ))
    return out


class _Progress:
    """One line per finished trial on stderr: a text line on a terminal, a JSON object
    per line with format="json"; nothing otherwise (scripts and pipes stay clean)."""

    def __init__(self, enabled: bool | None, fmt: str, n_trials: int, direction: str,
                 stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.fmt = fmt
        self.enabled = (self.stream.isatty() or fmt == "json") if enabled is None else enabled
        self.n_trials = n_trials
        self.direction = direction

    def update(self, study: Any) -> None:
        if not self.enabled:
            return
        trials = _summaries(study, self.n_trials)
        counts = Counter(t.state for t in trials)
        done = counts["complete"] + counts["pruned"] + counts["fail"]
        reasons = Counter(t.reason or "?" for t in trials if t.state == "pruned")
        finished = [t for t in study.get_trials(deepcopy=False)
                    if t.datetime_complete is not None and t.datetime_start is not None
                    and t.number < self.n_trials]
        left_s = None
        if finished:
            mean = sum((t.datetime_complete - t.datetime_start).total_seconds()
                       for t in finished) / len(finished)
            left_s = mean * max(0, self.n_trials - done) / max(1, counts["running"])
        ok = [t for t in trials if t.state == "complete" and t.value is not None
              and math.isfinite(t.value)]
        best = (min if self.direction == "minimize" else max)(
            ok, key=lambda t: t.value or 0.0, default=None)
        if self.fmt == "json":
            line = json.dumps({"event": "progress", "done": done, "total": self.n_trials,
                               "complete": counts["complete"], "running": counts["running"],
                               "pruned": dict(reasons), "failed": counts["fail"],
                               "best": None if best is None else
                               {"number": best.number, "value": best.value},
                               "eta_s": None if left_s is None else round(left_s, 1)})
        else:
            pruned = ", ".join(f"{k} {v}" for k, v in reasons.most_common())
            line = (f"search: {done}/{self.n_trials} done, {counts['running']} running, "
                    f"{counts['pruned']} pruned" + (f" ({pruned})" if pruned else "")
                    + (f", {counts['fail']} failed" if counts["fail"] else "")
                    + ("" if best is None else
                       f"; best {best.value:.4g} (trial {best.number})")
                    + ("" if left_s is None else f"; ~{left_s:.0f} s left"))
        self.stream.write(line + "\n")
        self.stream.flush()


def _value_from(output: Any, reporter: TrialReporter) -> float:
    if reporter.last_value is not None:
        return reporter.last_value
    if isinstance(output, int | float):
        return float(output)
    if isinstance(output, Mapping) and reporter.objective in output:
        return float(output[reporter.objective])
    raise ValueError(f"the train function reported no {reporter.objective!r} and "
                     "returned none: call reporter.report(epoch, ...) every epoch")


def search(
    train_fn: TrainFn,
    space: Mapping[str, Any],
    n_trials: int = 20,
    *,
    storage: str | None = None,
    study_name: str | None = None,
    sampler: Any = "random",
    pruner: Any = "diagnosis",
    seed: int = 0,
    run_root: str | Path = "runs/search",
    objective: str = "val_loss",
    direction: str | None = None,
    extend: bool = False,
    max_rounds: int = 3,
    edge_fraction: float = EDGE_FRACTION,
    progress: bool | None = None,
    progress_format: str = "text",
    keep_outputs: bool = True,
) -> SearchResult:
    """Search `space` with `n_trials` trials of `train_fn(params, reporter)`.

    - `space`: name -> LogUniform | Uniform | Int | Choice (see lossdoctor.search.space).
    - `train_fn` reports the fixed validation set's metrics every epoch through
      `reporter.report(epoch, val_loss=..., val_accuracy=..., train_loss=...)` and may
      return the model, a predict function (x -> class probabilities), a metric, or a
      dict with "model"/"predict"/"snapshots" (kept in `result.outputs` for ensembles).
    - `objective`: the reported metric to optimize, its last reported value being the
      trial's value; minimized unless its name says accuracy (or `direction` is given).
    - `storage`: any SQLAlchemy URL; default `sqlite:///<run_root>/study.db`. The study
      is created or joined (several workers may run the same call): `n_trials` is
      the study-wide total, whatever the number of workers.
    - `sampler`: "random" (seeded per trial, the source's advice) or "tpe".
    - `pruner`: "diagnosis" (default), "median", "diagnosis+median", "none", or any
      Optuna pruner. The reason a trial was pruned is in its user_attrs.
    - `extend`: when the best value of a parameter sits near an edge of its range,
      search again (a new study, `<name>-r2`, ...) with that range widened, up to
      `max_rounds` rounds in all; the earlier rounds are in `result.rounds`.
    """
    optuna = _optuna()
    if n_trials < 1:
        raise ValueError(f"n_trials >= 1 must hold, but got {n_trials}")
    dims = as_space(space)
    root = Path(run_root)
    root.mkdir(parents=True, exist_ok=True)
    url = storage or f"sqlite:///{root / 'study.db'}"
    name = study_name or _safe_name(getattr(train_fn, "__name__", "search"))
    if direction is None:
        direction = "maximize" if any(w in objective for w in MAXIMIZE) else "minimize"
    rounds: list[SearchResult] = []
    for round_no in range(1, max(1, max_rounds) + 1):
        round_name = name if round_no == 1 else f"{name}-r{round_no}"
        result = _one_study(optuna, train_fn, dims, n_trials, url, round_name, sampler,
                            pruner, seed, root, objective, direction, edge_fraction,
                            _Progress(progress, progress_format, n_trials, direction),
                            keep_outputs)
        if not (extend and result.edges) or round_no == max_rounds:
            result.rounds = rounds
            return result
        rounds.append(result)
        dims = {**dims, **{e.name: e.widened for e in result.edges}}
    raise AssertionError("unreachable")


def _create_or_join(optuna: Any, url: str, name: str, direction: str, sampler: Any,
                    pruner: Any) -> Any:
    # Workers started together race to create the schema and the study in a fresh
    # database; the loser's error is transient: join what the winner made.
    for attempt in range(6):
        try:
            return optuna.create_study(storage=url, study_name=name, direction=direction,
                                       sampler=sampler, pruner=pruner, load_if_exists=True)
        except Exception:
            if attempt == 5:
                raise
            time.sleep(0.2 * (attempt + 1) + random.random() * 0.3)
    raise AssertionError("unreachable")


def _one_study(optuna: Any, train_fn: TrainFn, dims: Space, n_trials: int, url: str,
               name: str, sampler: Any, pruner: Any, seed: int, root: Path, objective: str,
               direction: str, edge_fraction: float, progress: _Progress,
               keep_outputs: bool) -> SearchResult:
    study = _create_or_join(optuna, url, name, direction, _make_sampler(sampler, seed),
                            make_pruner(pruner))
    state = optuna.trial.TrialState
    outputs: dict[int, Any] = {}
    failures = 0
    while len(study.get_trials(deepcopy=False)) < n_trials:
        trial = study.ask()
        if trial.number >= n_trials:
            # Another worker took the last trial between our count and ask(): give
            # this one back, marked, so the study keeps exactly n_trials real trials.
            trial.set_user_attr(SURPLUS, True)
            study.tell(trial, state=state.FAIL)
            break
        params = {k: suggest(trial, k, d) for k, d in dims.items()}
        run_dir = root / _safe_name(name) / f"trial-{trial.number:04d}"
        trial.set_user_attr("run_dir", str(run_dir))
        trial_seed = _seed_for(seed, "train", trial.number)
        trial.set_user_attr("seed", trial_seed)
        reporter = TrialReporter(run_dir, params=params, seed=trial_seed, objective=objective,
                                 trial=trial, number=trial.number,
                                 meta={"study": name, "trial": trial.number})
        status = "fail"
        try:
            output = train_fn(dict(params), reporter)
            value = _value_from(output, reporter)
            status = "complete"
        except (TrialPruned, optuna.TrialPruned) as exc:
            status = "pruned"
            trial.set_user_attr("prune_reason", getattr(exc, "reason", None) or "user")
        except Exception as exc:
            failures += 1
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:500])
            sys.stderr.write(f"lossdoctor: search: trial {trial.number} failed: "
                             f"{type(exc).__name__}: {exc}\n")
        finally:
            reporter.close(status)
        # JSON has no NaN: a metric that blew up is stored as a string.
        trial.set_user_attr("metrics", {k: v if math.isfinite(v) else str(v)
                                        for k, v in reporter.metrics.items()})
        try:
            diagnosis = diagnose(reporter.run())
            trial.set_user_attr("regime", diagnosis.regime)
            trial.set_user_attr("findings", diagnosis.codes())
        except Exception as exc:  # a diagnosis must never lose the trial's result
            trial.set_user_attr("regime", f"error: {type(exc).__name__}")
        if status == "complete":
            study.tell(trial, value)
            if keep_outputs and output is not None:
                outputs[trial.number] = output
        else:
            study.tell(trial, state=state.PRUNED if status == "pruned" else state.FAIL)
        progress.update(study)
        if failures >= 3 and not study.get_trials(deepcopy=False,
                                                  states=(state.COMPLETE, state.PRUNED)):
            raise RuntimeError(f"the first {failures} trials all failed; the last error: "
                               f"{trial.user_attrs.get('error', '?')}")
    trials = _summaries(study, n_trials)
    result = SearchResult(name, url, objective, direction, dims, n_trials, trials, [], [],
                          outputs, study=study)
    best = result.best
    if best is not None:
        result.edges = edges(best.params, dims, edge_fraction)
        result.findings = boundary_findings(result.edges, objective)
    return result
