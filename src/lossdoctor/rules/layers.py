"""Per-layer rules over the `layer/<name>/<signal>` series a live doctor records, and
the rule that turns run.json's live-only findings (nan-origin, monitor-error) into
findings.

Every decision uses the median of several readings, never one noisy step. Thresholds
(the reference point is the update/weight ratio |lr * grad| / |w| ~ 1e-3 of plain SGD):

- update-ratio-high: the median of 3 consecutive readings, anywhere in the run, above
  1e-1 (100x the healthy 1e-3). Measured on digits MLPs: healthy Adam(1e-3) ~8e-3,
  healthy SGD(0.05, momentum 0.9) up to ~4e-2 on the small output layer; SGD(lr=1..3)
  and Adam(lr=1) 0.3-0.8.
- update-ratio-low: median of the last 20 readings < 1e-5 (100x below healthy), for a
  layer that does get gradients.
- vanishing-gradients: the first weighted layer's gradient norm is more than 100x
  (two orders of magnitude) below the last one's.
- exploding-gradients: the first layer's gradient norm is more than 100x above the last
  one's, or a layer's gradient norm grew more than 1000x from its first readings.
- no-gradient: a layer whose gradient norm read exactly 0 at every one of its 5 or
  more readings while another layer's did not: nothing connects it to the loss (a detached
  output in PyTorch; Keras' probe reads an unconnected weight's gradient as 0); read
  without gradients (Keras without a probe), float32 weights whose update was exactly
  0 at every reading while others moved. Not for weights run.json marks `frozen`, nor
  when a whole layer of units is dead (that cuts the layers before it off too, and
  dead-units says so).
- dead-units: a ReLU-family layer whose share of units inactive on every sample of a
  batch has a median above 0.5; or, where the ReLU is no layer of its own (`F.relu` in
  a PyTorch `forward`), a Linear/Conv layer whose share of units that got exactly zero
  gradient from a whole batch (`zero_grad_fraction`) has a median above 0.5. When
  both see the same units, the activation's reading is named. A median of 1 (every
  unit, on every reading of the window) is critical: nothing passes the layer.
- saturated-activations: a sigmoid/tanh layer with a median share of saturated outputs
  (sigmoid < 0.01 or > 0.99, |tanh| > 0.99) above 0.5; not the model's output (the
  last layer with weights and what follows it in run.json's layer list), whose
  sigmoid is saturated whenever a binary classifier is confident (a healthy digit-0
  classifier on digits: 91-100% of its outputs after 10 epochs, Keras and PyTorch).
- frozen-batchnorm: a BatchNorm layer that normalizes with (or never updates) its
  running statistics (`bn_frozen` median >= 0.5: eval mode or momentum 0 while the
  model trains) while its input batches differ from them: the median of the last 20
  `bn_shift` readings (>= 3) above 1.0. bn_shift is the channel mean of |z| + |ln s|,
  z the batch mean minus the running mean in running stds, s the batch std over the
  running std. Measured on a digits MLP (2 BatchNorm1d) pretrained 6 epochs, then
  fine-tuned with BN in eval mode: 0.14-0.29 on the same data, 1.5-2.4 on x*3+2.
- poor-initialization: in the first readings, activation std changes more than 100x
  from the first weighted layer to the last (collapse or explosion with depth), or
  some layer's std exceeds 1000 (standardized inputs give O(1) activations).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from lossdoctor.findings import CATALOG, Finding, Severity, make_finding
from lossdoctor.rules._where import locate
from lossdoctor.run import Run, Series

PREFIX = "layer/"
MIN_READINGS = 3
WINDOW = 20  # the last readings a "current" value is the median of
FIRST = 3  # the first readings an "initial" value is the median of
RATIO_HIGH = 1e-1
RATIO_LOW = 1e-5
GRAD_DEPTH_RATIO = 1e2
GRAD_GROWTH = 1e3
DEAD_SHARE = 0.5
SATURATED_SHARE = 0.5
STD_DEPTH_RATIO = 1e2
STD_ABSOLUTE = 1e3
BN_SHIFT = 1.0
RELU_KINDS = {"relu", "relu6", "elu", "gelu", "selu", "silu"}
SATURATING_KINDS = {"sigmoid", "tanh", "hardsigmoid", "hardtanh", "softsign"}


def layer_signals(run: Run) -> dict[str, dict[str, Series]]:
    """layer -> signal -> series, layers in depth order (run.json's layer list, then
    the order the series appear in)."""
    out: dict[str, dict[str, Series]] = {}
    for name in _meta_layer_names(run):
        out[name] = {}
    for key, series in run.series.items():
        if not key.startswith(PREFIX):
            continue
        layer, _, signal = key[len(PREFIX):].rpartition("/")
        if layer:
            out.setdefault(layer, {})[signal] = series
    return {k: v for k, v in out.items() if v}


def _meta_layers(run: Run) -> list[Mapping[str, Any]]:
    layers = run.meta.get("layers")
    if not isinstance(layers, list):
        return []
    return [x for x in layers if isinstance(x, Mapping) and isinstance(x.get("name"), str)]


def _meta_layer_names(run: Run) -> list[str]:
    return [str(x["name"]) for x in _meta_layers(run)]


def _kind(run: Run, layer: str) -> str:
    for x in _meta_layers(run):
        if x["name"] == layer:
            return str(x.get("kind", "")).lower()
    return ""


def _shown(run: Run, layer: str) -> str:
    """A layer as titles name it: with its type when the name alone says nothing (the
    index of a child of `nn.Sequential`: "3 (ReLU)", "features.0 (Conv2d)")."""
    if layer.rpartition(".")[2].isdigit():
        for x in _meta_layers(run):
            if x["name"] == layer and x.get("type"):
                return f"{layer} ({x['type']})"
    return layer


def _finite(series: Series) -> Series:
    return series.finite()


def _tail_median(series: Series) -> tuple[float, int] | None:
    """(median of the last WINDOW finite readings, index where that window starts)."""
    f = _finite(series)
    if len(f) < MIN_READINGS:
        return None
    start = max(0, len(f) - WINDOW)
    return float(np.median(f.values[start:])), start


def _head_median(series: Series) -> float | None:
    f = _finite(series)
    if len(f) < 1:
        return None
    return float(np.median(f.values[:FIRST]))


def _where(series: Series, finite_index: int) -> tuple[int | None, int | None]:
    return locate(_finite(series), finite_index)


def _worst(run: Run, hits: list[tuple[str, float, Series, int]], code: str, *,
           highest: bool, signal: str, threshold: float, title: str) -> list[Finding]:
    if not hits:
        return []
    layer, value, series, start = (max if highest else min)(hits, key=lambda h: h[1])
    step, epoch = _where(series, start)
    evidence: dict[str, float | int | str] = {
        f"median_{signal}": value,
        "threshold": threshold,
        "readings": min(WINDOW, len(_finite(series))),
        "layers": ", ".join(h[0] for h in hits),
    }
    return [make_finding(code, step=step, epoch=epoch, layer=layer, evidence=evidence,
                         title=title.format(layer=_shown(run, layer), value=value))]


def _rolling_max_median(series: Series) -> tuple[float, int] | None:
    """(largest median of MIN_READINGS consecutive finite readings, where it starts):
    a sustained high value, not one noisy step, anywhere in the run (a run that blew
    up has its telling readings before the NaN, not at the end)."""
    f = _finite(series)
    n = len(f)
    if n < MIN_READINGS:
        return None
    windows = np.lib.stride_tricks.sliding_window_view(f.values, MIN_READINGS)
    medians = np.median(windows, axis=1)
    i = int(np.argmax(medians))
    return float(medians[i]), i


# Quasi-Newton optimizers take line-searched, curvature-scaled steps: the ~1e-3 rule
# of thumb is for first-order steps (SGD, Adam and kin), so it says nothing about them.
SECOND_ORDER_OPTIMIZERS = {"lbfgs"}


def _optimizer(run: Run) -> str:
    hparams = run.meta.get("hparams")
    name = hparams.get("optimizer") if isinstance(hparams, Mapping) else None
    return str(name).lower() if name else ""


# Weights stored in these dtypes resolve a change of about 2^-bits of their value
# (bits of significand): a smaller update rounds back to the same weight.
LOW_PRECISION_BITS = {"bfloat16": 8, "float16": 11}


def _weight_dtype(run: Run, layer: str) -> str | None:
    layers = run.meta.get("layers")
    for entry in layers if isinstance(layers, list) else []:
        if isinstance(entry, Mapping) and entry.get("name") == layer:
            dtype = entry.get("dtype")
            return str(dtype) if dtype else None
    return None


# A layer whose readings (median of the last ones) left at least this share of its
# weights with a gradient unchanged loses most of its training to rounding.
ROUNDED_SHARE = 0.5


def _rounding(run: Run) -> Finding | None:
    """update-ratio-low from `rounded_fraction` (PyTorch, bfloat16/float16 weights):
    the layer whose steps left the largest share of its weights with a gradient
    exactly as they were, when that is ROUNDED_SHARE or more. Its update/weight ratio
    may look healthy: the weights that do move carry it."""
    hits = []
    for layer, signals in layer_signals(run).items():
        series = signals.get("rounded_fraction")
        if series is None:
            continue
        tail = _tail_median(series)
        if tail is not None and tail[0] >= ROUNDED_SHARE:
            hits.append((layer, tail[0], series, tail[1]))
    if not hits:
        return None
    [found] = _worst(run, hits, "update-ratio-low", highest=True, signal="rounded_fraction",
                     threshold=ROUNDED_SHARE, title="")
    share = found.evidence["median_rounded_fraction"]
    return _rounded_away(run, replace(found, title=(
        f"{float(share):.0%} of the weights of layer {_shown(run, found.layer or '')} "
        "with a gradient keep their value after a step")))


def _rounded_away(run: Run, finding: Finding) -> Finding:
    """update-ratio-low on a layer whose weights are bfloat16/float16: the updates may
    be rounded away by the weights' precision rather than be too small to matter."""
    dtype = _weight_dtype(run, finding.layer or "")
    bits = LOW_PRECISION_BITS.get(dtype or "")
    if bits is None:
        return finding
    shown = _shown(run, finding.layer or "")
    if "median_rounded_fraction" in finding.evidence:
        share = float(finding.evidence["median_rounded_fraction"])
        title = (f"{share:.0%} of the updates to the {dtype} weights of layer {shown} "
                 "are rounded away: they are below the weights' precision")
    else:
        value = float(finding.evidence.get("median_update_ratio", math.nan))
        moved = "do not move at all" if value == 0 else f"move by only {value:.2g} a step"
        title = (f"The {dtype} weights of layer {shown} {moved}: updates below their "
                 "precision are rounded away")
    return replace(
        finding,
        title=title,
        evidence={**finding.evidence, "weight_dtype": str(dtype), "significand_bits": bits},
        explanation=f"The layer's weights are stored in {dtype}, whose {bits}-bit "
        f"significand resolves a change of about 1/{2 ** bits} of a weight. An update "
        "smaller than half of that rounds back to the weight it was added to, so small "
        "steps are lost however long training runs. The learning rate may be fine: "
        "the storage format cannot hold the steps it asks for.",
        fixes=(
            "Keep the weights in float32 and compute in low precision: torch.autocast "
            "around the forward pass in PyTorch, a 'mixed_bfloat16' or 'mixed_float16' "
            "dtype policy in Keras, instead of casting the model itself.",
            "If the weights must stay in low precision, use an optimizer that keeps "
            "float32 master copies of them, or one with stochastic or compensated "
            "(Kahan) rounding.",
            "Raise the learning rate only after that: a larger step that now survives "
            "rounding can be too large for the float32 model.",
        ),
    )


