"""The host side of `lossdoctor.keras.Doctor` for small models: weights, gradients and
probe outputs read back whole as arrays and reduced with numpy
(`lossdoctor.live.host_stats`), in the same layout as the device-side readers of
`keras_tf`.

Why: on TensorFlow the device-side readers are traced functions, and tracing costs
about 0.5 ms per op once per fit, so their first calls took about 0.6 s on a 6-layer
CNN whose whole 20-epoch fit takes under 5 s. Here only the forward and backward pass
of the probe is traced (about 70 ms on that CNN); weights are read without any
tracing. The Doctor uses this side while a probe pass's outputs and the weights are
small (`HOST_LIMIT` values), where the read-back costs less than the tracing saves.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from lossdoctor.integrations.keras import by_layer
from lossdoctor.live import host_stats

# Values (weights, or a probe pass's outputs and gradients) read back per reading at
# most: 1M float32 values, 4 MB. On this project's 2-core CPU numpy took 3.9 ms for
# the statistics of a 1M-value output and 1.4 ms for its norm, traced TensorFlow 2.0
# and 0.9 ms (4M values: 17.6 and 8.5 ms against 6.2 and 2.7), so past this the saved
# tracing is soon spent again and larger models keep the traced reductions.
HOST_LIMIT = 1 << 20
# A probed output of unknown kind is taken for ReLU units when none of its values is
# negative, some are positive and at least this share is exactly zero (sigmoid,
# softplus and exp outputs are positive, linear ones signed).
RELU_ZEROS = 0.05

RawProbe = Callable[[], tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]]
ValueReader = Callable[[], list[np.ndarray]]


def to_numpy(v: Any) -> np.ndarray:
    """A Keras variable's or a backend tensor's value as an array (for the few values
    read outside `read()`: BatchNorm statistics)."""
    return np.asarray(keras.ops.convert_to_numpy(v.value if hasattr(v, "value") else v))


class WeightReader:
    """Weight and update norms of sampled steps, as `keras_tf.WeightReader`: the
    weights are copied to the host at `snapshot()` and compared at `read`."""

    def __init__(self, read: ValueReader) -> None:
        self._read = read
        self._held: list[np.ndarray] | None = None

    def snapshot(self) -> None:
        # A copy: an array read from a variable may share its buffer.
        self._held = [np.array(w, copy=True) for w in self._read()]

    def read(self, snapshot_next: bool) -> np.ndarray:
        now = self._read()
        held = self._held if self._held is not None else now
        row = np.concatenate([host_stats.norms(now), host_stats.difference_norms(now, held)])
        self._held = [np.array(w, copy=True) for w in now] if snapshot_next else None
        return row


def weight_histograms(read: ValueReader, var_layer: Sequence[int],
                      n_layers: int) -> Callable[[], np.ndarray]:
    """`fn()`: one `host_stats.histogram_row` per layer over all its weights."""
    def fn() -> np.ndarray:
        rows = [host_stats.histogram_row(ws) for ws in by_layer(read(), var_layer, n_layers)]
        return np.concatenate(rows) if rows else np.zeros(0)

    return fn


class Probe:
    """`probe(with_histograms)`: the values of `keras_tf.Probe`, in its layout, from
    `raw()` = (probed outputs, BatchNorm inputs, gradient per variable) as arrays and
    `read()` = the variables' values (a backend's `value_reader`). A failing BatchNorm
    or histogram part is kept in `failed_parts` (signal -> exception) and the rest goes
    on.

    `undecided`: probed outputs of layers with weights whose kind the layer does not
    tell (a custom layer or nested model applying `keras.ops.relu` in its `call`).
    `told` (index -> kind) is filled by `raw` where the backend can tell an output's
    kind from the op that made it (TensorFlow's traced graph: `keras_tf.traced_kinds`,
    so a custom ReLU layer dead from its first step, or a custom sigmoid layer, is
    read as one); otherwise each pass decides the undecided outputs it can from their
    values (`RELU_ZEROS`). Either way the kinds found go into `detected`. An output
    that is all zeros says nothing from its values (a linear layer fed by dead units
    gives that too) and is left for a later pass."""

    def __init__(self, raw: RawProbe, read: ValueReader, kinds: Sequence[str],
                 bn_layers: Sequence[keras.layers.Layer], var_layer: Sequence[int],
                 n_layers: int, undecided: Sequence[int] = (),
                 told: dict[int, str] | None = None) -> None:
        self.failed_parts: dict[str, BaseException] = {}
        self._undecided = list(undecided)
        self._told = told if told is not None else {}
        self.detected: dict[int, str] = {}
        self._raw, self._read = raw, read
        self._kinds, self._bn_layers = list(kinds), list(bn_layers)
        self._var_layer, self._n_layers = var_layer, n_layers

    def _bn_shifts(self, inputs: list[np.ndarray]) -> np.ndarray:
        try:
            return np.array([host_stats.bn_shift(x, layer.axis, to_numpy(layer.moving_mean),
                                                 to_numpy(layer.moving_variance),
                                                 float(layer.epsilon))
                             for x, layer in zip(inputs, self._bn_layers, strict=True)])
        except Exception as exc:
            self.failed_parts["batchnorm"] = exc
            return np.full(len(inputs), math.nan)

    def _histograms(self, weights: list[np.ndarray], grads: list[np.ndarray],
                    acts: list[np.ndarray]) -> np.ndarray:
        """Weights per layer, gradients per layer, then each probed output."""
        rows = [host_stats.histogram_row(ws)
                for ws in by_layer(weights, self._var_layer, self._n_layers)]
        rows += [host_stats.histogram_row(gs)
                 for gs in by_layer(grads, self._var_layer, self._n_layers)]
        rows += [host_stats.histogram_row([a]) for a in acts]
        return np.concatenate(rows) if rows else np.zeros(0)

    def _take_told(self) -> None:
        for k, kind in self._told.items():
            if self._kinds[k] != kind:
                self._kinds[k] = self.detected[k] = kind
            if k in self._undecided:
                self._undecided.remove(k)
        self._told.clear()

    def _decide_kinds(self, acts: list[np.ndarray]) -> None:
        still = []
        for k in self._undecided:
            a = acts[k]
            if not a.size or not np.isfinite(a).all() or not np.any(a):
                still.append(k)  # nothing to tell from
            elif float(a.min()) >= 0.0 and np.count_nonzero(a == 0) >= RELU_ZEROS * a.size:
                self._kinds[k] = self.detected[k] = "relu"
        self._undecided = still

    def __call__(self, with_histograms: bool) -> np.ndarray:
        acts, bn_inputs, grads = self._raw()
        if self._told:
            self._take_told()
        if self._undecided:
            self._decide_kinds(acts)
        weights = self._read()
        parts = [host_stats.norms(grads), host_stats.norms(weights)]
        parts += [host_stats.activation_stats(a, k)
                  for a, k in zip(acts, self._kinds, strict=True)]
        if bn_inputs:
            parts.append(self._bn_shifts(bn_inputs))
        if with_histograms and "histograms" not in self.failed_parts:
            try:
                parts.append(self._histograms(weights, grads, acts))
            except Exception as exc:
                self.failed_parts["histograms"] = exc
        return np.concatenate(parts)
