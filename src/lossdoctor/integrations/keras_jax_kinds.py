"""Keras on its JAX backend: what a custom layer outputs, read off the jaxpr of the
probe's forward pass (`keras.ops.sigmoid(...)` in a layer's `call` is a `logistic`
there, `keras.ops.relu` a `max(x, 0)` inside a function named `relu`). The TensorFlow
backend reads the same from its traced graph (`keras_tf.traced_kinds`), the torch
backend from the calls it watches (`keras_torch_kinds`). Traced once, before the
probe's pass is compiled (kinds do not change)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

# Primitives, and functions by the name JAX traces them under, whose outputs are units
# of a kind the layer rules read (the kinds of `keras_tf.OP_KINDS`).
JAX_KINDS = {"logistic": "sigmoid", "sigmoid": "sigmoid", "tanh": "tanh",
             "relu": "relu", "relu6": "relu", "leaky_relu": "leakyrelu",
             "soft_sign": "tanh"}


def _maker(jaxpr: Any, var: Any) -> tuple[Any, int] | None:
    """(equation, output position) that computed `var` in `jaxpr`; None for an input
    or a constant."""
    for eqn in jaxpr.eqns:
        for k, out in enumerate(eqn.outvars):
            if out is var:
                return eqn, k
    return None


def _zero(var: Any) -> bool:
    value = getattr(var, "val", None)  # a literal's
    return value is not None and np.ndim(value) == 0 and float(value) == 0.0


def _is_relu(eqn: Any) -> bool:
    """max(x, 0): Keras' relu, whatever the function around it is named."""
    return bool(eqn.primitive.name == "max" and any(_zero(v) for v in eqn.invars))


def _kind(made: tuple[Any, int]) -> str | None:
    """The kind of unit an equation's output is, looking into the functions it calls
    (jit, custom_jvp_call) down to the equation that computed it."""
    eqn, at = made
    while True:
        for name in (eqn.primitive.name, eqn.params.get("name")):
            if name in JAX_KINDS:
                return JAX_KINDS[name]
        if _is_relu(eqn):
            return "relu"
        inner = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
        inner = getattr(inner, "jaxpr", inner)  # a closed jaxpr's own
        if inner is None or not hasattr(inner, "outvars"):
            return None
        found = _maker(inner, inner.outvars[at])
        if found is None:
            return None
        eqn, at = found


def kinds_made(forward: Callable[[list[Any]], list[Any]], values: Sequence[Any],
               undecided: Sequence[int]) -> dict[int, str]:
    """index -> kind of the `undecided` outputs of `forward(values)` that an activation
    made. An output computed by the same equation as an earlier one is that layer's
    units handed on (Dropout at inference) and is not read twice."""
    jaxpr = jax.make_jaxpr(forward)(list(values)).jaxpr
    makers = [_maker(jaxpr, v) for v in jaxpr.outvars]
    kinds = {}
    for k in undecided:
        made = makers[k]
        if made is None or any(m is not None and m[0] is made[0] for m in makers[:k]):
            continue
        kind = _kind(made)
        if kind is not None:
            kinds[k] = kind
    return kinds