def update_ratio(run: Run) -> list[Finding]:
    """update-ratio-high / -low: |update| / |weights| per layer, far from ~1e-3 (not
    judged for quasi-Newton optimizers, see SECOND_ORDER_OPTIMIZERS)."""
    if _optimizer(run) in SECOND_ORDER_OPTIMIZERS:
        return []
    high: list[tuple[str, float, Series, int]] = []
    low: list[tuple[str, float, Series, int]] = []
    unmoved = {layer for layer, _ in _never_updated(run)}
    for layer, signals in layer_signals(run).items():
        series = signals.get("update_ratio")
        if series is None:
            continue
        peak = _rolling_max_median(series)
        if peak is not None and peak[0] > RATIO_HIGH:
            high.append((layer, peak[0], series, peak[1]))
            continue
        tail = _tail_median(series)
        grads = signals.get("grad_norm")
        grad_tail = _tail_median(grads) if grads is not None else None
        # No gradient at all is not a small learning rate (dead units, a detached
        # graph); other rules say that.
        if tail is not None and tail[0] < RATIO_LOW and (grad_tail is None or grad_tail[0] > 0) \
                and layer not in unmoved:
            low.append((layer, tail[0], series, tail[1]))
    rounding = _rounding(run)
    return _worst(run, high, "update-ratio-high", highest=True, signal="update_ratio",
                  threshold=RATIO_HIGH,
                  title="Updates of layer {layer} are {value:.2g} of its weights per step "
                  "(healthy: about 1e-3)") + \
        ([rounding] if rounding is not None else [_rounded_away(run, f) for f in _worst(
            run, low, "update-ratio-low", highest=False, signal="update_ratio",
            threshold=RATIO_LOW,
            title="Updates of layer {layer} are only {value:.2g} of its weights per step "
            "(healthy: about 1e-3)")])


