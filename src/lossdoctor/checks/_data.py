"""Turning what the user passed (arrays, tensors, a dataset or loader) into a small
numpy sample. Never modifies the caller's data: every array returned is a copy."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np


def to_numpy(value: Any) -> np.ndarray:
    """A numpy copy of an array, a torch tensor or a TensorFlow tensor."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch.Tensor
        value = value.detach().cpu().numpy()
    elif hasattr(value, "numpy") and not isinstance(value, np.ndarray):  # tf.Tensor
        value = value.numpy()
    return np.array(value, copy=True)


def _split_batch(batch: Any) -> tuple[Any, Any]:
    if isinstance(batch, Mapping):
        for xk, yk in (("x", "y"), ("inputs", "targets"), ("image", "label"),
                       ("features", "labels")):
            if xk in batch and yk in batch:
                return batch[xk], batch[yk]
        raise ValueError(f"a dataset batch is a dict with keys {sorted(batch)}, "
                         "expected x/y, inputs/targets, image/label or features/labels")
    if isinstance(batch, list | tuple) and len(batch) >= 2:
        return batch[0], batch[1]
    raise ValueError("each dataset batch must be an (x, y) pair, but got "
                     f"{type(batch).__name__}")


def first_batches(batches: Iterable[Any], n: int,
                  split: Callable[[Any], tuple[Any, Any]] = _split_batch,
                  count: Callable[[Any], int] = len) -> tuple[list[Any], list[Any]]:
    """(inputs, targets) of the first batches of a dataset/loader, as many as hold `n`
    samples (`count` of a batch's inputs); `split` takes a batch apart."""
    xs: list[Any] = []
    ys: list[Any] = []
    taken = 0
    for batch in batches:
        bx, by = split(batch)
        xs.append(bx)
        ys.append(by)
        taken += count(bx)
        if taken >= n:
            break
    if not xs:
        raise ValueError("the dataset/loader yielded no batches")
    return xs, ys


def _one_target_array(y: Any, samples: int) -> None:
    """Raise when `y` is several target arrays (a dict of them, or a short list of
    arrays as long as x), as a model with several outputs takes, not one per sample."""
    parts = list(y.values()) if isinstance(y, Mapping) else \
        list(y) if isinstance(y, list | tuple) and len(y) != samples else []
    if parts and all(getattr(p, "ndim", 0) >= 1 and len(p) == samples for p in parts):
        raise ValueError(f"y holds {len(parts)} target arrays, as for a model with several "
                         "outputs: these checks take one; check each output on its own "
                         "(a model returning that output, with its loss)")


def take_sample(
    x: Any, y: Any, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(x_sample, y_sample, x_all): at most `n` random rows of arrays, or the first
    `n` samples of a dataset/loader of (x, y) batches. x_all is the whole x when it
    was an array (for the train/validation overlap check), else the sample."""
    if y is None:
        if not isinstance(x, Iterable) or isinstance(x, np.ndarray):
            raise ValueError("y is missing: pass x and y arrays, or a dataset/loader "
                             "that yields (x, y) batches as x")
        xs, ys = first_batches(x, n)
        xa = np.concatenate([to_numpy(b) for b in xs])[:n]
        ya = np.concatenate([to_numpy(b) for b in ys])[:n]
        return xa, ya, xa
    xa = to_numpy(x)
    _one_target_array(y, len(xa))
    ya = to_numpy(y)
    if len(xa) != len(ya):
        raise ValueError(f"x and y must have the same number of samples, but got "
                         f"{len(xa)} and {len(ya)}")
    if len(xa) == 0:
        raise ValueError("x and y are empty")
    if len(xa) > n:
        idx = np.sort(rng.choice(len(xa), size=n, replace=False))
        return xa[idx], ya[idx], xa
    return xa, ya, xa
