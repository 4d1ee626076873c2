"""The eager side of `lossdoctor.keras.Doctor` for Keras backends other than TensorFlow:
the same readings as `keras_tf`, with `keras.ops` on the backend's tensors (on the
device), computed only on sampled steps and read back in one transfer per call.

Probe gradients come from `torch.autograd` on the torch backend; on other backends
(JAX, untested here) the probe has no gradients (`Probe.gradients` is False) and the
Doctor notes it in run.json. `lossdoctor.integrations.keras` imports this module only
on a non-TensorFlow backend, so TensorFlow is never imported there.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from lossdoctor.integrations.keras import by_layer
from lossdoctor.live.host_stats import SATURATION
from lossdoctor.live.monitor import HISTOGRAM_BINS


def _value(v: Any) -> Any:
    """The backend tensor behind a Keras variable."""
    return v.value if hasattr(v, "value") else v


def _model_input(a: Any) -> Any:
    """A probe input array as the model takes it: floating as float32, integer (token
    ids) as it is."""
    t = ops.convert_to_tensor(a)
    return ops.cast(t, "float32") if "float" in str(t.dtype) else t


def _torch_backend() -> bool:
    return bool(keras.backend.backend() == "torch")


@contextlib.contextmanager
def _no_grad() -> Iterator[None]:
    """No autograd graph for readings (torch records one for any op on a parameter)."""
    if _torch_backend():
        import torch

        with torch.no_grad():
            yield
    else:
        yield


def _norms(tensors: Sequence[Any]) -> Any:
    """The L2 norm of each tensor, stacked: one fused call on torch (a keras.ops call
    costs tens of microseconds each on that backend), keras.ops elsewhere."""
    if _torch_backend():
        import torch

        return torch.stack(torch._foreach_norm([t.float() for t in tensors]))
    return ops.stack([ops.sqrt(ops.sum(ops.square(ops.cast(t, "float32"))))
                      for t in tensors])


def _to_host(parts: Sequence[Any]) -> np.ndarray:
    """One read-back for all the values of a call."""
    if not parts:
        return np.zeros(0)
    flat = ops.concatenate([ops.reshape(ops.cast(p, "float32"), [-1]) for p in parts])
    return np.asarray(ops.convert_to_numpy(flat), dtype=np.float64)


def activation_stats(x: Any, kind: str) -> Any:
    """[mean, std, dead share, saturated share, non-finite flag] of one output, as
    `keras_tf.activation_stats` (channels last: a unit is dead when it is <= 0 for
    every sample and position)."""
    x = ops.cast(x, "float32")
    n = float(max(int(np.prod(x.shape)), 1))
    s1, s2 = ops.sum(x), ops.sum(ops.square(x))
    mean = s1 / n
    std = ops.sqrt(ops.maximum(s2 / n - mean * mean, 0.0))
    bad = ops.cast(ops.logical_not(ops.logical_and(ops.isfinite(s1), ops.isfinite(s2))),
                   "float32")
    nan = ops.full((), math.nan, dtype="float32")
    dead = sat = nan
    rank = len(x.shape)
    if kind == "relu" and rank >= 2:
        unit_max = ops.max(x, axis=tuple(range(rank - 1)))
        dead = ops.mean(ops.cast(unit_max <= 0, "float32"))
    if kind == "sigmoid":
        sat = ops.mean(ops.cast(ops.abs(x - 0.5) > SATURATION - 0.5, "float32"))
    elif kind == "tanh":
        sat = ops.mean(ops.cast(ops.abs(x) > SATURATION, "float32"))
    return ops.stack([mean, std, dead, sat, bad])


def bn_shift(x: Any, layer: keras.layers.BatchNormalization) -> Any:
    """As `keras_tf.bn_shift`: mean over channels of |z| + |ln s| of the BatchNorm
    input `x` against the layer's moving statistics."""
    x = ops.cast(x, "float32")
    rank = len(x.shape)
    channel = layer.axis % rank
    mean, var = ops.moments(x, axes=[d for d in range(rank) if d != channel])
    moving_var = ops.cast(_value(layer.moving_variance), "float32") + layer.epsilon
    z = ops.abs(mean - ops.cast(_value(layer.moving_mean), "float32")) / ops.sqrt(moving_var)
    log_ratio = 0.5 * ops.abs(ops.log(ops.maximum(var, 1e-12) / moving_var))
    return ops.mean(z + log_ratio)


