"""Live doctor for Keras 3: a callback that records per-layer signals into a
lossdoctor run folder, with the same series and run.json layout as
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
  the first `probe_size` probe samples, float32; with several outputs, each output's
  loss times its loss weight, as Keras sums them) and per layer output `act_mean`,
  `act_std`, `dead_fraction`, `saturated_fraction`, `nan_count` (functional and
  Sequential models; a subclassed model gets gradients only). The kind of unit comes
  from the layer (an activation layer, `activation=`, a `Lambda` of a named
  function); a layer with weights that does not say (a custom layer or nested model
  applying a ReLU in `call`) is read as ReLUs once a probe shows it, on the host side
  only (`keras_host.Probe`). Callbacks never see
  the training batches, hence the fixed probe (an array, or a list or dict of arrays
  for a model with several inputs). Without a probe these signals are skipped, with
  one note in run.json;
- a model not built when fit starts (subclassed: its weights are made by its first
  training step) is read from the first reading after that step, with a note;
- BatchNormalization layers (nested models' too, named `outer/inner`), on probe
  steps: `bn_frozen` (1 while the layer normalizes with frozen moving statistics:
  `trainable=False`, which Keras runs in inference mode during fit, or momentum 1)
  and, while frozen, `bn_shift` of the layer's input on the probe against its moving
  statistics (see `keras_tf.bn_shift`), for the frozen-batchnorm rule;
- histograms (`layer/<name>/weight_hist`, and with a probe `grad_hist` and, per
  probed output, `act_hist`): on step 0 and every `histogram_every` steps, 30 equal
  bins over each tensor's finite [min, max], binned on the device in the probe's
  pass and read back with it.

The probe runs with training=False: dropout off and BatchNorm on its moving
statistics, so the probe never changes the user's model state (a training-mode
BatchNorm call would update the moving averages) and readings are comparable
across steps. So a BatchNorm layer's probe input is its training input only when
the BatchNorm layers before it are frozen too (the usual fine-tuning case).
nan-origin: on sampled steps, and at once after a non-finite loss, the first layer
whose probe output is non-finite, else the deepest layer with a non-finite gradient.
Every signal is guarded: a failure is one `monitor-error` finding and training goes
on. With `steps_per_execution > 1` Keras calls the callback once per execution, so
"steps" are executions; their losses are the execution's mean and their update norms
the execution's update divided by the updates it holds (run.json notes it). With an
optimizer's `gradient_accumulation_steps=k`, weight readings are taken on the steps
that apply an update (one in k).

Backends: on TensorFlow a small model's weights are read back whole and reduced on
the host, and its probe pass is one traced forward and backward pass whose outputs
and gradients are reduced there too (`keras_host`: tracing each reduction into a
function costs more, once per fit, than a small read-back); past `keras_host.HOST_LIMIT`
values the reductions are traced functions on the device (`keras_tf`, gradients with
tf.GradientTape). On JAX the same, with the probe pass compiled by JAX and its
gradients from jax.value_and_grad (`keras_eager`); its trainer keeps the weights
outside the model during an epoch, so each reading first puts them back
(`_attach_state`). On torch they are eager `keras.ops` on sampled steps
(`keras_eager`), with probe gradients from torch.autograd. TensorFlow is imported
only on its backend.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import keras
import numpy as np

from lossdoctor.checks._data import first_batches
from lossdoctor.diagnosis import Diagnosis
from lossdoctor.findings import Finding
from lossdoctor.integrations.keras_losses import model_loss, output_keys
from lossdoctor.live.at_exit import close_at_exit
from lossdoctor.live.budget import OverheadBudget, ReadingPlan
from lossdoctor.live.monitor import HISTOGRAM_BINS, LiveMonitor, StopTraining
from lossdoctor.live.pacing import CHECK_INTERVAL_S, FLUSH_INTERVAL_S, Pacer
from lossdoctor.live.schedule import Schedule
from lossdoctor.run import SKIPPED_STEPS

ACTIVATIONS = {
    "relu": "relu", "relu6": "relu", "leaky_relu": "leakyrelu", "leakyrelu": "leakyrelu",
    "elu": "relu", "gelu": "relu", "selu": "relu", "silu": "relu", "swish": "relu",
    "sigmoid": "sigmoid", "hard_sigmoid": "sigmoid", "tanh": "tanh", "softsign": "tanh",
}
STATS = ("act_mean", "act_std", "dead_fraction", "saturated_fraction", "nan_count")
PROBE_SIZE = 64
HISTOGRAM_ROW = 2 + HISTOGRAM_BINS  # start, width, counts


def by_layer(items: Sequence[Any], var_layer: Sequence[int], n_layers: int) -> list[list[Any]]:
    """`items` (one per variable) grouped by the layer each variable belongs to (for the
    backends' per-layer histograms)."""
    grouped: list[list[Any]] = [[] for _ in range(n_layers)]
    for item, j in zip(items, var_layer, strict=True):
        grouped[j].append(item)
    return grouped


__all__ = ["Doctor", "StopTraining"]


def _layer_kind(layer: keras.layers.Layer) -> str:
    """relu / sigmoid / tanh / ... for what the layer outputs, '' when not an
    activation (Dense(activation='relu') outputs ReLU units; a Lambda layer of a named
    activation function too; a custom layer's `call` cannot be told)."""
    cls = type(layer).__name__.lower()
    if cls in ACTIVATIONS:
        return ACTIVATIONS[cls]
    act = getattr(layer, "activation", None)
    if act is None and isinstance(layer, keras.layers.Lambda):
        act = getattr(layer, "function", None)  # Lambda(keras.ops.relu), Lambda(tf.nn.tanh)
    name = getattr(act, "__name__", "") if act is not None else ""
    return ACTIVATIONS.get(str(name).lower(), "")


def _sublayers(layer: Any) -> list[Any]:
    """The layers directly inside `layer` (a model's or a custom layer's)."""
    flatten = getattr(layer, "_flatten_layers", None)  # Keras 3: tracked sublayers
    if flatten is not None:
        return list(flatten(include_self=False, recursive=False))
    return list(getattr(layer, "layers", None) or [])


def _batchnorms(model: Any) -> list[tuple[str, Any, Any]]:
    """(name, layer, input) for every BatchNormalization layer inside `model`, nested
    models' named `outer/inner`; the input is a tensor of `model`'s graph, None where
    none is known (a subclassed model's layers)."""
    out: list[tuple[str, Any, Any]] = []
    for layer in _sublayers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            out.append((layer.name, layer, _graph_input(layer)))
            continue
        inner = _batchnorms(layer)
        if inner:
            outer = _nested_inputs(layer, [t for _, _, t in inner])
            out += [(f"{layer.name}/{name}", bn, t)
                    for (name, bn, _), t in zip(inner, outer, strict=True)]
    return out


def _graph_input(layer: Any) -> Any:
    """The layer's input at its first call (as `layer.output` for the probed outputs);
    a call outside the model's graph makes the probe's model fail to build, and the
    probe is then built without it."""
    try:
        return layer.input
    except (AttributeError, ValueError, IndexError):
        return None


def _nested_inputs(nested: Any, tensors: list[Any]) -> list[Any]:
    """`tensors` of a nested model's graph carried into the graph that calls it: a
    model from the nested model's inputs to them, applied to the nested model's
    inputs in the outer graph (that part of the forward pass runs twice on a probe)."""
    known = [t for t in tensors if t is not None]
    nodes = getattr(nested, "_inbound_nodes", [])
    if not known or not nodes or not isinstance(nested, keras.Model):
        return [None] * len(tensors)
    try:
        inner = keras.Model(nested.inputs, known)
        carried = inner(nodes[0].arguments.args[0])
    except (AttributeError, ValueError, TypeError, IndexError):
        return [None] * len(tensors)
    carried = list(carried) if isinstance(carried, list | tuple) else [carried]
    it = iter(carried)
    return [next(it) if t is not None else None for t in tensors]


def _bn_frozen(layer: Any) -> float:
    """1.0 while a BatchNorm layer normalizes with moving statistics that do not move
    during fit: Keras uses batch statistics only when `training and self.trainable`,
    and momentum 1 never updates them."""
    return 1.0 if not layer.trainable or float(layer.momentum) >= 1.0 else 0.0


def _backend_module() -> Any:
    """The module computing the readings: traced functions on the TensorFlow backend,
    eager `keras.ops` elsewhere (so TensorFlow is imported only on its own backend)."""
    if keras.backend.backend() == "tensorflow":
        from lossdoctor.integrations import keras_tf

        return keras_tf
    from lossdoctor.integrations import keras_eager

    return keras_eager


def _first(data: Any, n: int) -> Any:
    """The first `n` samples of model inputs or targets: an array, or a list, tuple or
    dict of arrays (a model with several inputs)."""
    return keras.tree.map_structure(lambda a: a[:n], data)


def _probe_samples(probe: Any, n: int) -> tuple[Any, Any]:
    """(x, y): the first `n` samples of `probe`, which is a pair (x, y) of arrays or
    tensors (or of lists or dicts of them), or something that yields (x, y[, weights])
    batches and can be iterated again: a `tf.data.Dataset`, a `keras.utils.PyDataset`,
    a torch `DataLoader`, a list of batches. Batches are drawn until there are `n`
    samples, as arrays."""
    if (isinstance(probe, tuple) and len(probe) == 2) or (
            isinstance(probe, list) and len(probe) == 2 and hasattr(probe[0], "shape")):
        return _first(probe[0], n), _first(probe[1], n)
    if isinstance(probe, keras.utils.PyDataset):
        batches: Any = (probe[i] for i in range(len(probe)))
    elif isinstance(probe, Iterable) and not isinstance(probe, str | bytes | dict) \
            and not hasattr(probe, "shape"):  # an array alone: inputs without targets
        batches = iter(probe)
        if batches is probe:  # drawing from it would take batches from the user's training
            raise TypeError("probe: a generator or iterator would be used up here; pass "
                            "(x, y), or a dataset that can be iterated again")
    else:
        raise TypeError(f"probe: expected (x, y) or a dataset of (x, y) batches, got "
                        f"{type(probe).__name__}")
    xs, ys = first_batches(batches, n, _probe_batch, _samples)
    x, y = (keras.tree.map_structure(
        lambda *parts: np.concatenate([keras.ops.convert_to_numpy(p) for p in parts]), *found)
            for found in (xs, ys))
    return _first(x, n), _first(y, n)


def _probe_batch(batch: Any) -> tuple[Any, Any]:
    """(x, y) of a dataset's batch: (x, y) or (x, y, sample_weight)."""
    if not isinstance(batch, tuple | list) or len(batch) < 2:
        raise TypeError("probe: each batch of the dataset must be (x, y) or "
                        f"(x, y, sample_weight), got {type(batch).__name__}")
    return batch[0], batch[1]


def _samples(data: Any) -> int:
    """The number of samples in model inputs (see `_first`)."""
    return len(keras.tree.flatten(data)[0])


def _on_host(values: int) -> bool:
    """Whether readings of `values` numbers are read back whole and reduced on the host
    (`keras_host`): on the TensorFlow and JAX backends while they are few, where
    tracing or compiling their reductions into a device function would cost more than
    the read-back (see `keras_host`, `keras_eager._jax_compiled`); torch reduces eagerly
    on the device at no such cost."""
    from lossdoctor.integrations.keras_host import HOST_LIMIT

    return keras.backend.backend() in ("tensorflow", "jax") and values <= HOST_LIMIT


def _probe_values(act_model: keras.Model | None, n: int) -> int:
    """Values in one probe pass's outputs (`n` samples); a huge number when a shape is
    not known."""
    if act_model is None:
        return 0
    total = 0
    for t in act_model.outputs:
        shape = tuple(t.shape)[1:]
        if any(d is None for d in shape):
            return 1 << 62
        total += n * int(np.prod(shape, dtype=np.int64))
    return total


def _compiled_loss(model: keras.Model) -> Callable[[Any, Any], Any] | None:
    """`keras_losses.model_loss` of `model` as compiled: its loss and loss weights, the
    keys of its outputs (a functional model's dict keys or output layer names)."""
    # The `compile` arguments as given (`get_compile_config()` would serialize them,
    # which imports TensorFlow on any backend).
    config = getattr(getattr(model, "_compile_config", None), "config", None)
    weights = config.get("loss_weights") if isinstance(config, dict) else None
    return model_loss(getattr(model, "loss", None), weights, output_keys(model))


def _probe_stats(fn: Callable[..., Any], *args: Any) -> np.ndarray:
    """One probe pass: [grad norms, weight norms per variable, activation stats per
    output, bn_shift per measured BatchNorm layer, histograms when asked]."""
    return np.asarray(fn(*args), dtype=np.float64)


class Doctor(keras.callbacks.Callback):  # type: ignore[misc]  # keras is untyped
    """Keras callback recording per-layer signals into `run_dir` (see the module doc).

    probe: (x, y) of a few training samples for gradients and activations; the first
        `probe_size` are used. Or a dataset of (x, y) batches that can be iterated
        again (`tf.data.Dataset`, `keras.utils.PyDataset`, a torch `DataLoader`):
        batches are drawn from it once, here, until there are `probe_size` samples.
        Without it, weights/updates/loss/metrics only.
    every / dense_steps / dense_every: weight/update readings every `dense_every`
        steps during the first `dense_steps`, then every `every` steps or more (see
        `max_overhead`).
    probe_every: gradient/activation readings every `every` steps during the first
        `dense_steps`, then every `probe_every` steps, spaced out as the weight
        readings are.
    max_overhead: the share of training time the Doctor may take (default 0.01), as
        for `lossdoctor.torch.Doctor`: it times its work against the steps and, after
        the dense start, lengthens the periods by the same factor, up to `max_every`
        (default 10 x `every`) for weight readings; None keeps the schedule.
    histogram_every: per-layer histograms (`layer/<name>/weight_hist`, with a probe
        `grad_hist` and `act_hist`; 30 equal bins over the finite values' [min, max],
        binned on the device, read back in one transfer) on step 0 and every
        `histogram_every` (200) steps, spaced out like the readings; 0 disables them.
        Weights are taken before the step, gradients and activations are the probe's.
    on_finding: called with each finding the first time it appears.
    stop_on_critical: when a critical finding appears, `model.stop_training` is set
        (Keras ends the fit after the step) and `should_stop` becomes True.
    verbose: print one line per new finding to stderr.
    check_interval_s / flush_interval_s: as for `lossdoctor.torch.Doctor` (event-file
        writes at most every `flush_interval_s`, checked at each step and epoch end;
        both further apart when one takes more than 0.5% of the time).

    Several `fit` calls with one Doctor (training in stages: a frozen base, then
    fine-tuning) make one run: steps and epochs count on, the layers and the probe are
    set up again for the model as it is then (newly trainable layers, a new
    optimizer) and read densely again from its start, a note in run.json says where
    each later fit began, and the event files of each fit sit side by side in
    `run_dir`. The run is closed at the end of each fit; `report()` covers every fit
    so far.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        *,
        probe: Any = None,
        probe_size: int = PROBE_SIZE,
        every: int = 10,
        dense_steps: int = 100,
        dense_every: int = 5,
        probe_every: int = 50,
        max_overhead: float | None = 0.01,
        max_every: int | None = None,
        histogram_every: int = 200,
        check_interval_s: float = CHECK_INTERVAL_S,
        flush_interval_s: float = FLUSH_INTERVAL_S,
        hparams: Mapping[str, Any] | None = None,
        on_finding: Callable[[Finding], None] | None = None,
        stop_on_critical: bool = False,
        verbose: bool = True,
    ) -> None:
        super().__init__()
        if histogram_every < 0:
            raise ValueError(f"histogram_every >= 0 must hold, but got {histogram_every}")
        self.run_dir_arg = run_dir
        self.schedule = Schedule(every, dense_steps, dense_every)
        if probe_every < 1:
            raise ValueError(f"probe_every >= 1 must hold, but got {probe_every}")
        self.histogram_every = histogram_every
        # A probe pass costs about one training step: every `every` steps at the start,
        # then every `probe_every`.
        self.probe_every = probe_every
        self._budget = OverheadBudget(max_overhead, every, max_every)
        self._reading_plan = ReadingPlan(self.schedule, self._budget)  # weight readings
        # Steps into the current fit (each fit starts densely again: the reading plan's
        # origin) of the next probe after the dense start and of the next histograms.
        self._next_probe = dense_steps
        self._next_hist = 0
        self._cost = 0.0  # seconds in the Doctor since the last batch end
        self._last_end: float | None = None
        self._did = ""  # the work on this step: "probe", "read" or ""
        self._worked = False  # the previous step did some
        self._edge = False  # an epoch ended since the last batch end
        self.probe = None if probe is None else _probe_samples(probe, probe_size)
        self.hparams = dict(hparams or {})
        self.on_finding = on_finding
        self.stop_on_critical = stop_on_critical
        self.verbose = verbose
        self.monitor: LiveMonitor | None = None
        self._step = 0
        self._epoch = 0
        self._batch_in_epoch = 0  # batches of this epoch before the current call
        self._call_start: int | None = None  # Keras' first batch index of this call
        self._accumulation = 1  # batches per optimizer update (gradient accumulation)
        # A LossScaleOptimizer (mixed float16) skips the steps whose gradients overflow:
        # (this fit's first step, the optimizer's update count then) to count them.
        self._scaler_start: tuple[int, int] | None = None
        self._skips_before = 0  # steps skipped in earlier fits
        self._skips = 0  # steps skipped so far, as last recorded
        self._prev_mean: float | None = None
        self._epoch_loss_sum = 0.0
        self._epoch_loss_n = 0
        self._first_bad_loss: int | None = None
        self._losses: list[tuple[int, float]] = []
        self._rows: list[tuple[int, np.ndarray]] = []  # weights/updates per sampled step
        self._probe_rows: list[tuple[int, np.ndarray]] = []
        self._lrs: list[tuple[int, float]] = []
        self._weights: Any = None  # the backend's WeightReader
        self._snapped: int | None = None  # the step whose pre-step weights are held
        self._probe_fn: Callable[[bool], Any] | None = None
        self._weight_hist_fn: Callable[[], Any] | None = None
        self._writes, self._checks = Pacer(flush_interval_s), Pacer(check_interval_s)
        # Filled at on_train_begin.
        self._backend: Any = None  # the module computing the readings (keras_tf)
        # The weights' values as arrays when they are read on the host (keras_host).
        self._read_values: Callable[[], list[np.ndarray]] | None = None
        self._params = 0  # trainable values
        self._unbuilt = False  # the readers wait for the model's first training step
        self._vars: list[Any] = []
        self._var_layer: list[int] = []
        self._param_layers: list[str] = []
        self._act_layers: list[tuple[str, str]] = []  # (name, kind) in depth order
        self._bns: list[tuple[str, Any]] = []  # every BatchNorm layer: (name, layer)
        self._bn_measured: list[int] = []  # those whose input the probe sees
        self._hist_tags: list[str] = []  # the probe's histograms, in its order
        self._probe_gradients = True  # False: the backend's probe has no gradients
        self._fits = 0  # fit calls seen
        # The log holding the training loss: "" until the first batch's logs are seen.
        self._loss_key: str | None = ""

    def _forget_layers(self) -> None:
        """Drop what was set up for the model as it was (before a later fit)."""
        self._weights = self._probe_fn = self._weight_hist_fn = self._read_values = None
        self._snapped = None
        self._params = 0
        self._vars, self._var_layer, self._param_layers = [], [], []
        self._act_layers, self._bns, self._bn_measured, self._hist_tags = [], [], [], []
        self._probe_gradients = True

    # --- setup --------------------------------------------------------------------------
    def _setup(self) -> None:
        model = self.model
        optimizer = getattr(model, "optimizer", None)
        meta: dict[str, Any] = {
            "framework": "keras",
            "framework_version": keras.__version__,
            "backend": keras.backend.backend(),
            "model": {"class": type(model).__name__, "params": None},
            "layers": [],
            "histogram_every": self.histogram_every,
            "overhead": self._budget.to_dict(),
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
        close_at_exit(self)  # a fit that raised never reaches on_train_end
        self._backend = _backend_module()
        if model.built:
            self._setup_readers()
        else:  # a subclassed model creates its weights in its first training step
            self._unbuilt = True

    def _setup_readers(self) -> None:
        """The model's layers and weights into run.json, and the readers of its
        weights and of the probe."""
        assert self.monitor is not None
        self._unbuilt = False
        self._collect_layers()
        with self.monitor.guard("weights"):
            if _on_host(self._params):
                from lossdoctor.integrations import keras_host

                self._read_values = self._backend.value_reader(self._vars)
                self._weights = keras_host.WeightReader(self._read_values)
            else:
                self._weights = self._backend.WeightReader(self._vars)
        if self.probe is None:
            self._note("gradients, activations",
                       "no probe=(x, y) given: gradient, activation and BatchNorm "
                       "signals skipped")
        else:
            with self.monitor.guard("probe-setup"):
                self._build_probe()

    def _collect_layers(self) -> None:
        """The layers holding trainable weights and their variables, in order; every
        layer into run.json."""
        assert self.monitor is not None
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
            entry = {"name": layer.name, "type": type(layer).__name__,
                     "kind": kind or type(layer).__name__.lower(),
                     "params": int(sum(int(np.prod(v.shape)) for v in own))}
            if own:  # the weights' own precision (a mixed policy keeps them float32)
                entry["dtype"] = str(keras.backend.standardize_dtype(own[0].dtype))
            layers_meta.append(entry)
        meta = self.monitor.store.meta
        meta["layers"] = layers_meta
        meta["model"]["params"] = int(model.count_params())
        self.monitor.store.write_meta()
        self._params = sum(int(np.prod(v.shape, dtype=np.int64)) for v in self._vars)

    def _note(self, signal: str, text: str) -> None:
        assert self.monitor is not None
        self.monitor.note(signal, text)

    def _probe_model(self) -> tuple[keras.Model | None, list[Any]]:
        """(model, BatchNorm layers): a model from the inputs to each layer's output
        (self._act_layers), the inputs of the BatchNorm layers it can reach (those
        layers, returned; their indices into self._bns in self._bn_measured) and the
        model's outputs; None for a model without a graph (subclassed)."""
        model = self.model
        outputs: list[Any] = []
        act_layers: list[tuple[str, str]] = []
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
            act_layers.append((layer.name, _layer_kind(layer)))
        try:
            bns = _batchnorms(model)
        except Exception as exc:  # the probe goes on without BatchNorm signals
            assert self.monitor is not None
            self.monitor.monitor_error("batchnorm", exc)
            bns = []
        self._bns = [(name, layer) for name, layer, _ in bns]
        bn_inputs = [(b, t) for b, (_, _, t) in enumerate(bns) if t is not None]
        for attempt in (bn_inputs, []):
            try:
                act_model = keras.Model(inputs=model.inputs, outputs=[
                    *outputs, *[t for _, t in attempt], *model.outputs])
            except (AttributeError, ValueError, TypeError):
                continue
            self._act_layers = act_layers
            self._bn_measured = [b for b, _ in attempt]
            return act_model, [self._bns[b][1] for b in self._bn_measured]
        return None, []

    def _build_probe(self) -> None:
        """The backend's probe (`keras_tf.Probe`, `keras_eager.Probe`): the compiled
        loss on the probe, its gradients per variable, statistics of each layer's
        output (functional models), BatchNorm input shifts, and histograms when asked."""
        model = self.model
        assert self.probe is not None
        loss_fn = _compiled_loss(model)
        if loss_fn is None:
            self._note("gradients, activations", "the model has no compiled loss: "
                       "probe signals skipped")
            return
        act_model, bn_layers = self._probe_model()
        if act_model is None:
            self._note("activations", "not a functional/Sequential model: activation "
                       "signals skipped, gradients from the model's output")
        unmeasured = [self._bns[b][0] for b in range(len(self._bns))
                      if b not in self._bn_measured]
        if unmeasured:
            self._note("batchnorm", "the probe cannot reach the input of "
                       f"{', '.join(unmeasured)}: bn_shift skipped there")
        self._hist_tags = [f"layer/{name}/{kind}" for kind in ("weight_hist", "grad_hist")
                           for name in self._param_layers]
        self._hist_tags += [f"layer/{name}/act_hist" for name, _ in self._act_layers]
        kinds = [k for _, k in self._act_layers]
        # Outputs whose layer does not say what it outputs (custom layers, nested
        # models): the probe tells their kind where it can.
        unknown = [k for k, kind in enumerate(kinds) if not kind]
        n_layers = len(self._param_layers)
        read = self._read_values  # set when the weights are read on the host
        if read is not None and _on_host(2 * self._params
                                         + _probe_values(act_model, _samples(self.probe[0]))):
            from lossdoctor.integrations import keras_host

            told: dict[int, str] = {}
            raw = self._backend.forward_and_gradients(
                model, act_model, len(kinds), len(bn_layers), loss_fn, self._vars,
                self.probe[0], self.probe[1], unknown, told)
            by_name = {layer.name: layer for layer in model.layers}
            # Of those, the layers with weights (custom layers, nested models): where
            # the traced graph does not tell, the probes' values tell ReLUs apart.
            undecided = [k for k in unknown
                         if getattr(by_name.get(self._act_layers[k][0]),
                                    "trainable_weights", None)]
            self._probe_fn = keras_host.Probe(
                raw, read, kinds, bn_layers, self._var_layer, n_layers, undecided, told)
        else:
            self._probe_fn = self._backend.Probe(
                model, act_model, kinds, bn_layers, loss_fn, self._vars, self._var_layer,
                n_layers, self.probe[0], self.probe[1],
                histograms=self.histogram_every > 0, undecided=unknown)
        self._probe_gradients = bool(getattr(self._probe_fn, "gradients", True))
        if not self._probe_gradients:
            self._note("gradients", f"Keras backend {keras.backend.backend()!r}: no "
                       "cheap probe gradients, grad_norm and grad_hist skipped")

    # --- Keras hooks --------------------------------------------------------------------
    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        start = time.perf_counter()
        self._fits += 1
        if self.monitor is not None:
            if not self.monitor.closed:
                return
            self._next_fit()
        else:
            try:
                self._setup()
            except FileExistsError:
                raise  # a used run_dir: say so before training, as the torch Doctor does
            except Exception as exc:
                if self.monitor is not None:
                    self.monitor.monitor_error("setup", exc)
                else:
                    raise
        if self.monitor is not None:
            with self.monitor.guard("updates"):
                self._match_steps_to_updates()
            with self.monitor.guard("skipped steps"):
                self._count_skips_from_here()
        # The first step's interval runs from here, so the setup and the first step's
        # readings (which trace the probe) count in the Doctor's share.
        self._last_end = time.perf_counter()
        self._cost = self._last_end - start

    def _next_fit(self) -> None:
        """A later `fit` with this Doctor: the same run goes on, set up for the model as
        it is now."""
        mon = self.monitor
        assert mon is not None
        with mon.guard("setup"):
            mon.reopen()
            optimizer = getattr(self.model, "optimizer", None)
            self._note("fit", f"fit {self._fits} began at step {self._step} (epoch "
                       f"{self._epoch}), optimizer "
                       f"{type(optimizer).__name__ if optimizer else None}: layers and "
                       "probe set up again")
            self._forget_layers()
            # A new stage starts densely, as the first did: failures start there too.
            self._reading_plan.restart(self._step)
            self._next_probe, self._next_hist = self.schedule.dense_steps, 0
            if self.model.built:
                self._setup_readers()
            else:
                self._unbuilt = True
        # Its first step may retrace the user's train function: not a plain step.
        self._edge = True

    def _match_steps_to_updates(self) -> None:
        """Where a step of the series is not one batch and one update.
        `steps_per_execution=e`: Keras calls callbacks once per e batches, so a step is
        an execution, and its update norm is divided by the updates it holds. Gradient
        accumulation over k batches (`gradient_accumulation_steps=k`): the optimizer
        updates on one batch in k, so weight readings wait for those batches (one in
        between would see no update and read as a far too low rate); with executions
        too, an execution of b batches holds b // k updates."""
        optimizer = getattr(self.model, "optimizer", None)
        k = int(getattr(optimizer, "gradient_accumulation_steps", None) or 1)
        self._accumulation = max(k, 1)
        executions = getattr(self.model, "steps_per_execution", 1)
        if isinstance(executions, int) and executions > 1:
            self._note("steps", f"steps_per_execution={executions}: Keras calls callbacks "
                       f"once per {executions} batches, so a step here is one execution; "
                       "update norms are per update (an execution's update divided by "
                       "the updates it holds)")
            return  # readings span whole executions
        if optimizer is None or k < 2:
            return
        # The raw step counter (`iterations` is the count of updates when accumulating).
        counter = getattr(optimizer, "_iterations", None)
        done = int(np.asarray(keras.ops.convert_to_numpy(counter))) if counter is not None \
            else int(np.asarray(keras.ops.convert_to_numpy(optimizer.iterations))) * k
        # The optimizer updates on the step after which its counter is a multiple of k.
        first = self._step + (k - 1 - done % k)
        self._reading_plan.align(k, first)
        self._note("updates", f"gradient accumulation over {k} steps: weight and update "
                   f"readings are taken on the steps that apply an update (from step {first})")

    def _count_skips_from_here(self) -> None:
        """Keras' LossScaleOptimizer skips a step whose gradients overflow, and its
        `iterations` count only the updates: the steps skipped are this fit's batches
        minus its updates, read with the learning rate (`_record_skips`). Not with
        gradient accumulation or several batches per execution, where batches and
        updates part by design."""
        self._skips_before, self._scaler_start = self._skips, None
        optimizer = getattr(self.model, "optimizer", None)
        if not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            return
        executions = getattr(self.model, "steps_per_execution", 1)
        if self._accumulation > 1 or (isinstance(executions, int) and executions > 1):
            return
        self._scaler_start = (self._step, self._updates_made(optimizer))

    def _updates_made(self, optimizer: Any) -> int:
        return int(self._scalar(optimizer.iterations))

    def _scalar(self, v: Any) -> float:
        """A variable's value: one read op on TensorFlow (`keras_tf.scalar_value`)."""
        read = getattr(self._backend, "scalar_value", None)
        return float(read(v) if read is not None else keras.ops.convert_to_numpy(v))

    def _record_skips(self, step: int) -> None:
        """The running count of skipped steps after `step` (`SKIPPED_STEPS`), when it
        grew."""
        if self._scaler_start is None:
            return
        assert self.monitor is not None
        with self.monitor.guard("skipped steps"):
            first_step, first_updates = self._scaler_start
            updates = self._updates_made(self.model.optimizer) - first_updates
            total = self._skips_before + max(step + 1 - first_step - updates, 0)
            if total > self._skips:
                self._skips = total
                self.monitor.scalar(SKIPPED_STEPS, float(total), step)
                rows = self._rows
                if rows and rows[-1][0] == step and not np.any(rows[-1][1][len(self._vars):]):
                    rows.pop()  # this step's weight reading: the step made no update

    def _probe_due(self, at: int) -> bool:
        """Whether a probe is due `at` steps into the current fit."""
        if at < self.schedule.dense_steps:
            return at % self.schedule.every == 0
        return at >= self._next_probe

    def on_train_batch_begin(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        if self.monitor is None:
            return
        start = time.perf_counter()
        self._call_start = batch if isinstance(batch, int) else None
        step = self._step
        at = step - self._reading_plan.origin  # steps into this fit
        if self._weights is not None and self._snapped != step \
                and self._reading_plan.due(step):
            with self.monitor.guard("weights"):
                self._attach_state()
                self._weights.snapshot()
                self._snapped = step
            self._did = "read"
        stretch = self._reading_plan.stretch
        histograms = self.histogram_every > 0 and at >= self._next_hist
        if histograms:
            self._next_hist = at + self.histogram_every * stretch
        probe = self._probe_due(at)
        if probe and at >= self.schedule.dense_steps:
            self._next_probe = at + self.probe_every * stretch
        if probe or histograms:
            self._run_probe(step, histograms)
            self._did = "probe"
        self._cost += time.perf_counter() - start

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        mon = self.monitor
        if mon is None:
            return
        start = time.perf_counter()
        try:
            self._end_batch(mon, logs, self._batches_in_call(batch))
        finally:
            now = time.perf_counter()
            if self._last_end is not None:  # the Doctor's time against the step's
                work = self._did or ("after" if self._worked else "plain")
                self._budget.step(now - self._last_end, self._cost + (now - start),
                                  "edge" if self._edge else work)
            self._last_end, self._cost = now, 0.0
            self._worked, self._did, self._edge = bool(self._did), "", False
        if mon.should_stop:
            self._maybe_stop()

    def _batches_in_call(self, end: int) -> int:
        """Batches this pair of batch hooks spans: with `steps_per_execution=k` Keras
        calls them once per execution, with its first batch's index and the first's
        plus k - 1, also for a last execution of fewer than k batches (then the
        epoch's batch count, `params["steps"]`, tells); 1 where the indices say
        nothing."""
        begin = self._call_start
        if not isinstance(end, int) or begin is None or end < begin:
            return 1
        steps = (self.params or {}).get("steps")
        if isinstance(steps, int) and begin < steps:
            end = min(end, steps - 1)
        return end - begin + 1

    def _end_batch(self, mon: LiveMonitor, logs: Mapping[str, Any] | None,
                   batches: int) -> None:
        step = self._step
        if self._unbuilt and self.model.built:
            with mon.guard("setup"):
                self._note("weights, gradients, activations",
                           f"the model was built by its first training step: per-layer "
                           f"readings start after step {step}")
                self._setup_readers()
        # The unsampled step's path: the loss, kept as two numbers; nothing else.
        try:
            if self._loss_key == "" and logs:
                self._loss_key = self._choose_loss_key(logs)
            key = self._loss_key
            mean = float(logs[key]) if key and logs and key in logs else None
            if mean is not None:
                # The logs hold the epoch's running mean: this call's batches' mean is
                # what the new ones added to it.
                k, n = self._batch_in_epoch, batches
                prev = self._prev_mean
                loss = mean if k == 0 or prev is None else ((k + n) * mean - k * prev) / n
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
            self._read_weights(step, batches)
            self._record_lr(step)  # at readings only: reading a variable costs ~0.5 ms
            self._record_skips(step)
        self._batch_in_epoch += batches
        self._step = step + 1
        if self._writes.due():
            self._writes.run(self._flush)
        if self._checks.due():
            self._checks.run(self._check)

    def _choose_loss_key(self, logs: Mapping[str, Any]) -> str | None:
        """The log that is the training loss: `loss`, or else the one training log
        named like a loss (a custom `train_step` returning `{"my_loss": ...}`)."""
        if "loss" in logs:
            return "loss"
        named = sorted(k for k in logs if k.endswith("loss") and not k.startswith("val_"))
        if len(named) == 1:
            self._note("loss", f"the logs have no 'loss': {named[0]!r} is recorded as the "
                       "training loss")
            return named[0]
        self._note("loss", "the logs have no 'loss'" + (
            f" but several ({', '.join(named)}): none is recorded as the training loss "
            "(`lossdoctor diagnose --train-loss epoch/NAME` names one)" if named
            else ": no training loss is recorded"))
        return None

    def _bad_loss(self, step: int) -> None:
        mon = self.monitor
        assert mon is not None
        self._epoch_loss_sum = math.nan
        if self._first_bad_loss is None:
            self._first_bad_loss = step
            if not mon.has_live_finding("nan-origin"):
                self._run_probe(step)  # locate it on the weights as they are now

    def _read_weights(self, step: int, batches: int = 1) -> None:
        """Weight and update norms of sampled step `step` (its pre-step weights are
        held); the snapshot for step + 1 in the same call when that step is sampled
        (a new epoch drops it: epoch-end callbacks may change the weights). A step of
        several `batches` (one execution of `steps_per_execution`) holds several
        updates: its update norms are divided by their number, the mean per update."""
        mon = self.monitor
        assert mon is not None and self._weights is not None
        self._snapped = None
        self._did = self._did or "read"
        self._reading_plan.taken(step)
        with mon.guard("updates"):
            self._attach_state()
            nxt = step + 1
            snap = self._reading_plan.due(nxt)
            row = self._weights.read(snapshot_next=snap)
            updates = batches // self._accumulation
            if updates > 1:
                row = np.concatenate([row[:len(self._vars)], row[len(self._vars):] / updates])
            if snap:
                self._snapped = nxt
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
            key = self._loss_key or "loss"
            for name, value in (logs or {}).items():
                tag = ("epoch/train_loss" if name == key else "epoch/val_loss"
                       if name == f"val_{key}" else _epoch_tag(name))
                try:
                    given[tag] = float(value)
                except (TypeError, ValueError):
                    continue
            if "epoch/train_loss" not in given and self._epoch_loss_n:
                given["epoch/train_loss"] = self._epoch_loss_sum / self._epoch_loss_n
            for tag, v in given.items():
                mon.scalar(tag, v, step)
            mon.scalar("epoch", float(self._epoch), step)
        self._record_lr(step)
        self._record_skips(step)
        # Written with the next timed flush: short epochs would pay a write each.
        if self._writes.due():
            self._writes.run(self._flush)
        self._edge = True  # the next step's time holds validation: not the Doctor's
        self._epoch_loss_sum, self._epoch_loss_n = 0.0, 0
        self._epoch += 1
        if self._checks.due():
            self._checks.run(self._check)
        self._maybe_stop()

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        self.close()

    # --- user calls ---------------------------------------------------------------------
    @property
    def should_stop(self) -> bool:
        return self.monitor is not None and self.monitor.should_stop

    def flush(self) -> None:
        """Write everything recorded so far to disk now."""
        self._writes.run(self._flush)

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
        with mon.guard("write"):
            mon.store.meta["overhead"] = self._budget.to_dict()
            mon.store.write_meta()
        self._check()
        mon.close()

    # --- internals ----------------------------------------------------------------------
    def _run_probe(self, step: int, histograms: bool = False) -> None:
        mon = self.monitor
        assert mon is not None
        if self._probe_fn is None or self.probe is None:
            if histograms:
                self._weight_histograms(step)
            return
        with mon.guard("probe"):
            self._attach_state()
            flat = _probe_stats(self._probe_fn, histograms)
            # Parts of the probe that failed while the rest worked.
            failed = getattr(self._probe_fn, "failed_parts", {})
            for signal, exc in failed.items():
                mon.monitor_error(signal, exc)
            # The frozen flags are read here, on the host: they are layer attributes.
            frozen = [_bn_frozen(layer) for _, layer in self._bns]
            width = self._probe_width()
            row = np.concatenate([flat[:width], frozen])
            self._probe_rows.append((step, row))
            self._take_detected_kinds(step)
            if histograms and "histograms" not in failed:
                with mon.guard("histograms"):
                    self._write_histograms(step, self._hist_tags, flat[width:])
            if not mon.has_live_finding("nan-origin"):
                self._find_nan_origin(step, row)

    def _take_detected_kinds(self, step: int) -> None:
        """Kinds the probe read off a layer's outputs (`keras_host.Probe.detected`),
        into the probed layers and run.json (`kind_seen` says where it came from)."""
        detected = getattr(self._probe_fn, "detected", None)
        if not detected:
            return
        assert self.monitor is not None
        names = {}
        for k, kind in detected.items():
            name = self._act_layers[k][0]
            self._act_layers[k] = (name, kind)
            names[name] = kind
        detected.clear()
        for meta in self.monitor.store.meta.get("layers", []):
            if meta.get("name") in names:
                meta["kind"] = names[meta["name"]]
                meta["kind_seen"] = f"in its probe outputs at step {step}"
        self.monitor.store.write_meta()

    def _weight_histograms(self, step: int) -> None:
        """Weight histograms alone (no probe), from a traced function of their own."""
        mon = self.monitor
        assert mon is not None
        if not self._param_layers or self._backend is None:
            return
        with mon.guard("histograms"):
            self._attach_state()
            if self._weight_hist_fn is None:
                if self._read_values is not None:
                    from lossdoctor.integrations import keras_host

                    self._weight_hist_fn = keras_host.weight_histograms(
                        self._read_values, self._var_layer, len(self._param_layers))
                else:
                    self._weight_hist_fn = self._backend.weight_histograms(
                        self._vars, self._var_layer, len(self._param_layers))
            flat = np.asarray(self._weight_hist_fn(), dtype=np.float64)
            self._write_histograms(step, [f"layer/{name}/weight_hist"
                                          for name in self._param_layers], flat)

    def _write_histograms(self, step: int, tags: list[str], flat: np.ndarray) -> None:
        rows = flat.reshape(len(tags), HISTOGRAM_ROW)
        assert self.monitor is not None
        for tag, row in zip(tags, rows, strict=True):
            self.monitor.histogram_row(tag, row, step)

    def _attach_state(self) -> None:
        """Keras' JAX trainer keeps the weights (and the optimizer's and BatchNorm's
        variables) outside the model during an epoch, the model's own emptied; its
        `jax_state_sync` writes them back, and its next step takes them up again. So
        a reading costs one write-back on JAX; nothing elsewhere."""
        sync = getattr(self.model, "jax_state_sync", None)
        if sync is not None:
            sync()

    def _record_lr(self, step: int) -> None:
        assert self.monitor is not None
        with self.monitor.guard("lr"):
            self._attach_state()
            lr = getattr(getattr(self.model, "optimizer", None), "learning_rate", None)
            if lr is not None:
                self._lrs.append((step, self._scalar(lr)))

    def _maybe_stop(self) -> None:
        mon = self.monitor
        if mon is not None and mon.should_stop and mon.stop_finding is not None:
            mon.stop_finding = None
            self.model.stop_training = True  # a callback must not raise inside fit

    def _flush(self) -> None:
        if self.monitor is None:
            return
        self._drain()
        self.monitor.flush()

    def _check(self) -> None:
        if self.monitor is None:
            return
        self._drain()
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

    def _probe_width(self) -> int:
        """Values per probe pass before its histograms: grad and weight norms per
        variable, STATS per probed output, bn_shift per measured BatchNorm layer."""
        return 2 * len(self._vars) + len(STATS) * len(self._act_layers) \
            + len(self._bn_measured)

    def _split_probe(self, table: np.ndarray) -> tuple[np.ndarray, ...]:
        """(grad norms per layer, activation stats [step, layer, stat], bn_shift per
        measured BatchNorm layer, bn_frozen per BatchNorm layer) of probe rows."""
        n = len(self._vars)
        grads = self._per_layer(table[:, :n])
        a1 = 2 * n + len(STATS) * len(self._act_layers)
        acts = table[:, 2 * n:a1].reshape(table.shape[0], len(self._act_layers), len(STATS))
        b1 = a1 + len(self._bn_measured)
        return grads, acts, table[:, a1:b1], table[:, b1:]

    def _write_probes(self, steps: list[int], table: np.ndarray) -> None:
        grads, acts, shifts, frozen = self._split_probe(table)
        store = self.monitor.store  # type: ignore[union-attr]
        for j, name in enumerate(self._param_layers):
            if self._probe_gradients:
                store.add_scalars(f"layer/{name}/grad_norm", steps, grads[:, j])
        for k, (name, kind) in enumerate(self._act_layers):
            for c, stat in enumerate(STATS):
                if stat == "dead_fraction" and kind != "relu":
                    continue
                if stat == "saturated_fraction" and kind not in ("sigmoid", "tanh"):
                    continue
                store.add_scalars(f"layer/{name}/{stat}", steps, acts[:, k, c])
        for b, (name, _) in enumerate(self._bns):
            store.add_scalars(f"layer/{name}/bn_frozen", steps, frozen[:, b])
        for m, b in enumerate(self._bn_measured):
            # Measured on every probe, kept only while frozen (as the PyTorch doctor).
            kept = frozen[:, b] >= 0.5
            if kept.any():
                store.add_scalars(f"layer/{self._bns[b][0]}/bn_shift",
                                  [s for s, k in zip(steps, kept, strict=True) if k],
                                  shifts[kept, m])

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
        grads, acts, _, _ = self._split_probe(row[None, :])
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