def _weighted_layers(run: Run) -> list[tuple[str, dict[str, Series]]]:
    return [(k, v) for k, v in layer_signals(run).items() if "weight_norm" in v]


def gradients(run: Run) -> list[Finding]:
    """vanishing-gradients / exploding-gradients, from gradient norms across depth and
    over time."""
    layers = [(k, v["grad_norm"]) for k, v in _weighted_layers(run) if "grad_norm" in v]
    findings: list[Finding] = []
    if len(layers) >= 2:
        (first, s_first), (last, s_last) = layers[0], layers[-1]
        a, b = _tail_median(s_first), _tail_median(s_last)
        # Exactly zero gradients mean no path at all (dead units, a detached graph),
        # which is not vanishing.
        if a is not None and b is not None and b[0] > 0 and a[0] > 0:
            ratio = a[0] / b[0]
            step, epoch = _where(s_first, a[1])
            evidence: dict[str, float | int | str] = {
                "first_layer": first, "last_layer": last, "first_grad_norm": a[0],
                "last_grad_norm": b[0], "ratio": ratio, "layers": len(layers),
            }
            if ratio < 1 / GRAD_DEPTH_RATIO:
                findings.append(make_finding(
                    "vanishing-gradients", step=step, epoch=epoch, layer=first,
                    evidence=evidence,
                    title=f"Gradients at {_shown(run, first)} are {ratio:.1e} of those at "
                          f"{_shown(run, last)}"))
            elif ratio > GRAD_DEPTH_RATIO:
                findings.append(make_finding(
                    "exploding-gradients", step=step, epoch=epoch, layer=first,
                    evidence=evidence,
                    title=f"Gradients at {_shown(run, first)} are {ratio:.1e}x those at "
                          f"{_shown(run, last)}"))
    if not any(f.code == "exploding-gradients" for f in findings):
        worst: tuple[float, str, Series, int] | None = None
        for layer, series in layers:
            f = _finite(series)
            if len(f) < FIRST + MIN_READINGS:
                continue
            head = float(np.median(f.values[:FIRST]))
            tail = _tail_median(series)
            if tail is None or head <= 0:
                continue
            growth = tail[0] / head
            if growth > GRAD_GROWTH and (worst is None or growth > worst[0]):
                worst = (growth, layer, series, tail[1])
        if worst is not None:
            growth, layer, series, start = worst
            step, epoch = _where(series, start)
            findings.append(make_finding(
                "exploding-gradients", step=step, epoch=epoch, layer=layer,
                evidence={"growth": growth, "threshold": GRAD_GROWTH},
                title=f"Gradient norm of {_shown(run, layer)} grew {growth:.1e}x since the "
                      "start"))
    return findings