def histogram_row(tensors: Sequence[Any]) -> Any:
    """A row of `keras_tf.histogram_rows` for one group: [start, width,
    HISTOGRAM_BINS counts] of the finite values of `tensors` together (a weighted
    bincount: torch.histogram has no CUDA kernel)."""
    x = ops.concatenate([ops.reshape(ops.cast(t, "float32"), [-1]) for t in tensors])
    finite = ops.isfinite(x)
    lo = ops.min(ops.where(finite, x, math.inf))
    hi = ops.max(ops.where(finite, x, -math.inf))
    width = ops.where(hi > lo, hi - lo, 1.0)
    scaled = ops.where(finite, (x - lo) / width, 0.0)
    bins = ops.cast(ops.clip(ops.floor(scaled * HISTOGRAM_BINS), 0, HISTOGRAM_BINS - 1),
                    "int32")
    counts = ops.bincount(bins, weights=ops.cast(finite, "float32"),
                          minlength=HISTOGRAM_BINS)
    return ops.concatenate([ops.stack([lo, width]), ops.cast(counts, "float32")])


class WeightReader:
    """Weight and update norms of sampled steps: `snapshot()` copies the weights (on
    the device; memory: one model's weights, held only while a step is read), `read`
    returns [weight norms, update norms] against the copy and takes the next copy when
    asked."""

    def __init__(self, variables: Sequence[Any]) -> None:
        self._vars = list(variables)
        self._held: list[Any] | None = None

    def _current(self) -> list[Any]:
        return [ops.stop_gradient(_value(v)) for v in self._vars]

    def snapshot(self) -> None:
        with _no_grad():
            self._held = [ops.copy(v) for v in self._current()]

    def read(self, snapshot_next: bool) -> np.ndarray:
        with _no_grad():
            now = self._current()
            held = self._held if self._held is not None else now
            row = _to_host([_norms(now),
                            _norms([v - h for v, h in zip(now, held, strict=True)])])
            self._held = [ops.copy(v) for v in now] if snapshot_next else None
        return row


def weight_histograms(variables: Sequence[Any], var_layer: Sequence[int],
                      n_layers: int) -> Callable[[], np.ndarray]:
    """`fn()`: one `histogram_row` per layer over all its weights, on the host."""
    def fn() -> np.ndarray:
        with _no_grad():
            values = [ops.stop_gradient(_value(v)) for v in variables]
            return _to_host([histogram_row(ws)
                             for ws in by_layer(values, var_layer, n_layers)])

    return fn


