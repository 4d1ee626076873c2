"""Live doctor for Keras 3 (TensorFlow backend): a callback that records per-layer
signals into a lossdoctor run folder, with the same series and run.json layout as
`lossdoctor.torch.Doctor`, and diagnoses while training.

    doc = lossdoctor.keras.Doctor(run_dir="runs/a", probe=(x_train[:64], y_train[:64]))
    model.fit(x, y, validation_data=..., callbacks=[doc])
    doc.report()                                  # the Diagnosis; the run is closed

What a callback can see, and so what is recorded:
- every step: `train/loss_step`, the batch's loss recovered from the running epoch
  mean Keras reports as `loss` (batch k's loss = (k+1)*mean_k - k*mean_{k-1}; exact when
  the batches are the same size, the last smaller batch is approximate);
- every epoch: `epoch/train_loss`, `epoch/val_loss`, `epoch/<train_|val_>accuracy`,
  the `epoch` scalar; `lr` at every read-back;
- on sampled steps (see `Schedule`): per layer `weight_norm`, `update_norm`,
  `update_ratio` (weights copied at the step's start, compared at its end);
- with `probe=(x, y)`, on sampled steps: `grad_norm` per layer (the compiled loss on
  the first `probe_size` probe samples, float32, tf.GradientTape) and per layer
  output `act_mean`, `act_std`, `dead_fraction`, `saturated_fraction`, `nan_count`
  (functional and Sequential models; a subclassed model gets gradients only).
  Callbacks never see the training batches, hence the fixed probe. Without a probe
  these signals are skipped, with one note in run.json.

The probe runs with training=False: dropout off and BatchNorm on its moving
statistics, so the probe never changes the user's model state (a training-mode
BatchNorm call would update the moving averages) and readings are comparable
across steps. nan-origin: on sampled steps, and at once after a non-finite loss, the
first layer whose probe output is non-finite, else the deepest layer with a
non-finite gradient. Every signal is guarded: a failure is one `monitor-error`
finding and training goes on. With `steps_per_execution > 1` Keras calls the
callback once per execution, so "steps" are executions.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from lossdoctor.diagnosis import Diagnosis
from lossdoctor.findings import Finding
from lossdoctor.live.monitor import LiveMonitor, StopTraining
from lossdoctor.live.schedule import Schedule

ACTIVATIONS = {
    "relu": "relu", "relu6": "relu", "leaky_relu": "leakyrelu", "leakyrelu": "leakyrelu",
    "elu": "relu", "gelu": "relu", "selu": "relu", "silu": "relu", "swish": "relu",
    "sigmoid": "sigmoid", "hard_sigmoid": "sigmoid", "tanh": "tanh", "softsign": "tanh",
}
STATS = ("act_mean", "act_std", "dead_fraction", "saturated_fraction", "nan_count")
SATURATION = 0.99  # sigmoid outside [0.01, 0.99], |tanh| above 0.99
CHECK_INTERVAL_S = 10.0  # full diagnosis (new findings printed) at most this often
FLUSH_INTERVAL_S = 2.0  # event-file writes at most this often (and at each epoch end)
PROBE_SIZE = 64

__all__ = ["Doctor", "StopTraining"]


def _layer_kind(layer: keras.layers.Layer) -> str:
    """relu / sigmoid / tanh / ... for what the layer outputs, '' when not an
    activation (Dense(activation='relu') outputs ReLU units)."""
    cls = type(layer).__name__.lower()
    if cls in ACTIVATIONS:
        return ACTIVATIONS[cls]
    act = getattr(layer, "activation", None)
    name = getattr(act, "__name__", "") if act is not None else ""
    return ACTIVATIONS.get(str(name).lower(), "")


def _activation_stats(x: tf.Tensor, kind: str) -> tf.Tensor:
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


def _probe_stats(fn: Callable[..., Any], x: Any, y: Any) -> np.ndarray:
    """One probe pass: [grad norms per variable, activation stats per output]."""
    return np.asarray(fn(x, y), dtype=np.float64)


class Doctor(keras.callbacks.Callback):  # type: ignore[misc]  # keras is untyped
    """Keras callback recording per-layer signals into `run_dir` (see the module doc).

    probe: (x, y) of a few training samples for gradients and activations; the first
        `probe_size` are used. Without it, weights/updates/loss/metrics only.
    every / dense_steps / dense_every: weight/update readings every `every` steps,
        every `dense_every` steps during the first `dense_steps` (see `Schedule`).
    probe_every: gradient/activation readings every `probe_every` steps, every
        `every` steps during the first `dense_steps`.
    on_finding: called with each finding the first time it appears.
    stop_on_critical: when a critical finding appears, `model.stop_training` is set
        (Keras ends the fit after the step) and `should_stop` becomes True.
    verbose: print one line per new finding to stderr.
    check_interval_s / flush_interval_s: as for `lossdoctor.torch.Doctor`.

    One `fit` per Doctor: the run is closed at the end of training.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        *,
        probe: tuple[Any, Any] | None = None,
        probe_size: int = PROBE_SIZE,
        every: int = 10,
        dense_steps: int = 100,
        dense_every: int = 5,
        probe_every: int = 50,
        check_interval_s: float = CHECK_INTERVAL_S,
        flush_interval_s: float = FLUSH_INTERVAL_S,
        hparams: Mapping[str, Any] | None = None,
        on_finding: Callable[[Finding], None] | None = None,
        stop_on_critical: bool = False,
        verbose: bool = True,
    ) -> None:
        super().__init__()
        self.run_dir_arg = run_dir
        self.schedule = Schedule(every, dense_steps, dense_every)
        # A probe pass costs about one training step: every `every` steps at the start,
        # then every `probe_every`.
        self.probe_schedule = Schedule(probe_every, dense_steps, every)
        self.probe = None if probe is None else (probe[0][:probe_size], probe[1][:probe_size])
        self.check_interval_s = check_interval_s
        self.flush_interval_s = flush_interval_s
        self.hparams = dict(hparams or {})
        self.on_finding = on_finding
        self.stop_on_critical = stop_on_critical
        self.verbose = verbose
        self.monitor: LiveMonitor | None = None
        self._step = 0
        self._epoch = 0
        self._batch_in_epoch = 0
        self._prev_mean: float | None = None
        self._epoch_loss_sum = 0.0
        self._epoch_loss_n = 0
        self._first_bad_loss: int | None = None
        self._losses: list[tuple[int, float]] = []
        self._rows: list[tuple[int, np.ndarray]] = []  # weights/updates per sampled step
        self._probe_rows: list[tuple[int, np.ndarray]] = []
        self._lrs: list[tuple[int, float]] = []
        self._weights_fn: Callable[..., Any] | None = None
        self._snapped: int | None = None  # the step whose pre-step weights are held
        self._held: list[Any] = []  # the weight snapshot (tf.Variables)
        self._true: Any = None  # tf.constant(True) / (False), made at setup
        self._false: Any = None
        self._probe_fn: Callable[..., Any] | None = None
        self._probe_ready = False
        self._last_check = time.monotonic()
        self._last_flush = time.monotonic()
        # Filled at on_train_begin.
        self._vars: list[Any] = []
        self._var_layer: list[int] = []
        self._param_layers: list[str] = []
        self._act_layers: list[tuple[str, str]] = []  # (name, kind) in depth order

    # --- setup --------------------------------------------------------------------------
    def _setup(self) -> None:
        model = self.model
        seen: set[int] = set()
        layers_meta: list[dict[str, Any]] = []
        for layer in model.layers:
            if isinstance(layer, keras.layers.InputLayer):
                continue
            own = [v for v in layer.trainable_weights if id(v) not in seen]
            seen.update(id(v) for v in own)
            kind = _layer_kind(layer)
            if own:
                for v in own:
                    self._vars.append(v)
                    self._var_layer.append(len(self._param_layers))
                self._param_layers.append(layer.name)
            layers_meta.append({"name": layer.name, "type": type(layer).__name__,
                                "kind": kind or type(layer).__name__.lower(),
                                "params": int(sum(int(np.prod(v.shape)) for v in own))})
        optimizer = getattr(model, "optimizer", None)
        meta: dict[str, Any] = {
            "framework": "keras",
            "framework_version": keras.__version__,
            "backend": keras.backend.backend(),
            "model": {"class": type(model).__name__,
                      "params": int(model.count_params()) if model.built else None},
            "layers": layers_meta,
            "hparams": {"optimizer": type(optimizer).__name__ if optimizer else None,
                        **_optimizer_hparams(optimizer), **self.hparams},
            "series_notes": {
                "train/loss_step": "per-batch loss recovered from Keras's running epoch "
                "mean (exact for equal batch sizes)",
            },
            "notes": [],
        }
        self.monitor = LiveMonitor(self.run_dir_arg, framework="keras",
                                   schedule=self.schedule, meta=meta,
                                   on_finding=self.on_finding,
                                   stop_on_critical=self.stop_on_critical,
                                   verbose=self.verbose)
        self.run_dir = self.monitor.store.run_dir
        with self.monitor.guard("weights"):
            self._build_weight_fns()
        if self.probe is None:
            self._note("gradients, activations",
                       "no probe=(x, y) given: gradient and activation signals skipped")
        else:
            with self.monitor.guard("probe-setup"):
                self._build_probe()

    def _note(self, signal: str, text: str) -> None:
        assert self.monitor is not None
        self.monitor.store.meta["notes"].append({"level": "info", "signal": signal,
                                                 "note": text})
        self.monitor.store.write_meta()

    def _build_weight_fns(self) -> None:
        """One traced function for the weight readings of sampled steps, over a
        snapshot held in variables (no arguments to convert, one trace, one call per
        sampled step): `fn(norms, snap)` returns [weight norms, update norms] against
        the snapshot when `norms` (zeros otherwise), then copies the weights into the
        snapshot when `snap`. The post-step call of step s takes the snapshot for step
        s + 1 when that step is sampled too, so a sampled step costs one call."""
        variables = [v.value if hasattr(v, "value") else v for v in self._vars]
        with tf.init_scope():
            held = [tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False)
                    for v in variables]
        n2 = 2 * len(variables)

        def readings() -> tf.Tensor:
            w = [tf.norm(tf.cast(v, tf.float32)) for v in variables]
            u = [tf.norm(tf.cast(v - h, tf.float32)) for v, h in zip(variables, held,
                                                                     strict=True)]
            return tf.stack([*w, *u])

        def snapshot(row: tf.Tensor) -> tf.Tensor:
            ops = [h.assign(v) for v, h in zip(variables, held, strict=True)]
            with tf.control_dependencies(ops):
                return tf.identity(row)

        @tf.function(autograph=False)  # type: ignore[untyped-decorator]
        def weights(norms: tf.Tensor, snap: tf.Tensor) -> tf.Tensor:
            row = tf.cond(norms, readings, lambda: tf.zeros([n2], tf.float32))
            return tf.cond(snap, lambda: snapshot(row), lambda: tf.identity(row))

        self._weights_fn, self._held = weights, held
        self._true, self._false = tf.constant(True), tf.constant(False)

    def _build_probe(self) -> None:
        """One traced function: the compiled loss on the probe, its gradients per
        variable, and statistics of each layer's output (functional models)."""
        from lossdoctor.integrations.keras_checks import resolve_loss

        model = self.model
        assert self.probe is not None
        resolved = resolve_loss(getattr(model, "loss", None))
        if resolved is None:
            self._note("gradients", "the model has no compiled loss: gradients skipped")
            return
        loss_fn = resolved[0]
        outputs: list[Any] = []
        try:
            for layer in model.layers:
                if isinstance(layer, keras.layers.InputLayer):
                    continue
                try:
                    out = layer.output
                except (AttributeError, ValueError):
                    continue  # a layer used twice has no single output
                if isinstance(out, list | tuple):
                    out = out[0]
                outputs.append(out)
                self._act_layers.append((layer.name, _layer_kind(layer)))
            act_model: keras.Model | None = keras.Model(
                inputs=model.inputs, outputs=[*outputs, *model.outputs])
        except (AttributeError, ValueError, TypeError):
            self._act_layers = []
            act_model = None
            self._note("activations", "not a functional/Sequential model: activation "
                       "signals skipped, gradients from the model's output")
        kinds = [k for _, k in self._act_layers]
        variables = list(self._vars)
        # Tensors once: a numpy argument would be converted on every call.
        self.probe = (tf.convert_to_tensor(self.probe[0]), tf.convert_to_tensor(self.probe[1]))

        # autograph=False: nothing here branches on tensors, and converting the Keras
        # layers' code roughly doubled the one-off tracing time (about 0.3 s of 0.6 s).
        @tf.function(autograph=False)  # type: ignore[untyped-decorator]
        def probe_fn(x: Any, y: Any) -> tf.Tensor:
            x = tf.cast(x, tf.float32)
            with tf.GradientTape() as tape:
                if act_model is not None:
                    outs = act_model(x, training=False)
                    outs = list(outs) if isinstance(outs, list | tuple) else [outs]
                    y_pred, acts = outs[-1], outs[:len(kinds)]
                else:
                    y_pred, acts = model(x, training=False), []
                loss = tf.reduce_mean(tf.cast(loss_fn(y, y_pred), tf.float32))
            grads = tape.gradient(loss, variables)
            norms = [tf.norm(tf.cast(g, tf.float32)) if g is not None
                     else tf.constant(0.0) for g in grads]
            norms += [tf.norm(tf.cast(v, tf.float32)) for v in variables]
            stats = [_activation_stats(a, k) for a, k in zip(acts, kinds, strict=True)]
            return tf.concat([tf.stack(norms), *stats], axis=0) if stats \
                else tf.stack(norms)

        self._probe_fn = probe_fn
        self._probe_ready = True

    # --- Keras hooks --------------------------------------------------------------------
    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        if self.monitor is not None:
            return
        try:
            self._setup()
        except FileExistsError:
            raise  # a used run_dir: say so before training, as the torch Doctor does
        except Exception as exc:
            if self.monitor is not None:
                self.monitor.monitor_error("setup", exc)
            else:
                raise

    def on_train_batch_begin(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        if self.monitor is None:
            return
        step = self._step
        if self._weights_fn is not None and self._snapped != step \
                and self.schedule.sampled(step):
            with self.monitor.guard("weights"):
                self._weights_fn(self._false, self._true)
                self._snapped = step
        if self.probe_schedule.sampled(step):
            self._run_probe(step)

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        mon = self.monitor
        if mon is None:
            return
        step = self._step
        # The unsampled step's path: the loss, kept as two numbers; nothing else.
        try:
            mean = float(logs["loss"]) if logs and "loss" in logs else None
            if mean is not None:
                k = self._batch_in_epoch
                prev = self._prev_mean
                loss = mean if k == 0 or prev is None else (k + 1) * mean - k * prev
                self._prev_mean = mean
                self._losses.append((step, loss))
                self._epoch_loss_n += 1
                if math.isfinite(loss):
                    self._epoch_loss_sum += loss
                else:
                    self._bad_loss(step)
        except Exception as exc:
            mon.monitor_error("loss", exc)
        if self._snapped == step:
            self._read_weights(step)
        self._batch_in_epoch += 1
        self._step = step + 1
        if self.schedule.sync_due(step):
            self._record_lr(step)
        now = time.monotonic()
        if now - self._last_flush >= self.flush_interval_s:
            self._flush()
        if now - self._last_check >= self.check_interval_s:
            self._check()
        if mon.should_stop:
            self._maybe_stop()

    def _bad_loss(self, step: int) -> None:
        mon = self.monitor
        assert mon is not None
        self._epoch_loss_sum = math.nan
        if self._first_bad_loss is None:
            self._first_bad_loss = step
            if not mon.has_live_finding("nan-origin"):
                self._run_probe(step)  # locate it on the weights as they are now

    def _read_weights(self, step: int) -> None:
        """Weight and update norms of sampled step `step` (its pre-step weights are
        held); the snapshot for step + 1 in the same call when that step is sampled
        (a new epoch drops it: epoch-end callbacks may change the weights)."""
        mon = self.monitor
        assert mon is not None and self._weights_fn is not None
        self._snapped = None
        with mon.guard("updates"):
            nxt = step + 1
            snap = self.schedule.sampled(nxt)
            row = self._weights_fn(self._true, self._true if snap else self._false)
            if snap:
                self._snapped = nxt
            row = row.numpy().astype(np.float64)
            self._rows.append((step, row))
            if not mon.has_live_finding("nan-origin"):
                self._weights_nan_origin(step, row[:len(self._vars)])

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._batch_in_epoch = 0
        self._prev_mean = None
        self._snapped = None  # epoch-end callbacks may have changed the weights

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        mon = self.monitor
        if mon is None:
            return
        step = max(self._step - 1, 0)
        with mon.guard("epoch"):
            given: dict[str, float] = {}
            for name, value in (logs or {}).items():
                try:
                    given[_epoch_tag(name)] = float(value)
                except (TypeError, ValueError):
                    continue
            if "epoch/train_loss" not in given and self._epoch_loss_n:
                given["epoch/train_loss"] = self._epoch_loss_sum / self._epoch_loss_n
            for tag, v in given.items():
                mon.scalar(tag, v, step)
            mon.scalar("epoch", float(self._epoch), step)
        self._record_lr(step)
        self._flush()
        self._epoch_loss_sum, self._epoch_loss_n = 0.0, 0
        self._epoch += 1
        if time.monotonic() - self._last_check >= self.check_interval_s:
            self._check()
        self._maybe_stop()

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        self.close()

    # --- user calls ---------------------------------------------------------------------
    @property
    def should_stop(self) -> bool:
        return self.monitor is not None and self.monitor.should_stop

    def flush(self) -> None:
        """Write everything recorded so far to disk now."""
        self._flush()

    def report(self) -> Diagnosis:
        """The diagnosis of everything recorded so far (what `lossdoctor diagnose
        RUN_DIR` says once training ended)."""
        if self.monitor is None:
            raise RuntimeError("the Doctor has not seen training yet (pass it to fit)")
        if not self.monitor.closed:
            self._drain()
        return self.monitor.report()

    def close(self) -> None:
        mon = self.monitor
        if mon is None or mon.closed:
            return
        self._drain()
        self._check()
        mon.close()

    # --- internals ----------------------------------------------------------------------
    def _run_probe(self, step: int) -> None:
        if not self._probe_ready or self._probe_fn is None or self.probe is None:
            return
        assert self.monitor is not None
        with self.monitor.guard("probe"):
            row = _probe_stats(self._probe_fn, self.probe[0], self.probe[1])
            self._probe_rows.append((step, row))
            if not self.monitor.has_live_finding("nan-origin"):
                self._find_nan_origin(step, row)

    def _record_lr(self, step: int) -> None:
        assert self.monitor is not None
        with self.monitor.guard("lr"):
            lr = getattr(getattr(self.model, "optimizer", None), "learning_rate", None)
            if lr is not None:
                self._lrs.append((step, float(np.asarray(lr))))

    def _maybe_stop(self) -> None:
        mon = self.monitor
        if mon is not None and mon.should_stop and mon.stop_finding is not None:
            mon.stop_finding = None
            self.model.stop_training = True  # a callback must not raise inside fit

    def _flush(self) -> None:
        if self.monitor is None:
            return
        self._drain()
        self._last_flush = time.monotonic()
        self.monitor.flush()

    def _check(self) -> None:
        if self.monitor is None:
            return
        self._drain()
        self._last_check = time.monotonic()
        self.monitor.check()

    def _drain(self) -> None:
        """Write what waits in memory into the store, one batch per series."""
        mon = self.monitor
        assert mon is not None
        losses, rows, probes, lrs = self._losses, self._rows, self._probe_rows, self._lrs
        self._losses, self._rows, self._probe_rows, self._lrs = [], [], [], []
        with mon.guard("write"):
            store = mon.store
            if losses:
                store.add_scalars("train/loss_step", [s for s, _ in losses],
                                  np.array([v for _, v in losses]))
            if lrs:
                store.add_scalars("lr", [s for s, _ in lrs], np.array([v for _, v in lrs]))
            if rows:
                self._write_rows([s for s, _ in rows], np.stack([r for _, r in rows]))
            if probes:
                self._write_probes([s for s, _ in probes], np.stack([r for _, r in probes]))

    def _per_layer(self, norms: np.ndarray) -> np.ndarray:
        sq = np.zeros((norms.shape[0], len(self._param_layers)))
        np.add.at(sq.T, np.asarray(self._var_layer, dtype=np.int64), (norms ** 2).T)
        return np.sqrt(sq)

    def _write_rows(self, steps: list[int], table: np.ndarray) -> None:
        n = len(self._vars)
        lw, lu = self._per_layer(table[:, :n]), self._per_layer(table[:, n:2 * n])
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = lu / lw
        assert self.monitor is not None
        for j, name in enumerate(self._param_layers):
            for tag, col in (("weight_norm", lw), ("update_norm", lu),
                             ("update_ratio", ratio)):
                self.monitor.store.add_scalars(f"layer/{name}/{tag}", steps, col[:, j])

    def _split_probe(self, table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(self._vars)
        grads = self._per_layer(table[:, :n])
        acts = table[:, 2 * n:].reshape(table.shape[0], len(self._act_layers), len(STATS))
        return grads, acts

    def _write_probes(self, steps: list[int], table: np.ndarray) -> None:
        grads, acts = self._split_probe(table)
        store = self.monitor.store  # type: ignore[union-attr]
        for j, name in enumerate(self._param_layers):
            store.add_scalars(f"layer/{name}/grad_norm", steps, grads[:, j])
        for k, (name, kind) in enumerate(self._act_layers):
            for c, stat in enumerate(STATS):
                if stat == "dead_fraction" and kind != "relu":
                    continue
                if stat == "saturated_fraction" and kind not in ("sigmoid", "tanh"):
                    continue
                store.add_scalars(f"layer/{name}/{stat}", steps, acts[:, k, c])

    def _weights_nan_origin(self, step: int, norms: np.ndarray) -> bool:
        # A NaN weight need not show in the layer's output (a fused ReLU maps NaN to 0)
        # and shows in the gradients of the layers below it: look at the weights first.
        bad = {self._var_layer[i] for i, w in enumerate(norms) if not math.isfinite(w)}
        if bad:
            self._nan_origin(step, self._param_layers[min(bad)], "weights")
        return bool(bad)

    def _find_nan_origin(self, step: int, row: np.ndarray) -> None:
        if self._weights_nan_origin(step, row[len(self._vars):2 * len(self._vars)]):
            return
        grads, acts = self._split_probe(row[None, :])
        origin: tuple[str, str] | None = None
        bad_fwd = [k for k in range(acts.shape[1]) if acts[0, k, 4] > 0]
        if bad_fwd:
            origin = (self._act_layers[bad_fwd[0]][0], "forward output")
        else:
            # Backward runs from the output: the deepest bad gradient is where it began.
            bad = [j for j in range(grads.shape[1]) if not math.isfinite(grads[0, j])]
            if bad:
                origin = (self._param_layers[max(bad)], "gradient")
        if origin is not None:
            self._nan_origin(step, *origin)

    def _nan_origin(self, step: int, layer: str, where: str) -> None:
        first_bad = self._first_bad_loss
        exact = first_bad is None or first_bad >= step
        evidence: dict[str, Any] = {"where": where, "observed_at_step": step,
                                    "exact_step": "yes" if exact else "no"}
        if first_bad is not None:
            evidence["loss_nonfinite_from_step"] = first_bad
        assert self.monitor is not None
        self.monitor.live_finding(
            "nan-origin", step=step, epoch=self._epoch, layer=layer, evidence=evidence,
            title=f"NaN/Inf first appeared in the {where} of {layer} (step {step})")


def _epoch_tag(name: str) -> str:
    prefix = "val_" if name.startswith("val_") else ""
    base = name[len(prefix):]
    for long in ("sparse_categorical_", "categorical_", "binary_"):
        if base.startswith(long) and base.endswith("accuracy"):
            base = "accuracy"
    if base == "acc":
        base = "accuracy"
    if prefix:
        return f"epoch/val_{base}"
    if base in ("loss", "accuracy"):
        return f"epoch/train_{base}"
    return f"epoch/{base}"


def _optimizer_hparams(optimizer: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if optimizer is None:
        return out
    try:
        config = optimizer.get_config()
    except Exception:  # an exotic optimizer: its hyperparameters are optional metadata
        return out
    for k, v in config.items():
        if k == "name":
            continue
        if isinstance(v, bool | int | float | str) or v is None:
            out[k] = v
    return out