# Readings of exactly zero gradient, and none other, that make a layer cut off.
NO_GRADIENT_READINGS = 5


def no_gradient(run: Run) -> list[Finding]:
    """no-gradient: layers whose gradient read exactly zero at every one of their
    `NO_GRADIENT_READINGS` or more readings while another layer's did not, and layers
    read without gradients whose weights never moved (`_never_updated`). A layer that
    had a gradient at some reading is not cut off: a head trained only on some steps
    (tasks taken in turns) reads zero on the others, and the dense start's readings
    (every 5 steps) fall on steps of each kind. Not for layers run.json marks
    `frozen` (weights that do not require gradients but sit in the optimizer), nor when
    a whole layer of units is dead, which cuts the gradient to the layers before it
    and is told as dead-units."""
    if any(h[1] >= 1.0 for signal in ("dead_fraction", "zero_grad_fraction")
           for h in _share_hits(run, signal, None, DEAD_SHARE)):
        return []
    layers = [(k, v["grad_norm"]) for k, v in _weighted_layers(run) if "grad_norm" in v]
    frozen = {str(x["name"]) for x in _meta_layers(run) if x.get("frozen")}
    cut: list[tuple[str, Series]] = []
    flowing = False
    for layer, series in layers:
        f = _finite(series)
        if np.any(f.values != 0):
            flowing = True
        elif layer not in frozen and len(f) >= NO_GRADIENT_READINGS:
            cut.append((layer, f))
    findings = [make_finding(
        "no-gradient", step=int(f.steps[0]), layer=layer,
        evidence={"zero_gradient_readings": len(f)},
        title=f"Layer {_shown(run, layer)} has received no gradient at any of its "
              f"{len(f)} readings: nothing connects it to the loss")
        for layer, f in (cut if flowing else [])]  # none anywhere: the loss rules' case
    return findings + [make_finding(
        "no-gradient", step=int(f.steps[0]), layer=layer,
        evidence={"zero_update_readings": len(f)},
        title=f"Layer {_shown(run, layer)} has not moved at any of its {len(f)} "
              "readings while the other layers learn: no gradient reaches it")
        for layer, f in _never_updated(run)]


