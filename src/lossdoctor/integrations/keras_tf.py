"""The TensorFlow side of `lossdoctor.keras.Doctor`: traced functions that compute a
sampled step's readings on the device and return them as one tensor (one read-back).

`lossdoctor.integrations.keras` (the callback) imports this module only on Keras'
TensorFlow backend; it lays out and interprets the values, this module computes them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from lossdoctor.integrations.keras import by_layer
from lossdoctor.live.host_stats import SATURATION
from lossdoctor.live.monitor import HISTOGRAM_BINS


def _value(v: Any) -> Any:
    """The backend variable behind a Keras variable (a tf.Variable)."""
    return v.value if hasattr(v, "value") else v


# TensorFlow ops whose outputs are units of a kind the layer rules read: a custom
# layer's `keras.ops.relu` or `keras.ops.sigmoid` is one of these in the traced graph.
OP_KINDS = {"Relu": "relu", "Relu6": "relu", "LeakyRelu": "leakyrelu",
            "Sigmoid": "sigmoid", "Tanh": "tanh", "Softsign": "tanh"}


def _maker(t: Any) -> Any:
    """The op that computed the graph tensor `t`, through Identity ops (None when
    eager)."""
    op = getattr(t, "op", None)
    while op is not None and op.type == "Identity" and op.inputs:
        op = op.inputs[0].op
    return op


def traced_kinds(acts: Sequence[Any], undecided: Iterable[int]) -> dict[int, str]:
    """While tracing: index -> kind of the undecided probed outputs that an activation
    op made (`OP_KINDS`). An output made by the same op as an earlier one is the
    earlier layer's units handed on (Dropout at inference, an identity layer) and is
    not read twice."""
    makers = [_maker(a) for a in acts]
    kinds = {}
    for k in undecided:
        op = makers[k]
        if op is None or any(m is op for m in makers[:k]):
            continue
        if op.type in OP_KINDS:
            kinds[k] = OP_KINDS[op.type]
    return kinds


def activation_stats(x: tf.Tensor, kind: str) -> tf.Tensor:
    """[mean, std, dead share, saturated share, non-finite flag] of one output (graph
    code). Channels are last in Keras: a unit is dead when it is <= 0 for every sample
    and position."""
    x = tf.cast(x, tf.float32)
    n = tf.cast(tf.maximum(tf.size(x), 1), tf.float32)
    sums = tf.stack([tf.reduce_sum(x), tf.reduce_sum(x * x)]) / n
    mean = sums[0]
    std = tf.sqrt(tf.maximum(sums[1] - mean * mean, 0.0))
    bad = tf.cast(tf.reduce_any(tf.logical_not(tf.math.is_finite(sums))), tf.float32)
    nan = tf.constant(math.nan, tf.float32)
    dead = nan
    if kind == "relu" and x.shape.rank is not None and x.shape.rank >= 2:
        axes = list(range(x.shape.rank - 1))
        dead = tf.reduce_mean(tf.cast(tf.reduce_max(x, axis=axes) <= 0, tf.float32))
    sat = nan
    if kind == "sigmoid":
        sat = tf.reduce_mean(tf.cast(tf.abs(x - 0.5) > SATURATION - 0.5, tf.float32))
    elif kind == "tanh":
        sat = tf.reduce_mean(tf.cast(tf.abs(x) > SATURATION, tf.float32))
    return tf.stack([mean, std, dead, sat, bad])


def bn_shift(x: tf.Tensor, layer: keras.layers.BatchNormalization) -> tf.Tensor:
    """Mean over channels (`layer.axis`) of |z| + |ln s| for the BatchNorm input `x`:
    z is the batch mean minus the moving mean in moving standard deviations, s the
    batch std over the moving std (0 when the batch matches the statistics the layer
    normalizes with when frozen). As `_bn_shift` of the PyTorch doctor."""
    x = tf.cast(x, tf.float32)
    rank = x.shape.rank
    channel = layer.axis % rank
    mean, var = tf.nn.moments(x, axes=[d for d in range(rank) if d != channel])
    moving_var = tf.cast(_value(layer.moving_variance), tf.float32) + layer.epsilon
    z = tf.abs(mean - tf.cast(_value(layer.moving_mean), tf.float32)) / tf.sqrt(moving_var)
    log_ratio = 0.5 * tf.abs(tf.math.log(tf.maximum(var, 1e-12) / moving_var))
    return tf.reduce_mean(z + log_ratio)


def histogram_rows(groups: Sequence[Sequence[Any]]) -> tf.Tensor:
    """One row per group of tensors, [start, width, HISTOGRAM_BINS counts]: equal bins
    over the group's finite values' [min, max] (width 1 when they are all equal; no
    counts and a meaningless start when none is finite). All groups
    are binned by one set of segment ops over their concatenation, so tracing costs
    the same for 3 layers or 300 (a traced op sequence per group cost about 30 ms of
    tracing each)."""
    bins = HISTOGRAM_BINS
    flats: list[tf.Tensor] = []
    sizes: list[tf.Tensor] = []
    for tensors in groups:
        parts = [tf.reshape(tf.cast(t, tf.float32), [-1]) for t in tensors]
        flats += parts
        sizes.append(tf.add_n([tf.size(p) for p in parts]))
    n = len(groups)
    x = tf.concat(flats, axis=0)
    segment = tf.repeat(tf.range(n), tf.stack(sizes))
    finite = tf.math.is_finite(x)
    lo = tf.math.unsorted_segment_min(tf.where(finite, x, math.inf), segment, n)
    hi = tf.math.unsorted_segment_max(tf.where(finite, x, -math.inf), segment, n)
    width = tf.where(hi > lo, hi - lo, tf.ones_like(lo))
    scaled = tf.where(finite, (x - tf.gather(lo, segment)) / tf.gather(width, segment), 0.0)
    index = tf.cast(tf.clip_by_value(tf.floor(scaled * bins), 0.0, bins - 1.0), tf.int32)
    # int32 counts: a float32 sum stops counting at 2**24.
    counts = tf.math.unsorted_segment_sum(tf.cast(finite, tf.int32), segment * bins + index,
                                          n * bins)
    return tf.concat([lo[:, None], width[:, None],
                      tf.cast(tf.reshape(counts, [n, bins]), tf.float32)], axis=1)


class WeightReader:
    """Weight and update norms of sampled steps from one traced function over a
    snapshot held in variables (no arguments to convert, one trace, one call per sampled
    step): `fn(norms, snap)` returns [weight norms, update norms] against the snapshot
    when `norms` (zeros otherwise), then copies the weights into the snapshot when
    `snap`. The post-step call of step s takes the snapshot for step s + 1 when that
    step is sampled too, so a sampled step costs one call."""

    def __init__(self, variables: Sequence[Any]) -> None:
        values = [_value(v) for v in variables]
        with tf.init_scope():
            held = [tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False) for v in values]
        n2 = 2 * len(values)

        def readings() -> tf.Tensor:
            w = [tf.norm(tf.cast(v, tf.float32)) for v in values]
            u = [tf.norm(tf.cast(v - h, tf.float32)) for v, h in zip(values, held, strict=True)]
            return tf.stack([*w, *u])

        def snapshot(row: tf.Tensor) -> tf.Tensor:
            ops = [h.assign(v) for v, h in zip(values, held, strict=True)]
            with tf.control_dependencies(ops):
                return tf.identity(row)

        @tf.function(autograph=False)  # type: ignore[untyped-decorator]
        def weights(norms: tf.Tensor, snap: tf.Tensor) -> tf.Tensor:
            row = tf.cond(norms, readings, lambda: tf.zeros([n2], tf.float32))
            return tf.cond(snap, lambda: snapshot(row), lambda: tf.identity(row))

        self._fn = weights
        self._held = held
        self.true, self.false = tf.constant(True), tf.constant(False)

    def snapshot(self) -> None:
        self._fn(self.false, self.true)

    def read(self, snapshot_next: bool) -> np.ndarray:
        row = self._fn(self.true, self.true if snapshot_next else self.false)
        return np.asarray(row.numpy(), dtype=np.float64)


def weight_histograms(variables: Sequence[Any], var_layer: Sequence[int],
                      n_layers: int) -> Callable[[], tf.Tensor]:
    """A traced function: one `histogram_rows` row per layer over all its weights (for
    runs without a probe; with one, the probe function bins weights too)."""
    values = [_value(v) for v in variables]

    @tf.function(autograph=False)  # type: ignore[untyped-decorator]
    def fn() -> tf.Tensor:
        return tf.reshape(histogram_rows(by_layer(values, var_layer, n_layers)), [-1])

    return fn  # type: ignore[no-any-return]


def model_input(x: Any) -> Any:
    """Probe inputs as the model takes them: floating arrays as float32 (numpy gives
    float64), integer ones (token ids) as they are; any structure of arrays."""
    def one(a: Any) -> Any:
        t = tf.convert_to_tensor(a)
        return tf.cast(t, tf.float32) if t.dtype.is_floating else t

    return tf.nest.map_structure(one, x)


def value_reader(variables: Sequence[Any]) -> Callable[[], list[np.ndarray]]:
    """`read()`: the variables' values as arrays (`keras_host`), one read op each (a
    third of the time of `Variable.numpy()`, which records the read for autodiff)."""
    handles = [(v.handle, v.dtype) for v in map(_value, variables)]
    read_op = tf.raw_ops.ReadVariableOp
    return lambda: [read_op(resource=h, dtype=d).numpy() for h, d in handles]


def scalar_value(v: Any) -> float:
    """A Keras variable's value (the learning rate) by one read op: 0.07 ms against
    0.21 ms through `keras.ops.convert_to_numpy`, read at every weight reading and
    epoch end. Anything else (a schedule's tensor) through numpy."""
    value = _value(v)
    if isinstance(value, tf.Variable):
        return float(tf.raw_ops.ReadVariableOp(resource=value.handle, dtype=value.dtype))
    return float(np.asarray(value))


Arrays = list[np.ndarray]


def gradient_sources(variables: Sequence[Any]) -> list[Any]:
    """The tf.Variables behind Keras variables, for `tape.gradient`: a weight the loss
    does not reach (a layer behind `stop_gradient`, an unused one) gets a zero gradient
    only from these; for a Keras variable TensorFlow reads its dtype, a string, and
    fails."""
    return [_value(v) for v in variables]


def forward_and_gradients(model: keras.Model, act_model: keras.Model | None, n_act: int,
                          n_bn: int, loss_fn: Callable[..., Any], variables: Sequence[Any],
                          x: Any, y: Any, undecided: Sequence[int] = (),
                          told: dict[int, str] | None = None
                          ) -> Callable[[], tuple[Arrays, Arrays, Arrays]]:
    """`raw()` for `keras_host.Probe`: one traced pass on (x, y) with training=False
    that returns the probed outputs, the BatchNorm inputs and the gradient of every
    variable whole, as arrays (no reductions: each traced op costs tracing time).
    Tracing puts the `traced_kinds` of the `undecided` outputs into `told`."""
    variables = list(variables)
    sources = gradient_sources(variables)

    @tf.function(autograph=False)  # type: ignore[untyped-decorator]
    def raw_fn(x: Any, y: Any) -> tuple[list[tf.Tensor], list[tf.Tensor], list[tf.Tensor]]:
        with tf.GradientTape() as tape:
            if act_model is not None:
                outs = act_model(x, training=False)
                outs = list(outs) if isinstance(outs, list | tuple) else [outs]
                y_pred, acts = outs[n_act + n_bn:], outs[:n_act]
                bn_inputs = outs[n_act:n_act + n_bn]
            else:
                y_pred, acts, bn_inputs = model(x, training=False), [], []
            loss = tf.reduce_mean(tf.cast(loss_fn(y, y_pred), tf.float32))
        grads = tape.gradient(loss, sources, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        if told is not None:
            told.update(traced_kinds(acts, undecided))
        return list(acts), list(bn_inputs), [tf.convert_to_tensor(g) for g in grads]

    xt, yt = model_input(x), tf.nest.map_structure(tf.convert_to_tensor, y)  # once

    def raw() -> tuple[Arrays, Arrays, Arrays]:
        acts, bn_inputs, grads = raw_fn(xt, yt)
        return ([a.numpy() for a in acts], [b.numpy() for b in bn_inputs],
                [g.numpy() for g in grads])

    return raw


class Probe:
    """`probe(with_histograms)`: one probe pass on (x, y) with training=False, in one
    traced function. Returns one flat float32 tensor: gradient norms then weight norms
    per variable, `activation_stats` per probed output (`act_model`'s outputs are the
    probed layers' outputs, then the BatchNorm inputs, then the model's outputs), one
    `bn_shift` per BatchNorm input; when `with_histograms`, then `histogram_rows`:
    weights per layer, gradients per layer, each probed output (inside a tf.cond:
    nothing is binned on other calls; `histograms=False` leaves the branch out).

    A BatchNorm or histogram part that cannot be traced leaves the rest of the probe
    working: its error is kept in `failed_parts` (signal -> exception) for the caller
    to report, the shifts read NaN and the histograms are left out.

    The `undecided` outputs (layers that do not say what they output) take the kind
    `traced_kinds` finds while tracing; those found are put in `detected` (index ->
    kind) for the caller to record."""

    def __init__(self, model: keras.Model, act_model: keras.Model | None,
                 kinds: Sequence[str], bn_layers: Sequence[keras.layers.Layer],
                 loss_fn: Callable[..., Any], variables: Sequence[Any],
                 var_layer: Sequence[int], n_layers: int, x: Any, y: Any,
                 histograms: bool = True, undecided: Sequence[int] = ()) -> None:
        n_act, n_bn = len(kinds), len(bn_layers)
        kinds = list(kinds)
        variables = list(variables)
        sources = gradient_sources(variables)
        errors: dict[str, BaseException] = {}
        self.failed_parts = errors
        self.detected: dict[int, str] = {}

        # autograph=False: nothing here branches on tensors, and converting the Keras
        # layers' code roughly doubled the one-off tracing time (about 0.3 s of 0.6 s).
        @tf.function(autograph=False)  # type: ignore[untyped-decorator]
        def probe_fn(x: Any, y: Any, with_histograms: Any) -> tf.Tensor:
            with tf.GradientTape() as tape:
                if act_model is not None:
                    outs = act_model(x, training=False)
                    outs = list(outs) if isinstance(outs, list | tuple) else [outs]
                    y_pred, acts = outs[n_act + n_bn:], outs[:n_act]
                    bn_inputs = outs[n_act:n_act + n_bn]
                else:
                    y_pred, acts, bn_inputs = model(x, training=False), [], []
                loss = tf.reduce_mean(tf.cast(loss_fn(y, y_pred), tf.float32))
            grads = tape.gradient(loss, sources,
                                  unconnected_gradients=tf.UnconnectedGradients.ZERO)
            told = traced_kinds(acts, undecided)
            for k, kind in told.items():
                if kinds[k] != kind:
                    kinds[k] = self.detected[k] = kind
            norms = [tf.norm(tf.cast(g, tf.float32)) for g in grads]
            norms += [tf.norm(tf.cast(v, tf.float32)) for v in variables]
            parts = [tf.stack(norms)] if norms else []
            parts += [activation_stats(a, k) for a, k in zip(acts, kinds, strict=True)]
            if bn_inputs:
                try:
                    parts.append(tf.stack([bn_shift(t, layer) for t, layer
                                           in zip(bn_inputs, bn_layers, strict=True)]))
                except Exception as exc:
                    errors["batchnorm"] = exc
                    parts.append(tf.fill([n_bn], math.nan))

            def histogram_branch() -> tf.Tensor:
                dense = [tf.convert_to_tensor(g) for g in grads]  # IndexedSlices too
                # One call per kind: the concatenation binned at once is one kind's size.
                by_kind = [by_layer([_value(v) for v in variables], var_layer, n_layers),
                           by_layer(dense, var_layer, n_layers), [[a] for a in acts]]
                rows = [tf.reshape(histogram_rows(groups), [-1]) for groups in by_kind
                        if groups]
                return tf.concat(rows, axis=0) if rows else tf.zeros([0])

            extra = tf.zeros([0])
            if histograms:  # tracing the branch costs about half the rest of the probe
                try:
                    extra = tf.cond(with_histograms, histogram_branch,
                                    lambda: tf.zeros([0]))
                except Exception as exc:
                    errors["histograms"] = exc
            return tf.concat([*parts, extra], axis=0)

        self._fn = probe_fn
        # Tensors once: a numpy argument would be converted on every call.
        self._x, self._y = model_input(x), tf.nest.map_structure(tf.convert_to_tensor, y)
        self._true, self._false = tf.constant(True), tf.constant(False)

    def __call__(self, with_histograms: bool) -> tf.Tensor:
        return self._fn(self._x, self._y, self._true if with_histograms else self._false)
