"""Ensembles: several models predict, the ensemble takes the majority vote (the mode)
or the mean class probability. Framework-neutral: the core works on arrays of class
probabilities, shape (samples, classes), or on class labels, shape (samples,);
thin adapters (lossdoctor.integrations.predict) turn a PyTorch or Keras model into
such an array.

Members come from the top-k trials of a search, from several seeds of the best
setting (`members_from_seeds`), or from snapshots of one run (checkpoints taken at
different epochs: cheap, but similar to each other).

Ties in the vote are broken deterministically: among the classes with the most
votes, the one with the highest mean probability wins; if that ties too (or the
members gave labels only), the lowest class index wins.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return out


def as_probabilities(output: Any) -> np.ndarray:
    """Class probabilities (n, C) from a model's output; logits get a softmax, 1-D
    label arrays stay labels (int64)."""
    a = np.asarray(output)
    if a.ndim == 1:
        return a.astype(np.int64)
    a = a.astype(np.float64).reshape(a.shape[0], -1)
    if a.shape[1] == 1:  # one sigmoid output: P(class 1)
        p = np.clip(a[:, 0], 0.0, 1.0)
        return np.stack([1.0 - p, p], axis=1)
    rows = a.sum(axis=1)
    if (a >= 0).all() and np.allclose(rows, 1.0, atol=1e-3):
        return a
    return _softmax(a)


def _labels(p: np.ndarray) -> np.ndarray:
    return p if p.ndim == 1 else p.argmax(axis=1)


def majority_vote(outputs: Sequence[np.ndarray]) -> np.ndarray:
    """The mode of the members' predicted classes, per sample (ties: see the module)."""
    if not outputs:
        raise ValueError("majority_vote needs at least one member, but got none")
    probs = [as_probabilities(o) for o in outputs]
    n = probs[0].shape[0]
    n_classes = max(int(_labels(p).max()) + 1 if p.ndim == 1 else p.shape[1] for p in probs)
    votes = np.zeros((n, n_classes))
    for p in probs:
        votes[np.arange(n), _labels(p)] += 1
    # A tie-break smaller than one vote: the mean probability (in [0, 1)) / 2.
    full = [p for p in probs if p.ndim == 2 and p.shape[1] == n_classes]
    if full:
        votes += 0.5 * np.mean(full, axis=0)
    # argmax returns the first (lowest) class among exact ties.
    labels: np.ndarray = votes.argmax(axis=1)
    return labels


def mean_probability(outputs: Sequence[np.ndarray]) -> np.ndarray:
    """The members' mean class probabilities, shape (samples, classes)."""
    probs = [as_probabilities(o) for o in outputs]
    if not probs or any(p.ndim != 2 for p in probs):
        raise ValueError("mean_probability needs class probabilities (2-D) from every member")
    out: np.ndarray = np.mean(probs, axis=0)
    return out


@dataclass(frozen=True)
class EnsembleReport:
    members: dict[str, float]  # member name -> accuracy on the validation set
    vote_accuracy: float
    mean_accuracy: float | None  # None when some member gave labels only
    samples: int

    @property
    def best_member(self) -> tuple[str, float]:
        name = max(self.members, key=lambda k: self.members[k])
        return name, self.members[name]

    def to_dict(self) -> dict[str, Any]:
        return {"members": dict(self.members), "vote_accuracy": self.vote_accuracy,
                "mean_accuracy": self.mean_accuracy, "samples": self.samples,
                "best_member": self.best_member[0]}

    def render(self) -> str:
        width = max(len(k) for k in self.members) if self.members else 8
        lines = [f"ensemble of {len(self.members)} on {self.samples} validation samples"]
        lines += [f"  {name:<{width}}  accuracy {acc:.4f}" for name, acc in self.members.items()]
        lines.append(f"  {'vote (mode)':<{width}}  accuracy {self.vote_accuracy:.4f}")
        if self.mean_accuracy is not None:
            lines.append(f"  {'mean prob.':<{width}}  accuracy {self.mean_accuracy:.4f}")
        return "\n".join(lines) + "\n"