def _never_updated(run: Run) -> list[tuple[str, Series]]:
    """Layers read without gradients (the Keras Doctor without a probe) whose update
    was exactly 0 at every one of `NO_GRADIENT_READINGS` or more readings while some
    other layer's was not. With any learning rate a gradient moves float32 weights,
    so these got none; weights stored in a low precision may instead round the update
    away, which update-ratio-low tells."""
    unmoved: list[tuple[str, Series]] = []
    moving = False
    for layer, signals in _weighted_layers(run):
        updates = signals.get("update_norm")
        if updates is None:
            continue
        f = _finite(updates)
        if np.any(f.values != 0):
            moving = True
        elif "grad_norm" not in signals and len(f) >= NO_GRADIENT_READINGS \
                and _weight_dtype(run, layer) not in LOW_PRECISION_BITS:
            unmoved.append((layer, f))
    return unmoved if moving else []


def _share_hits(run: Run, signal: str, kinds: set[str] | None,
                threshold: float) -> list[tuple[str, float, Series, int]]:
    """Layers (of `kinds`, or any) whose recent median of `signal` is above `threshold`."""
    hits: list[tuple[str, float, Series, int]] = []
    for layer, signals in layer_signals(run).items():
        series = signals.get(signal)
        kind = _kind(run, layer)
        if series is None or (kinds is not None and kind and kind not in kinds):
            continue
        tail = _tail_median(series)
        if tail is not None and tail[0] > threshold:
            hits.append((layer, tail[0], series, tail[1]))
    return hits


