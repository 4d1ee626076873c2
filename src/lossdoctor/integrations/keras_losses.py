"""Keras loss functions called as a compiled model calls them, for the probes and the
pre-flight checks that compute a model's loss outside `fit`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras


def matched_ranks(fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """`fn` given targets and outputs of the same rank, as a compiled Keras loss gets
    them: binary labels of shape (n,) against sigmoid outputs of shape (n, 1) are
    common, `keras.losses.Loss.__call__` reshapes them, the bare loss functions (and
    `Loss.call`) refuse them. The same rule as Keras: a rank-1 side gains a last axis,
    otherwise the side with the extra axis of size 1 loses it."""
    def per_sample(y_true: Any, y_pred: Any) -> Any:
        t, p = len(y_true.shape), len(y_pred.shape)
        if p == t + 1 and y_pred.shape[-1] == 1:
            if t == 1:
                y_true = keras.ops.expand_dims(y_true, -1)
            else:
                y_pred = keras.ops.squeeze(y_pred, -1)
        elif t == p + 1 and y_true.shape[-1] == 1:
            if p == 1:
                y_pred = keras.ops.expand_dims(y_pred, -1)
            else:
                y_true = keras.ops.squeeze(y_true, -1)
        return fn(y_true, y_pred)

    return per_sample
