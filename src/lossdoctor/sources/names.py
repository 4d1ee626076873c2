"""Map the series names found in the wild onto the canonical roles of a Run.

Logs name the same thing many ways (`loss`, `train_loss_epoch`, `Loss/train`,
`epoch_loss` under a `train/` folder, `valid_loss`, `lr-SGD`, ...). This module is
the one place that guesses; rules only ever see canonical keys.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from lossdoctor.run import LR, TRAIN_ACC, TRAIN_LOSS, TRAIN_LOSS_STEP, VAL_ACC, VAL_LOSS, Series

_SPLIT = re.compile(r"[/\\\-\s.:]+")

# Words that mark a split. Order in the tuple does not matter; matching is on tokens.
_TRAIN_WORDS = {"train", "training", "trn", "tr"}
_VAL_WORDS = {"val", "valid", "validation", "eval", "evaluation", "dev", "vl"}
_TEST_WORDS = {"test", "testing"}
_LOSS_WORDS = {"loss", "cost", "objective"}
_ACC_WORDS = {
    "acc",
    "accuracy",
    "categorical_accuracy",
    "sparse_categorical_accuracy",
    "binary_accuracy",
    "top1",
    "top1_acc",
    "top_1_accuracy",
}
_LR_NAMES = {"lr", "learning_rate", "learningrate", "epoch_learning_rate"}
# Tokens that decorate a name without changing its role (Keras/Lightning suffixes).
_NOISE = {"epoch", "step", "epochs", "steps", "mean", "avg", "total", "batch"}


def _tokens(name: str) -> list[str]:
    text = name.strip().lower()
    parts = [p for p in _SPLIT.split(text) if p]
    out: list[str] = []
    for part in parts:
        out.extend(t for t in part.split("_") if t)
    return out


def _has(tokens: list[str], words: set[str]) -> bool:
    return any(t in words for t in tokens)


def _joined_in(tokens: list[str], words: set[str]) -> bool:
    # 'sparse_categorical_accuracy' is one name but several tokens.
    joined = "_".join(tokens)
    return any(w in joined for w in words if "_" in w)


def classify(name: str) -> tuple[str | None, str | None, bool]:
    """(split, kind, is_step_level) for a raw series name.

    split is "train", "val", "test" or None (unmarked); kind is "loss", "accuracy",
    "lr" or None. is_step_level marks Lightning's `_step` variants.
    """
    tokens = _tokens(name)
    if not tokens:
        return None, None, False
    joined = "_".join(tokens)
    # Lightning `_step`, Keras `batch_` series: per-step values, second choice.
    step_level = tokens[-1] == "step" or "batch" in tokens
    if joined in _LR_NAMES or tokens[0] == "lr" or "learning_rate" in joined:
        return None, "lr", step_level
    split: str | None = None
    if _has(tokens, _VAL_WORDS) or joined.startswith("validation"):
        split = "val"
    elif _has(tokens, _TEST_WORDS):
        split = "test"
    elif _has(tokens, _TRAIN_WORDS):
        split = "train"
    core = [t for t in tokens if t not in _TRAIN_WORDS | _VAL_WORDS | _TEST_WORDS | _NOISE]
    if not core:
        return split, None, step_level
    # Only a bare loss/accuracy counts: 'val_age_output_loss' is a head, not the total.
    if core in (["loss"], ["cost"], ["objective"]):
        return split, "loss", step_level
    if (len(core) == 1 and core[0] in _ACC_WORDS) or (_joined_in(core, _ACC_WORDS) and (
        "_".join(core) in _ACC_WORDS
    )):
        return split, "accuracy", step_level
    return split, None, step_level


def assign_roles(
    names: Iterable[str],
    *,
    train_loss: str | None = None,
    val_loss: str | None = None,
) -> dict[str, str]:
    """Choose, for each canonical role, the raw name that plays it.

    Explicit `train_loss` / `val_loss` overrides win. Among candidates for a role the
    epoch-level name beats the step-level one when both exist (Lightning logs both
    `train_loss_step` and `train_loss_epoch`); an unmarked split counts as training
    (Keras names training metrics plainly: `loss`, `accuracy`); test series stand in
    for validation only when there is no validation series.
    """
    names = list(names)
    roles: dict[str, list[tuple[int, str]]] = {}
    for name in names:
        split, kind, step_level = classify(name)
        if kind is None:
            continue
        if kind == "lr":
            role = LR
            rank = 0 if not step_level else 1
        else:
            if split in (None, "train"):
                role = TRAIN_LOSS if kind == "loss" else TRAIN_ACC
                rank = 0 if split == "train" else 1
            elif split == "val":
                role = VAL_LOSS if kind == "loss" else VAL_ACC
                rank = 0
            else:  # test: a stand-in for validation only
                role = VAL_LOSS if kind == "loss" else VAL_ACC
                rank = 10
            # Step-level is second choice after epoch-level of the same split.
            rank = rank * 2 + (1 if step_level else 0)
        roles.setdefault(role, []).append((rank, name))
    chosen = {role: min(cands)[1] for role, cands in roles.items()}
    # Keep the per-step training loss too when the epoch-level one won.
    steps = [c for c in roles.get(TRAIN_LOSS, []) if c[0] % 2 == 1]
    if steps and chosen.get(TRAIN_LOSS) not in {name for _, name in steps} and train_loss is None:
        chosen[TRAIN_LOSS_STEP] = min(steps)[1]
    for role, override in ((TRAIN_LOSS, train_loss), (VAL_LOSS, val_loss)):
        if override is not None:
            chosen[role] = override
    return chosen


def canonicalize(
    raw: Mapping[str, Series],
    *,
    train_loss: str | None = None,
    val_loss: str | None = None,
) -> dict[str, Series]:
    """Series under canonical keys for the chosen roles; every other series keeps its
    raw name under `extra/`, so nothing the log held is lost.

    Raises KeyError naming the missing series when an override is not in the log.
    """
    for override in (train_loss, val_loss):
        if override is not None and override not in raw:
            known = ", ".join(sorted(raw)) or "none"
            raise KeyError(f"no series named {override!r} (series found: {known})")
    chosen = assign_roles(raw, train_loss=train_loss, val_loss=val_loss)
    out: dict[str, Series] = {}
    used = set()
    for role, name in chosen.items():
        out[role] = raw[name]
        used.add(name)
    for name, series in raw.items():
        if name not in used:
            out[f"extra/{name}"] = series
    return out


__all__ = [
    "LR",
    "TRAIN_ACC",
    "TRAIN_LOSS",
    "VAL_ACC",
    "VAL_LOSS",
    "assign_roles",
    "canonicalize",
    "classify",
]
