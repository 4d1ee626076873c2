"""The eager side of `lossdoctor.keras.Doctor` for Keras backends other than TensorFlow:
the same readings as `keras_tf`, with `keras.ops` on the backend's tensors (on the
device), computed only on sampled steps and read back in one transfer per call.

Probe gradients come from `torch.autograd` on the torch backend and from
`jax.value_and_grad` of the model's `stateless_call` on JAX, where a probe pass and
a weight reading are each compiled whole (JAX compiles op by op otherwise, for each new
shape). Elsewhere the probe has no gradients (`Probe.gradients` is False) and the
Doctor notes it in run.json. `lossdoctor.integrations.keras` imports this module only
on a non-TensorFlow backend, so TensorFlow is never imported there.
"""

from __future__ import annotations

import contextlib
import functools
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


def _jax_backend() -> bool:
    return bool(keras.backend.backend() == "jax")


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
    weights = ops.cast(finite, "float32")
    if _jax_backend():  # compiled (see `Probe._jax_call`): bincount's length must be static
        counts = ops.segment_sum(weights, bins, num_segments=HISTOGRAM_BINS)
    else:
        counts = ops.bincount(bins, weights=weights, minlength=HISTOGRAM_BINS)
    return ops.concatenate([ops.stack([lo, width]), ops.cast(counts, "float32")])


def _split(outs: Any, n_act: int, n_bn: int) -> tuple[Any, list[Any], list[Any]]:
    """A probe model's outputs as (the model's outputs, probed outputs, BatchNorm
    inputs)."""
    outs = list(outs) if isinstance(outs, list | tuple) else [outs]
    return outs[n_act + n_bn:], outs[:n_act], outs[n_act:n_act + n_bn]


def _jax_forward_and_gradients(model: keras.Model, act_model: keras.Model | None, n_act: int,
                               n_bn: int, loss_fn: Callable[..., Any],
                               variables: Sequence[Any], x: Any, y: Any
                               ) -> tuple[list[Any], list[Any], list[Any]]:
    """(probed outputs, BatchNorm inputs, gradient per variable) of a probe pass on
    JAX: the loss is a function of the weights' values through the model's
    `stateless_call`, so `jax.value_and_grad` takes its gradients."""
    import jax

    net = model if act_model is None else act_model
    trainable = list(net.trainable_variables)
    frozen = [_value(v) for v in net.non_trainable_variables]

    def loss_of(values: list[Any]) -> tuple[Any, tuple[list[Any], list[Any]]]:
        outs, _ = net.stateless_call(values, frozen, x, training=False)
        acts: list[Any] = []
        bn_inputs: list[Any] = []
        if act_model is None:
            y_pred = outs
        else:
            y_pred, acts, bn_inputs = _split(outs, n_act, n_bn)
        return ops.mean(ops.cast(loss_fn(y, y_pred), "float32")), (acts, bn_inputs)

    (_, (acts, bn_inputs)), grads = jax.value_and_grad(loss_of, has_aux=True)(
        [_value(v) for v in trainable])
    # In the Doctor's variable order; a variable the loss does not reach: zero.
    at = {id(v): k for k, v in enumerate(trainable)}
    dense = [grads[at[id(v)]] if id(v) in at else ops.zeros_like(_value(v))
             for v in variables]
    return list(acts), list(bn_inputs), dense


def _jax_compiled(model: keras.Model, fn: Callable[..., Any],
                  static: tuple[int, ...] = ()) -> Callable[..., Any]:
    """`fn(*args)` compiled by JAX as a function of the model's variables' values,
    called as `compiled(*args)` (the arguments at `static` positions compile a
    version each). Op by op, JAX compiles each op for each new shape first: 1.5 s
    for a 3-layer MLP's probe gradients, 4.2 s for its histograms, against 0.4 s for
    the pass compiled whole, once per fit."""
    import jax

    jitted = jax.jit(_of_values(model, fn), static_argnums=tuple(k + 1 for k in static))
    return lambda *args: jitted(_values(model), *args)


