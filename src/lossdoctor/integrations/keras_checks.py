"""Keras 3 side of the pre-flight checks and the LR range test, on any backend Keras
trains on (TensorFlow, torch, JAX; gradients from `keras_autodiff`).

Forward passes that only read (outputs, losses, regularization terms, activation
scales) run on the user's model with training=False; everything that changes
weights runs on a clone (`keras.models.clone_model`, or `from_config` for subclassed
models) trained with its own optimizer, so the user's weights and optimizer state
stay as they were.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import keras
import numpy as np
from keras import ops

from lossdoctor.checks._data import take_sample
from lossdoctor.checks._probe import CheckSkipped, LossInfo, RegularizationProbe, TrainTrace
from lossdoctor.checks._report import CheckReport, merged_by_output
from lossdoctor.checks._run import CHECK_NAMES, CheckOptions, run_checks
from lossdoctor.checks.lr_range import LRRangeResult, Smoother, lr_sequence, suggest
from lossdoctor.integrations import keras_autodiff
from lossdoctor.integrations.keras_losses import for_output, matched_ranks, output_keys

LossFn = Callable[[Any, Any], Any]

_KINDS: list[tuple[str, str, str]] = [
    # normalized name fragment, kind, target
    ("sparsecategoricalcrossentropy", "softmax-ce", "sparse"),
    ("categoricalcrossentropy", "softmax-ce", "one-hot"),
    ("categoricalfocalcrossentropy", "softmax-ce", "one-hot"),
    ("binarycrossentropy", "binary-ce", "binary"),
    ("binaryfocalcrossentropy", "binary-ce", "binary"),
    ("meansquarederror", "mse", "any"),
    ("mse", "mse", "any"),
]


def resolve_loss(spec: Any) -> tuple[LossFn, LossInfo] | None:
    """(per-sample loss function, what it is) for a Keras loss spec, None if absent."""
    if spec is None:
        return None
    if isinstance(spec, list | tuple | dict):
        losses = list(spec.values()) if isinstance(spec, dict) else list(spec)
        if len(losses) != 1:  # several outputs are checked one by one (`check`)
            raise CheckSkipped(f"{len(losses)} losses given for a model with one output")
        spec = losses[0]
    from_logits = False
    if isinstance(spec, str):
        fn: LossFn = keras.losses.get(spec)
        name = spec
    elif isinstance(spec, keras.losses.Loss):
        fn = spec.call  # Loss.call returns the unreduced per-sample values
        name = type(spec).__name__
        kwargs = getattr(spec, "_fn_kwargs", {}) or {}
        from_logits = bool(getattr(spec, "from_logits", kwargs.get("from_logits", False)))
    elif callable(spec):
        fn = spec
        name = getattr(spec, "__name__", type(spec).__name__)
    else:
        raise CheckSkipped(f"the loss {spec!r} is neither a name, a Loss nor a function")
    norm = name.lower().replace("_", "")
    kind, target = "other", "any"
    for fragment, k, t in _KINDS:
        if norm == fragment or (fragment != "mse" and fragment in norm):
            kind, target = k, t
            break
    if kind in ("softmax-ce", "binary-ce"):
        expects = "logits" if from_logits else "probabilities"
    else:
        expects = "any"
    info = LossInfo(name, kind, expects, target, f"from_logits={from_logits}")  # type: ignore[arg-type]
    return matched_ranks(fn), info


def _array(t: Any, dtype: Any = np.float64) -> np.ndarray:
    """A backend tensor (or a Keras variable's value) as a numpy array of its own: on
    torch, a CPU tensor's numpy array shares its memory, so a variable assigned later
    would change it too."""
    return np.array(ops.convert_to_numpy(t), dtype=dtype)


def _mean(x: Any, axis: int = 0) -> Any:
    """`x` averaged over `axis`, in its own dtype (Keras' torch `ops.mean` averages
    float64 in float32)."""
    return ops.sum(x, axis=axis) / ops.cast(ops.shape(x)[axis], x.dtype)


def _const(a: Any) -> Any:
    return ops.convert_to_tensor(np.asarray(a))


def _traced(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` traced once per input shape on TensorFlow (the checks call it hundreds of
    times); as it is elsewhere."""
    if keras.backend.backend() != "tensorflow":
        return fn
    import tensorflow as tf

    return tf.function(fn, reduce_retracing=True)  # type: ignore[no-any-return]


def _built(model: keras.Model, x: np.ndarray) -> None:
    if not model.built or not model.weights:
        model(x[:1], training=False)


def _clone(model: keras.Model, x: np.ndarray, dtype: str | None = None) -> keras.Model:
    """A copy with the same weights (cast to `dtype` when given)."""
    def relayer(layer: keras.layers.Layer) -> keras.layers.Layer:
        config = layer.get_config()
        if dtype is not None:
            config["dtype"] = dtype
        try:
            return layer.__class__.from_config(config)
        except Exception:
            # e.g. a Lambda layer (Keras refuses to rebuild Python lambdas): a layer
            # without weights has nothing to copy, so the clone may share it.
            if layer.weights:
                raise
            return layer

    try:
        clone = keras.models.clone_model(model, clone_function=relayer)
    except ValueError:  # subclassed model: needs get_config/from_config
        if dtype is not None:
            raise
        clone = model.__class__.from_config(model.get_config())
    sample = x[:1].astype(dtype or "float32")
    clone(sample, training=False)
    weights = model.get_weights()
    clone.set_weights([w.astype(dtype) if dtype and w.dtype.kind == "f" else w
                       for w in weights])
    return clone


def _has_embedding(layer: Any) -> bool:
    """Whether an Embedding layer is in the model, nested models included."""
    return isinstance(layer, keras.layers.Embedding) or any(
        _has_embedding(sub) for sub in getattr(layer, "layers", []) if sub is not layer)


class KerasProbe:
    framework = "keras"

    def __init__(self, model: keras.Model, loss: Any, x: np.ndarray) -> None:
        self._model = model
        self.model_name = model.name
        self.takes_indices = _has_embedding(model)
        _built(model, self._x(x))
        self.n_parameters = int(sum(np.prod(v.shape) for v in model.weights))
        self._spec = loss if loss is not None else getattr(model, "loss", None)
        resolved = resolve_loss(self._spec)
        self._loss_fn: LossFn | None = resolved[0] if resolved else None
        self.loss: LossInfo | None = resolved[1] if resolved else None
        self._work: keras.Model | None = None
        self._initial: list[np.ndarray] = []
        self._opt: Any = None
        self._step: Any = None
        self._loss_graph: Any = None

    def _per_sample(self, y: Any, out: Any) -> Any:
        assert self._loss_fn is not None
        values = self._loss_fn(y, out)
        values = ops.reshape(ops.convert_to_tensor(values), (ops.shape(out)[0], -1))
        return _mean(ops.cast(values, out.dtype), axis=1)

    def _x(self, x: np.ndarray, dtype: str = "float32") -> Any:
        arr = np.asarray(x)
        if self.takes_indices and np.issubdtype(arr.dtype, np.integer):
            return ops.convert_to_tensor(arr.astype(np.int32))  # embedding indices stay ints
        return ops.convert_to_tensor(np.asarray(arr, dtype=dtype))

    def outputs(self, x: np.ndarray) -> np.ndarray:
        return _array(self._model(self._x(x), training=False))

    def sample_losses(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        out = self._model(self._x(x), training=False)
        return _array(self._per_sample(_const(y), out))

    def batch_loss(self, x: np.ndarray, y: np.ndarray) -> float:
        out = self._model(self._x(x), training=False)
        spec = self._spec
        if isinstance(spec, keras.losses.Loss):  # honours its reduction
            return float(np.mean(_array(spec(_const(y), out))))
        return float(np.mean(_array(self._per_sample(_const(y), out))))

    def regularization(self, x: np.ndarray, y: np.ndarray) -> RegularizationProbe:
        declared: list[str] = []
        for layer in self._model._flatten_layers(include_self=True):
            for attr in sorted(vars(layer)):
                if attr.endswith("_regularizer") and getattr(layer, attr) is not None:
                    declared.append(f"{layer.name}.{attr.lstrip('_')}")
        out = self._model(self._x(x), training=False)
        loss_off = float(np.mean(_array(self._per_sample(_const(y), out))))
        extra = [float(_array(v)) for v in self._model.losses]
        if extra and not declared:
            declared.append(f"model.losses ({len(extra)} terms from add_loss)")
        # The loss Keras minimizes = compiled loss + sum(model.losses) (compute_loss).
        return RegularizationProbe(declared, loss_off=loss_off, loss_on=loss_off + sum(extra))

    def _work_copy(self, x: np.ndarray) -> keras.Model:
        if self._work is None:
            self._work = _clone(self._model, np.asarray(x, dtype=np.float32))
            self._initial = [w.copy() for w in self._work.get_weights()]
        else:
            self._work.set_weights(self._initial)
        return self._work

    def train(
        self,
        x: np.ndarray,
        y: np.ndarray,
        *,
        steps: int,
        lr: float,
        eval_x: np.ndarray | None = None,
        eval_y: np.ndarray | None = None,
        stop_below: float | None = None,
    ) -> TrainTrace:
        model = self._work_copy(x)
        params = list(model.trainable_variables)
        trace = TrainTrace(losses=[], trainable=int(sum(np.prod(v.shape) for v in params)))
        if not params:
            trace.error = "the model has no trainable weights (trainable=False everywhere)"
            return trace
        xt, yt = self._x(x), _const(y)
        # The first step runs eagerly to tell "no gradient at all" apart; the rest run
        # as one traced function per input shape on TensorFlow, reused by every run.
        loss, grads = keras_autodiff.value_and_gradients(
            lambda: _mean(self._per_sample(yt, model(xt, training=False))), params)
        if not keras_autodiff.reaches_any(grads):
            trace.losses.append(float(_array(loss)))
            trace.error = ("no gradient reaches any trainable weight (the output does "
                           "not depend on them through differentiable ops)")
            return trace
        step_fn = self._step_function(model, params, lr)
        for step in range(steps + 1):
            # The loss before each update; the first one is already computed.
            value = float(_array(loss if step == 0 else self._forward_loss(model, xt, yt)))
            trace.losses.append(value)
            if step == steps or not math.isfinite(value):
                break
            if stop_below is not None and value <= stop_below:
                break
            step_fn(xt, yt)
        trace.outputs = _array(model(xt, training=False))
        if eval_x is not None and eval_y is not None:
            eo = model(self._x(eval_x), training=False)
            trace.eval_losses = _array(self._per_sample(_const(eval_y), eo))
        return trace

    def _forward_loss(self, model: keras.Model, xt: Any, yt: Any) -> Any:
        if self._loss_graph is None:
            def loss(xb: Any, yb: Any) -> Any:
                return _mean(self._per_sample(yb, model(xb, training=False)))

            self._loss_graph = _traced(loss)
        return self._loss_graph(xt, yt)

    def _step_function(self, model: keras.Model, params: list[Any], lr: float) -> Any:
        if self._opt is None:
            self._opt = keras.optimizers.Adam(learning_rate=lr)
            self._opt.build(params)
            opt = self._opt

            def step(xb: Any, yb: Any) -> None:
                # training=False: dropout off, i.e. regularization off while memorizing.
                keras_autodiff.gradient_step(
                    lambda: _mean(self._per_sample(yb, model(xb, training=False))),
                    params, opt)

            self._step = _traced(step)
        else:  # a fresh Adam: zero moments and step count
            for v in self._opt.variables:
                v.assign(ops.zeros(v.shape, v.dtype))
        self._opt.learning_rate = lr
        return self._step

    def gradient_problem(self, x: np.ndarray, y: np.ndarray) -> _KerasGradProblem:
        if keras.backend.backend() == "torch":
            raise CheckSkipped("Keras' torch backend computes parts of a float64 model in "
                               "float32, below what central differences need; the "
                               "TensorFlow and JAX backends, or lossdoctor.check on a "
                               "torch.nn.Module, can check its gradients")
        model, dtype = None, "float32"
        if keras_autodiff.float64_available():
            try:
                model, dtype = _clone(self._model, np.asarray(x, dtype=np.float64),
                                      "float64"), "float64"
            except Exception:  # e.g. a subclassed model or a layer that refuses float64
                model = None
        if model is None:
            model, dtype = self._work_copy(x), "float32"
        return _KerasGradProblem(self, model, dtype, x, y)

    def activation_scales(self, x: np.ndarray) -> list[tuple[str, float]]:
        model = self._model
        weighted = [layer for layer in model.layers
                    if any(len(w.shape) >= 2 for w in layer.trainable_weights)]
        xt = self._x(x)
        if isinstance(model, keras.Sequential):
            scales = []
            h = xt
            for layer in model.layers:
                h = layer(h, training=False)
                if layer in weighted:
                    scales.append((layer.name, float(np.std(_array(h)))))
            return scales
        if not hasattr(model, "_functional") and not isinstance(model, keras.Model):
            raise CheckSkipped("activation scales need a Sequential or functional model")
        try:
            inputs = model.inputs
        except (AttributeError, ValueError):
            inputs = None
        if not inputs:
            raise CheckSkipped("activation scales need a Sequential or functional model; "
                               "this one is subclassed")
        tap = keras.Model(inputs, [layer.output for layer in weighted])
        outs = tap(xt, training=False)
        outs = outs if isinstance(outs, list | tuple) else [outs]
        return [(layer.name, float(np.std(_array(o))))
                for layer, o in zip(weighted, outs, strict=True)]


class _KerasGradProblem:
    def __init__(self, probe: KerasProbe, model: keras.Model, dtype: str,
                 x: np.ndarray, y: np.ndarray) -> None:
        self._probe = probe
        self._model = model
        self.dtype: str = dtype
        self._vars = list(model.trainable_variables)
        self.names: Sequence[str] = [getattr(v, "path", v.name) for v in self._vars]
        self.shapes: Sequence[tuple[int, ...]] = [tuple(int(d) for d in v.shape)
                                                  for v in self._vars]
        self._values = [_array(v.value, dtype=None) for v in self._vars]
        self._x = probe._x(x, dtype)
        self._y = _const(y)

    def _loss(self) -> Any:
        out = self._model(self._x, training=False)
        return _mean(self._probe._per_sample(self._y, out))

    def analytic(self) -> list[np.ndarray]:
        _, grads = keras_autodiff.value_and_gradients(self._loss, self._vars)
        return [np.zeros(s) if g is None else _array(g, dtype=None)
                for g, s in zip(grads, self.shapes, strict=True)]

    def value(self, param: int, flat_index: int) -> float:
        return float(self._values[param].reshape(-1)[flat_index])

    def loss_at(self, param: int, flat_index: int, value: float) -> float:
        arr = self._values[param].copy()
        arr.reshape(-1)[flat_index] = value
        self._vars[param].assign(arr)
        try:
            return float(_array(self._loss()))
        finally:
            self._vars[param].assign(self._values[param])


def check(model: keras.Model, x: Any, y: Any, *, loss: Any, optimizer: Any, x_val: Any,
          y_val: Any, regularizer: Any, options: CheckOptions) -> CheckReport:
    del optimizer, y_val  # Keras regularization lives in model.losses, not the optimizer
    if regularizer is not None:
        raise ValueError("regularizer= is for PyTorch; in Keras declare regularizers on "
                         "the layers (kernel_regularizer=...) or call add_loss")
    inputs = getattr(model, "inputs", None) or []
    if len(inputs) > 1 or isinstance(x, dict):
        names = [t.name for t in inputs] if len(inputs) > 1 else list(x)
        raise ValueError(f"the checks take one input array; this model takes "
                         f"{len(names)} ({', '.join(names)})")
    spec = loss if loss is not None else getattr(model, "loss", None)
    keys = output_keys(model)
    if keys is not None and len(keys) > 1:
        return _check_each_output(model, keys, spec, x, y, x_val, options)
    if keys is None and isinstance(spec, list | tuple | dict):
        raise ValueError("a subclassed model with a loss per output cannot be checked "
                         "output by output; check a functional model of the same layers")
    return _check_one(model, x, y, loss, x_val, options)


# Checks of the model as a whole, run once for a model with several outputs.
WHOLE_MODEL_CHECKS = ("inputs", "initialization")


def _check_each_output(model: keras.Model, keys: list[str], spec: Any, x: Any, y: Any,
                       x_val: Any, options: CheckOptions) -> CheckReport:
    """A model with several outputs: every check on each output that has a loss, as
    the model from the inputs to that output with that loss; the inputs and the
    initialization once."""
    n = len(keys)
    if y is None or not isinstance(y, list | tuple | dict):
        raise ValueError(f"the model has {n} outputs ({', '.join(keys)}): pass x and y "
                         "arrays, y a list or dict with the targets of each output")
    if spec is None:
        raise ValueError("the model has no compiled loss; pass loss=... (a list or dict "
                         "for its outputs)")
    chosen = options.checks if options.checks is not None else CHECK_NAMES
    heads: list[tuple[str, keras.Model, Any, Any]] = []
    for i, key in enumerate(keys):
        head_loss = for_output(spec, i, key, n)
        if head_loss is None:
            continue  # an output trained without a loss: nothing to check against
        targets = for_output(y, i, key, n)
        if targets is None:
            raise ValueError(f"y has no targets for output {key!r}, which has a loss")
        # `model.input`: the inputs in the structure the model takes them.
        head = keras.Model(model.input, model.outputs[i], name=f"{model.name}_{key}")
        heads.append((key, head, head_loss, targets))
    if not heads:
        raise ValueError("no output of the model has a loss")
    whole_checks = tuple(c for c in chosen if c in WHOLE_MODEL_CHECKS)
    output_checks = tuple(c for c in chosen if c not in WHOLE_MODEL_CHECKS)
    _, first, first_loss, first_targets = heads[0]
    whole = _check_one(first, x, first_targets, first_loss, x_val,
                       replace(options, checks=whole_checks)) if whole_checks else None
    per_output = [(key, _check_one(head, x, targets, head_loss, None,
                                   replace(options, checks=output_checks)))
                  for key, head, head_loss, targets in heads] if output_checks else []
    return merged_by_output("keras", model.name, whole, per_output)


def _check_one(model: keras.Model, x: Any, y: Any, loss: Any, x_val: Any,
               options: CheckOptions) -> CheckReport:
    rng = np.random.default_rng(options.seed)
    xs, _, _ = take_sample(x, y, min(options.samples, 8), rng)
    try:
        probe = KerasProbe(model, loss, xs)
    except CheckSkipped as skip:
        raise ValueError(str(skip)) from None
    return run_checks(probe, x, y, x_val=x_val, options=options)


def _batch_loss(probe: KerasProbe, model: keras.Model, x: np.ndarray, y: np.ndarray
                ) -> keras_autodiff.Loss:
    """The mean loss of `model` on one batch, in training mode, as a function."""
    xb, yb = probe._x(x), _const(y)
    return lambda: _mean(probe._per_sample(yb, model(xb, training=True)))


def lr_range_test(
    model: keras.Model,
    x: Any,
    y: Any = None,
    *,
    loss: Any = None,
    optimizer: Any = None,
    start_lr: float = 1e-6,
    end_lr: float = 10.0,
    steps: int = 100,
    batch_size: int = 32,
    samples: int = 2048,
    seed: int = 0,
) -> LRRangeResult:
    """Train a clone while the LR grows from start_lr to end_lr. The optimizer used is
    a fresh one built from `optimizer` (or the compiled one's config; Adam if none)."""
    keys = output_keys(model)
    if keys is not None and len(keys) > 1:
        raise ValueError(f"lr_range_test takes a model with one output; this one has "
                         f"{len(keys)} ({', '.join(keys)})")
    rng = np.random.default_rng(seed)
    xs, ys, _ = take_sample(x, y, samples, rng)
    probe = KerasProbe(model, loss, xs)
    if probe.loss is None:
        raise ValueError("lr_range_test needs loss=... or a compiled model")
    work = _clone(model, xs.astype(np.float32))
    base = optimizer if optimizer is not None else getattr(model, "optimizer", None)
    if base is not None:
        config = base.get_config()
        config["learning_rate"] = float(start_lr)
        opt = base.__class__.from_config(config)
    else:
        opt = keras.optimizers.Adam(learning_rate=float(start_lr))
    params = list(work.trainable_variables)
    lrs = lr_sequence(start_lr, end_lr, steps)
    smoother = Smoother()
    losses: list[float] = []
    smoothed: list[float] = []
    stopped = False
    bs = min(batch_size, len(xs))
    order = rng.permutation(len(xs))
    pos = 0
    for lr in lrs:
        if pos + bs > len(xs):
            order, pos = rng.permutation(len(xs)), 0
        idx = order[pos : pos + bs]
        pos += bs
        opt.learning_rate = float(lr)
        value, grads = keras_autodiff.value_and_gradients(
            _batch_loss(probe, work, xs[idx], ys[idx]), params)
        opt.apply_gradients([(g, v) for g, v in zip(grads, params, strict=True)
                             if g is not None])
        losses.append(float(_array(value)))
        s, stop = smoother.add(losses[-1])
        smoothed.append(s)
        if stop:
            stopped = True
            break
    return suggest([float(v) for v in lrs[: len(losses)]], losses, smoothed, stopped)