def dead_units(run: Run) -> list[Finding]:
    """dead-units: most units of a ReLU-family layer never fire, seen in its outputs or
    in the gradients of the layer that feeds it; critical when all of them do."""
    active = _share_hits(run, "dead_fraction", RELU_KINDS, DEAD_SHARE)
    silent = _share_hits(run, "zero_grad_fraction", None, DEAD_SHARE)
    if silent and (not active or max(h[1] for h in silent) > max(h[1] for h in active)):
        hits, signal = silent, "zero_grad_fraction"
        title = "{value:.0%} of the units of {layer} are never active: no gradient reaches them"
    else:
        hits, signal = active, "dead_fraction"
        title = "{value:.0%} of the units of {layer} are never active"
    found = _worst(run, hits, "dead-units", highest=True, signal=signal,
                   threshold=DEAD_SHARE, title=title)
    if found and max(h[1] for h in hits) >= 1.0:
        return [_whole_layer(run, found[0])]
    return found


def _whole_layer(run: Run, finding: Finding) -> Finding:
    """A layer whose every unit is dead passes nothing on: the run cannot learn, and
    the units get no gradient to come back with."""
    assert finding.layer is not None
    return make_finding(
        "dead-units", step=finding.step, epoch=finding.epoch, layer=finding.layer,
        evidence={**finding.evidence, "whole_layer": 1}, severity=Severity.CRITICAL,
        title=f"Every unit of {_shown(run, finding.layer)} is dead: no signal passes it"
        + (" and no gradient reaches it"
           if "median_zero_grad_fraction" in finding.evidence else ""),
        explanation="Every unit of this layer outputs zero for every sample, so the "
        "layers after it see a constant: the model's output no longer depends on its "
        "input, and no gradient flows back through it to the layers before. Dead "
        "units get no gradient, so they do not come back by training on; only the "
        "biases after this layer can still learn. Large negative biases, one step "
        "large enough to push the weights there, or badly scaled inputs cause this.",
        fixes=["Stop this run: it cannot recover. Restart from a fresh initialization.",
               "Initialize biases at zero (or slightly positive) with a He initializer, "
               "and standardize the inputs.",
               "If the units died after training started, lower the learning rate or "
               "clip gradients.",
               "Use LeakyReLU/GELU, or add normalization before the activation."])


def saturated_activations(run: Run) -> list[Finding]:
    """saturated-activations: most hidden sigmoid/tanh outputs sit at the flat ends."""
    output = _output_layers(run)
    hits = [h for h in _share_hits(run, "saturated_fraction", SATURATING_KINDS,
                                   SATURATED_SHARE) if h[0] not in output]
    return _worst(run, hits, "saturated-activations", highest=True,
                  signal="saturated_fraction", threshold=SATURATED_SHARE,
                  title="{value:.0%} of the outputs of {layer} are saturated")


def _output_layers(run: Run) -> set[str]:
    """The model's output as run.json lists the layers: the last layer with weights
    and the layers after it (a `Dense(1, activation="sigmoid")`, or a Linear then an
    `nn.Sigmoid`). A saturated output sigmoid is a confident prediction; the loss,
    not this rule, tells whether it is a wrong one."""
    layers = _meta_layers(run)
    last = max((k for k, x in enumerate(layers) if _params(x) > 0), default=None)
    return set() if last is None else {str(x["name"]) for x in layers[last:]}


def _params(layer: Mapping[str, Any]) -> float:
    value = layer.get("params")
    return float(value) if isinstance(value, int | float) else 0.0