def _values(model: keras.Model) -> list[Any]:
    return [_value(v) for v in (*model.trainable_variables, *model.non_trainable_variables)]


def _of_values(model: keras.Model, fn: Callable[..., Any]) -> Callable[..., Any]:
    """`run(values, *args)`: `fn(*args)` with the model's variables (trainable, then
    the others) at `values`. Every read of a variable inside (the forward pass, the
    weights, BatchNorm statistics) sees the value passed in, so that JAX traces it as
    an argument, not as a constant."""
    variables = [*model.trainable_variables, *model.non_trainable_variables]

    def run(values: list[Any], *args: Any) -> Any:
        with keras.StatelessScope(state_mapping=list(zip(variables, values, strict=True))):
            return fn(*args)

    return run


def _jax_kinds(model: keras.Model, act_model: keras.Model, x: Any, n_act: int, n_bn: int,
               undecided: Sequence[int]) -> dict[int, str]:
    """index -> kind of the undecided probed outputs that an activation made, from the
    forward pass's jaxpr (`keras_jax_kinds`); none when it cannot be traced (their
    values tell ReLUs apart then, as before)."""
    from lossdoctor.integrations import keras_jax_kinds

    forward = _of_values(model, lambda: _split(act_model(x, training=False), n_act, n_bn)[1])
    try:
        return keras_jax_kinds.kinds_made(forward, _values(model), undecided)
    except Exception:
        return {}


def value_reader(variables: Sequence[Any]) -> Callable[[], list[np.ndarray]]:
    """`read()`: the variables' values as arrays (`keras_host`, on JAX)."""
    return lambda: [np.asarray(_value(v)) for v in variables]


def forward_and_gradients(model: keras.Model, act_model: keras.Model | None, n_act: int,
                          n_bn: int, loss_fn: Callable[..., Any], variables: Sequence[Any],
                          x: Any, y: Any, undecided: Sequence[int] = (),
                          told: dict[int, str] | None = None
                          ) -> Callable[[], tuple[list[np.ndarray], ...]]:
    """`raw()` for `keras_host.Probe` on JAX, as `keras_tf.forward_and_gradients`: one
    compiled pass returning the probed outputs, BatchNorm inputs and gradients whole,
    reduced on the host (no reductions or histograms in the compilation: with them the
    benchmark CNN's pass compiled in 1.6 s and took 6.2 ms, against 0.55-0.83 s and
    about 4 ms for the forward and backward pass alone). The undecided outputs made by
    an activation take its kind in `told` (`keras_jax_kinds`); the others are told by
    their values there."""
    xt = keras.tree.map_structure(_model_input, x)
    yt = keras.tree.map_structure(ops.convert_to_tensor, y)
    if undecided and told is not None and act_model is not None:
        told.update(_jax_kinds(model, act_model, xt, n_act, n_bn, undecided))
    compiled = _jax_compiled(model, lambda: _jax_forward_and_gradients(
        model, act_model, n_act, n_bn, loss_fn, variables, xt, yt))

    def raw() -> tuple[list[np.ndarray], ...]:
        acts, bn_inputs, grads = compiled()
        return ([np.asarray(a) for a in acts], [np.asarray(b) for b in bn_inputs],
                [np.asarray(g) for g in grads])

    return raw


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
            if _jax_backend():
                row = np.asarray(_jax_norms_and_updates()(now, held), dtype=np.float64)
            else:
                row = _to_host(_norms_and_updates(now, held))
            self._held = [ops.copy(v) for v in now] if snapshot_next else None
        return row


def _norms_and_updates(now: list[Any], held: list[Any]) -> list[Any]:
    return [_norms(now), _norms([v - h for v, h in zip(now, held, strict=True)])]


