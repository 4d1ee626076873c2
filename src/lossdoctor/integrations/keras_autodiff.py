"""Gradients and training steps of Keras models on whichever backend Keras runs, for
the pre-flight checks and the LR range test (`keras_checks`): tf.GradientTape on
TensorFlow, torch.autograd on torch, `jax.value_and_grad` on JAX. A loss is given as a
function of no arguments that reads the model's variables (`loss_fn()`); the backend
frameworks are imported only on their own backend."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

Loss = Callable[[], Any]


def backend() -> str:
    return str(keras.backend.backend())


def value_and_gradients(loss_fn: Loss, variables: Sequence[Any]) -> tuple[Any, list[Any]]:
    """(loss, gradient per variable): None for a variable the loss does not reach, but
    zeros on JAX, whose gradients are never missing (see `reaches_any`)."""
    variables = list(variables)
    if not variables:  # a frozen model (torch.autograd.grad refuses an empty list)
        return loss_fn(), []
    name = backend()
    if name == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_fn()
        return loss, list(tape.gradient(loss, variables))
    if name == "torch":
        import torch

        with torch.enable_grad():
            loss = loss_fn()
            grads = torch.autograd.grad(loss, [v.value for v in variables],
                                        allow_unused=True)
        return loss.detach(), list(grads)
    if name == "jax":
        import jax

        def of_values(values: list[Any]) -> Any:
            # The variables read inside see the values being differentiated.
            with keras.StatelessScope(state_mapping=list(zip(variables, values,
                                                             strict=True))):
                return loss_fn()

        loss, grads = jax.value_and_grad(of_values)([v.value for v in variables])
        return loss, list(grads)
    raise RuntimeError(f"Keras' {name!r} backend has no gradients")


def float64_available() -> bool:
    """Whether a float64 model computes in float64: not on JAX unless `jax_enable_x64`
    is set (it truncates to float32, with a warning)."""
    if backend() != "jax":
        return True
    import jax

    return bool(jax.config.read("jax_enable_x64"))  # type: ignore[no-untyped-call]


def reaches_any(grads: Sequence[Any]) -> bool:
    """Whether the loss reaches some variable: a gradient that is there, and on JAX
    (zeros where it does not reach) one that is not all zeros."""
    present = [g for g in grads if g is not None]
    if backend() != "jax":
        return bool(present)
    return any(bool(np.any(np.asarray(g))) for g in present)


def gradient_step(loss_fn: Loss, variables: Sequence[Any], optimizer: Any) -> None:
    """One update of `variables` by `optimizer` along the gradient of `loss_fn()`;
    variables the loss does not reach are left alone."""
    _, grads = value_and_gradients(loss_fn, variables)
    optimizer.apply_gradients([(g, v) for g, v in zip(grads, variables, strict=True)
                               if g is not None])
