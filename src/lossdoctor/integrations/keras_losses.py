"""Keras loss functions called as a compiled model calls them, for the probes and the
pre-flight checks that compute a model's loss outside `fit`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
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


def per_sample_loss(spec: Any) -> Callable[[Any, Any], Any] | None:
    """The per-sample loss of one compiled loss spec (a name, a `keras.losses.Loss` or a
    function; as `keras_checks.resolve_loss`, which imports TensorFlow); None for none."""
    if spec is None:
        return None
    if isinstance(spec, str):
        return matched_ranks(keras.losses.get(spec))
    if isinstance(spec, keras.losses.Loss):
        return matched_ranks(spec.call)  # unreduced, per sample
    return matched_ranks(spec) if callable(spec) else None


def for_output(spec: Any, index: int, key: str | None, n: int) -> Any:
    """The part of a per-output spec (losses, loss weights or targets) for the output
    at `index` (named `key`) of `n`: by key from a dict, by position from a list of
    `n`, the spec itself otherwise (one loss or weight for every output)."""
    if isinstance(spec, dict):
        return spec.get(key) if key is not None else None
    if isinstance(spec, list | tuple):
        if len(spec) != n:
            raise ValueError(f"{len(spec)} entries for {n} outputs")
        return spec[index]
    return spec


def output_keys(model: keras.Model) -> list[str] | None:
    """Each of a functional model's flat outputs' keys: a dict output's key (its outputs
    lie in sorted key order), else its layer's name; None for a model whose outputs are
    known only when called (subclassed)."""
    try:
        output = model.output
        return sorted(output) if isinstance(output, dict) else list(model.output_names)
    except (AttributeError, ValueError):
        return None


def model_loss(loss: Any, loss_weights: Any, output_keys: Sequence[str] | None
               ) -> Callable[[Any, Any], Any] | None:
    """The compiled loss of a model as `fn(y, outputs)` -> a scalar, for the probes.

    As Keras weighs it: each output's loss averaged over the samples, times its loss
    weight, summed. `outputs` are the model's outputs: one tensor, or a structure,
    taken flat as `keras.tree.flatten` lays it out (a dict by sorted key). `y` holds
    the targets as given to `fit`: one array, a list in the outputs' order, or a dict by
    output key. `loss` and `loss_weights` are the `compile` arguments: one for every
    output, a list in the outputs' order, or a dict by output key. `output_keys` gives
    each flat output's key (a dict output's key, else its layer's name); None when not
    known, and then a dict output's own keys are used. Calling the model's own compiled
    loss instead would update its per-output loss metrics.

    None when the model has no loss; `fn` raises when no output has one."""
    if loss is None:
        return None

    def fn(y: Any, outputs: Any) -> Any:
        flat = keras.tree.flatten(outputs)
        n = len(flat)
        keys: Sequence[str | None] = (sorted(outputs) if isinstance(outputs, dict)
                                      else output_keys or [])
        if len(keys) != n:
            keys = [None] * n
        if n == 1 and not isinstance(y, dict | list | tuple):
            y = [y]
        total: Any = None
        for i, (key, y_pred) in enumerate(zip(keys, flat, strict=True)):
            per_sample = per_sample_loss(for_output(loss, i, key, n))
            if per_sample is None:  # an output trained without a loss
                continue
            y_true = for_output(y, i, key, n)
            if y_true is None:
                raise ValueError(f"no targets for output {key or i}, which has a loss")
            value = keras.ops.mean(keras.ops.cast(per_sample(y_true, y_pred), "float32"))
            weight = None if loss_weights is None else for_output(loss_weights, i, key, n)
            if weight is not None:
                value = value * float(weight)
            total = value if total is None else total + value
        if total is None:
            raise ValueError("no output of the model has a loss")
        return total

    return fn