class Probe:
    """`probe(with_histograms)`: one probe pass on (x, y) with training=False, values
    laid out as `keras_tf.Probe`'s and returned on the host. Without gradients (not
    the torch backend) the gradient norms read 0 and the gradient histograms have no
    finite start, and `gradients` is False: the caller writes neither. A failing
    BatchNorm or histogram part is kept in `failed_parts`, as there."""

    def __init__(self, model: keras.Model, act_model: keras.Model | None,
                 kinds: Sequence[str], bn_layers: Sequence[keras.layers.Layer],
                 loss_fn: Callable[..., Any], variables: Sequence[Any],
                 var_layer: Sequence[int], n_layers: int, x: Any, y: Any,
                 histograms: bool = True, undecided: Sequence[int] = ()) -> None:
        # Nothing to leave out: histograms are computed only when asked.
        del histograms
        self.failed_parts: dict[str, BaseException] = {}  # see keras_tf.Probe
        self.gradients = _torch_backend()
        # On torch the first pass tells the `undecided` outputs' kinds from the calls
        # that made them (`keras_torch_kinds`); those found go into `detected` (index
        # -> kind) for the caller to record. Other backends leave them unknown.
        self._undecided = list(undecided) if self.gradients else []
        self.detected: dict[int, str] = {}
        self._model, self._act_model = model, act_model
        self._kinds, self._bn_layers = list(kinds), list(bn_layers)
        self._loss_fn = loss_fn
        self._vars, self._var_layer, self._n_layers = list(variables), var_layer, n_layers
        # Tensors once: an array argument would be converted on every call.
        self._x = keras.tree.map_structure(_model_input, x)
        self._y = ops.convert_to_tensor(y)

    def _forward(self) -> tuple[Any, list[Any], list[Any]]:
        """(prediction, probed outputs, BatchNorm inputs)."""
        if self._act_model is None:
            return self._model(self._x, training=False), [], []
        outs = self._act_model(self._x, training=False)
        outs = list(outs) if isinstance(outs, list | tuple) else [outs]
        n_act, n_bn = len(self._kinds), len(self._bn_layers)
        return outs[-1], outs[:n_act], outs[n_act:n_act + n_bn]

    def _forward_telling_kinds(self) -> tuple[Any, list[Any], list[Any]]:
        """`_forward` with the torch calls watched: the undecided outputs made by an
        activation take its kind (once: a failure leaves them unknown)."""
        from lossdoctor.integrations import keras_torch_kinds

        undecided, self._undecided = self._undecided, []
        with keras_torch_kinds.watched_calls() as made:
            y_pred, acts, bn_inputs = self._forward()
        try:
            told = keras_torch_kinds.kinds_made(acts, undecided, made)
        except Exception as exc:
            self.failed_parts["kinds"] = exc
            told = {}
        for k, kind in told.items():
            self._kinds[k] = self.detected[k] = kind
        return y_pred, acts, bn_inputs

    def _forward_and_gradients(self) -> tuple[list[Any], list[Any], list[Any]]:
        """(probed outputs, BatchNorm inputs, gradient per variable or None)."""
        if not self.gradients:
            with _no_grad():
                _, acts, bn_inputs = self._forward()
            return acts, bn_inputs, [None] * len(self._vars)
        import torch

        params = [_value(v) for v in self._vars]
        with torch.enable_grad():
            if self._undecided:
                y_pred, acts, bn_inputs = self._forward_telling_kinds()
            else:
                y_pred, acts, bn_inputs = self._forward()
            loss = torch.mean(ops.cast(self._loss_fn(self._y, y_pred), "float32"))
            grads = torch.autograd.grad(loss, params, allow_unused=True)
        # A variable the loss does not reach: zero gradient, as on TensorFlow.
        dense = [g if g is not None else torch.zeros_like(p)
                 for p, g in zip(params, grads, strict=True)]
        return [a.detach() for a in acts], [b.detach() for b in bn_inputs], dense

    def _histograms(self, weights: list[Any], grads: list[Any], acts: list[Any]) -> list[Any]:
        """Weights per layer, gradients per layer, then each probed output."""
        rows = [histogram_row(ws) for ws in by_layer(weights, self._var_layer, self._n_layers)]
        absent = ops.concatenate([ops.stack([math.inf, 1.0]), ops.zeros((HISTOGRAM_BINS,))])
        rows += [histogram_row(gs) if self.gradients else absent
                 for gs in by_layer(grads, self._var_layer, self._n_layers)]
        return rows + [histogram_row([a]) for a in acts]

    def __call__(self, with_histograms: bool) -> np.ndarray:
        acts, bn_inputs, grads = self._forward_and_gradients()
        with _no_grad():
            weights = [ops.stop_gradient(_value(v)) for v in self._vars]
            parts: list[Any] = []
            if weights:
                parts.append(_norms([g if g is not None else ops.zeros(())
                                     for g in grads] + weights))
            parts += [activation_stats(a, k) for a, k in zip(acts, self._kinds, strict=True)]
            if bn_inputs:
                try:
                    parts.append(ops.stack([bn_shift(t, layer) for t, layer
                                            in zip(bn_inputs, self._bn_layers, strict=True)]))
                except Exception as exc:
                    self.failed_parts["batchnorm"] = exc
                    parts.append(ops.full((len(bn_inputs),), math.nan, dtype="float32"))
            if with_histograms and "histograms" not in self.failed_parts:
                try:
                    parts += self._histograms(weights, grads, acts)
                except Exception as exc:
                    self.failed_parts["histograms"] = exc
            return _to_host(parts)