def evaluate(outputs: Mapping[str, Any], y: Any) -> EnsembleReport:
    """Accuracy of every member, of the vote and of the mean probability."""
    if not outputs:
        raise ValueError("an ensemble needs at least one member, but got none")
    truth = np.asarray(y).reshape(-1).astype(np.int64)
    probs = {k: as_probabilities(v) for k, v in outputs.items()}
    for k, p in probs.items():
        if p.shape[0] != truth.shape[0]:
            raise ValueError(f"member {k!r} predicted {p.shape[0]} samples, but y has "
                             f"{truth.shape[0]}")
    members = {k: float((_labels(p) == truth).mean()) for k, p in probs.items()}
    vote = float((majority_vote(list(probs.values())) == truth).mean())
    mean = None
    if all(p.ndim == 2 for p in probs.values()):
        mean = float((mean_probability(list(probs.values())).argmax(axis=1) == truth).mean())
    return EnsembleReport(members, vote, mean, int(truth.shape[0]))


def predict(member: Any, x: Any) -> np.ndarray:
    """What `member` predicts for x: an array is taken as its precomputed output; a
    dict from a train function gives its "predict" or "model"; a PyTorch or Keras
    model goes through its adapter; any other callable is called on x."""
    if isinstance(member, np.ndarray):
        return member
    if isinstance(member, Mapping):
        inner = member.get("predict", member.get("model"))
        if inner is None:
            raise ValueError("a member dict needs a 'predict' or 'model' entry")
        return predict(inner, x)
    kind = type(member).__module__.split(".")[0]
    if kind in ("torch", "keras", "tensorflow", "tf_keras") or _is_torch_module(member):
        from lossdoctor.integrations.predict import framework_predict

        return framework_predict(member, x)
    if hasattr(member, "predict_proba"):  # scikit-learn
        return np.asarray(member.predict_proba(x))
    if callable(member):
        return np.asarray(member(x))
    raise TypeError(f"cannot predict with a {type(member).__name__}: give a model, a "
                    "predict function or an array of class probabilities")


def _is_torch_module(obj: Any) -> bool:
    return any(c.__module__.startswith("torch.") for c in type(obj).__mro__[1:])


def ensemble(members: Any, x_val: Any, y_val: Any, *, k: int = 5) -> EnsembleReport:
    """The report of an ensemble on the validation set (x_val, y_val).

    `members`: a name -> member mapping (model, predict function, or probabilities),
    a sequence of members (snapshots of one run, say), or a SearchResult (its top `k`
    completed trials run in this process).
    """
    if hasattr(members, "ranked") and hasattr(members, "outputs"):
        members = members_from_trials(members, k)
    elif not isinstance(members, Mapping):
        members = {f"member-{i}": m for i, m in enumerate(members)}
    return evaluate({name: predict(m, x_val) for name, m in members.items()}, y_val)


def members_from_trials(result: Any, k: int = 5) -> dict[str, Any]:
    """The models of the `k` best completed trials this process ran."""
    out: dict[str, Any] = {}
    for t in result.ranked():
        if t.number in result.outputs:
            out[f"trial-{t.number}"] = result.outputs[t.number]
        if len(out) == k:
            break
    if not out:
        raise ValueError("no completed trial of this search returned a model or a predict "
                         "function (ensembles need the train function to return one)")
    return out


def members_from_seeds(train_fn: Callable[..., Any], params: Mapping[str, Any],
                       seeds: Sequence[int], run_root: str | Path = "runs/ensemble",
                       objective: str = "val_loss") -> dict[str, Any]:
    """Train the same setting once per seed (different initializations), each into its
    own run folder under `run_root`; the train function's outputs by `seed-<s>`."""
    from lossdoctor.search.reporter import TrialReporter

    out: dict[str, Any] = {}
    for s in seeds:
        reporter = TrialReporter(Path(run_root) / f"seed-{s}", params=params, seed=int(s),
                                 objective=objective, meta={"ensemble_seed": int(s)})
        try:
            out[f"seed-{s}"] = train_fn(dict(params), reporter)
        finally:
            reporter.close("complete")
    return out


def members_from_snapshots(snapshots: Sequence[Any], names: Sequence[str] | None = None
                           ) -> dict[str, Any]:
    """Checkpoints of one run (e.g. a train function's "snapshots" output)."""
    names = list(names) if names is not None else [f"snapshot-{i}" for i in
                                                   range(len(snapshots))]
    return dict(zip(names, snapshots, strict=True))


__all__ = ["EnsembleReport", "as_probabilities", "ensemble", "evaluate", "majority_vote",
           "mean_probability", "members_from_seeds", "members_from_snapshots",
           "members_from_trials", "predict"]