@functools.cache
def _jax_norms_and_updates() -> Callable[[list[Any], list[Any]], Any]:
    """`_norms_and_updates` compiled once per process and set of shapes: op by op,
    JAX compiles each op for each shape first (0.55 s for a 3-layer MLP)."""
    import jax

    return jax.jit(lambda now, held: ops.concatenate(_norms_and_updates(now, held)))


def weight_histograms(variables: Sequence[Any], var_layer: Sequence[int],
                      n_layers: int) -> Callable[[], np.ndarray]:
    """`fn()`: one `histogram_row` per layer over all its weights, on the host."""
    def rows(values: list[Any]) -> list[Any]:
        return [histogram_row(ws) for ws in by_layer(values, var_layer, n_layers)]

    if _jax_backend():  # compiled whole (see `_jax_compiled`)
        import jax

        compiled = jax.jit(lambda values: ops.concatenate(rows(values)))
        return lambda: np.asarray(compiled([_value(v) for v in variables]), dtype=np.float64)

    def fn() -> np.ndarray:
        with _no_grad():
            return _to_host(rows([ops.stop_gradient(_value(v)) for v in variables]))

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
        self.gradients = _torch_backend() or _jax_backend()
        # On torch the first pass tells the `undecided` outputs' kinds from the calls
        # that made them (`keras_torch_kinds`); those found go into `detected` (index
        # -> kind) for the caller to record. Other backends leave them unknown.
        self._undecided = list(undecided) if _torch_backend() else []
        self.detected: dict[int, str] = {}
        self._model, self._act_model = model, act_model
        self._kinds, self._bn_layers = list(kinds), list(bn_layers)
        self._loss_fn = loss_fn
        self._vars, self._var_layer, self._n_layers = list(variables), var_layer, n_layers
        # Tensors once: an array argument would be converted on every call.
        self._x = keras.tree.map_structure(_model_input, x)
        self._y = keras.tree.map_structure(ops.convert_to_tensor, y)
        if _jax_backend() and undecided and act_model is not None:  # before compiling
            told = _jax_kinds(model, act_model, self._x, len(kinds), len(bn_layers),
                              undecided)
            for k, kind in told.items():
                self._kinds[k] = self.detected[k] = kind
        self._jitted: Callable[[bool], Any] | None = None  # JAX's compiled pass

    def _forward(self) -> tuple[Any, list[Any], list[Any]]:
        """(prediction, probed outputs, BatchNorm inputs)."""
        if self._act_model is None:
            return self._model(self._x, training=False), [], []
        return _split(self._act_model(self._x, training=False), len(self._kinds),
                      len(self._bn_layers))

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
        import torch  # JAX's pass is compiled whole instead (`_jax_call`)

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
        if _jax_backend():
            return self._jax_call(with_histograms)
        acts, bn_inputs, grads = self._forward_and_gradients()
        with _no_grad():
            return _to_host(self._parts(acts, bn_inputs, grads, with_histograms))

    def _jax_call(self, with_histograms: bool) -> np.ndarray:
        """The whole pass compiled (see `_jax_compiled`), a version with histograms
        and one without."""
        if self._jitted is None:
            def run(histograms: bool) -> Any:
                acts, bn_inputs, grads = _jax_forward_and_gradients(
                    self._model, self._act_model, len(self._kinds), len(self._bn_layers),
                    self._loss_fn, self._vars, self._x, self._y)
                return ops.concatenate([ops.reshape(ops.cast(p, "float32"), [-1]) for p
                                        in self._parts(acts, bn_inputs, grads, histograms)])

            self._jitted = _jax_compiled(self._model, run, static=(0,))
        return np.asarray(self._jitted(with_histograms), dtype=np.float64)

    def _parts(self, acts: list[Any], bn_inputs: list[Any], grads: list[Any],
               with_histograms: bool) -> list[Any]:
        """The values of a pass, in `keras_tf.Probe`'s layout."""
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
        return parts