def poor_initialization(run: Run) -> list[Finding]:
    """poor-initialization: activation scale collapses or explodes with depth in the
    first readings."""
    stds = []
    for layer, signals in _weighted_layers(run):
        s = signals.get("act_std")
        if s is None:
            continue
        head = _head_median(s)
        if head is not None:
            stds.append((layer, head, s))
    if not stds:
        return []
    first, last = stds[0], stds[-1]
    biggest = max(stds, key=lambda x: x[1])
    ratio = last[1] / first[1] if first[1] > 0 else math.inf
    evidence: dict[str, float | int | str] = {
        "first_layer": first[0], "first_act_std": first[1], "last_layer": last[0],
        "last_act_std": last[1], "depth_ratio": ratio, "largest_act_std": biggest[1],
        "largest_at": biggest[0],
    }
    step, epoch = locate(_finite(first[2]), 0) if len(_finite(first[2])) else (None, None)
    top, bottom, big = _shown(run, first[0]), _shown(run, last[0]), _shown(run, biggest[0])
    if len(stds) >= 2 and ratio > STD_DEPTH_RATIO:
        title = f"Activation std grows {ratio:.1e}x from {top} to {bottom} at the start"
        layer = last[0]
    elif len(stds) >= 2 and ratio < 1 / STD_DEPTH_RATIO:
        title = f"Activation std shrinks to {ratio:.1e}x from {top} to {bottom} " \
                "at the start"
        layer = last[0]
    elif biggest[1] > STD_ABSOLUTE:
        title = f"Activations of {big} have std {biggest[1]:.2g} at the start"
        layer = biggest[0]
    else:
        return []
    return [make_finding("poor-initialization", step=step, epoch=epoch, layer=layer,
                         evidence=evidence, title=title)]


def frozen_batchnorm(run: Run) -> list[Finding]:
    """frozen-batchnorm: BatchNorm normalizes with running statistics that do not fit
    the data it is trained on, persistently."""
    hits: list[tuple[str, float, Series, int]] = []
    for layer, signals in layer_signals(run).items():
        shift, frozen = signals.get("bn_shift"), signals.get("bn_frozen")
        if shift is None or frozen is None:
            continue
        tail, still = _tail_median(shift), _tail_median(frozen)
        if tail is not None and still is not None and still[0] >= 0.5 \
                and tail[0] > BN_SHIFT:
            hits.append((layer, tail[0], shift, tail[1]))
    return _worst(run, hits, "frozen-batchnorm", highest=True, signal="bn_shift",
                  threshold=BN_SHIFT,
                  title="BatchNorm {layer} uses frozen statistics {value:.2g} off from its "
                  "inputs' (|z| + |ln std ratio| per channel)")


def _evidence(value: object) -> dict[str, float | int | str]:
    if not isinstance(value, Mapping):
        return {}
    out: dict[str, float | int | str] = {}
    for k, v in value.items():
        if isinstance(v, bool):
            out[str(k)] = str(v)
        elif isinstance(v, int | float | str):
            out[str(k)] = v
        else:
            out[str(k)] = str(v)
    return out


def _opt_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def finding_from_entry(entry: Mapping[str, Any]) -> Finding:
    """A finding from one of run.json's `live_findings` entries."""
    code = str(entry.get("code"))
    title = entry.get("title")
    layer = entry.get("layer")
    return make_finding(code, step=_opt_int(entry.get("step")),
                        epoch=_opt_int(entry.get("epoch")),
                        layer=layer if isinstance(layer, str) else None,
                        evidence=_evidence(entry.get("evidence")),
                        title=title if isinstance(title, str) else None)


def live_findings(run: Run) -> list[Finding]:
    """The findings only a live monitor could make, as run.json recorded them."""
    entries = run.meta.get("live_findings")
    if not isinstance(entries, list):
        return []
    return [finding_from_entry(e) for e in entries
            if isinstance(e, Mapping) and e.get("code") in CATALOG]


LAYER_RULES = (update_ratio, gradients, no_gradient, dead_units, saturated_activations,
               poor_initialization, frozen_batchnorm, live_findings)

__all__ = [
    "LAYER_RULES",
    "dead_units",
    "finding_from_entry",
    "frozen_batchnorm",
    "gradients",
    "layer_signals",
    "live_findings",
    "no_gradient",
    "poor_initialization",
    "saturated_activations",
    "update_ratio",
]
