"""The data step of the HTML report: what each plot shows, as plain arrays and markers.

Nothing here draws; `html.py` turns these dataclasses into SVG. Downsampling is for
display only (a plot has a few hundred pixel columns); diagnosis always sees every
point, because rules read the Run, never these.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from lossdoctor.diagnosis import Diagnosis
from lossdoctor.findings import Finding
from lossdoctor.rules.layers import layer_signals  # depth order from run.json
from lossdoctor.run import (
    LR,
    SKIPPED_STEPS,
    TRAIN_ACC,
    TRAIN_LOSS,
    VAL_ACC,
    VAL_LOSS,
    Run,
    Series,
)

LAYER_PREFIX = "layer/"
# Karpathy's rule of thumb: each step should change a weight by about 1e-3 of its size.
# Far below, the learning rate is too low; far above, too high.
UPDATE_RATIO_TARGET = 1e-3
UPDATE_RATIO_BAND = (1e-4, 1e-2)
HEATMAP_MAX_COLUMNS = 120
FRACTION_MAX_LAYERS = 6  # dead/saturated lines beyond this would be a tangle
# Codes whose marker also belongs on the accuracy / learning-rate plots.
ACCURACY_CODES = frozenset({"generalization-gap", "overfitting", "data-problem"})
LR_CODES = frozenset({"lr-too-high", "lr-too-low", "diverging", "plateau", "loss-spike"})


@dataclass(frozen=True, eq=False)
class Line:
    """A polyline; a NaN in x/y breaks it (non-finite values in the log)."""

    label: str
    role: str  # what it is, for colour: "train", "val", "gap", "lr", "early", ...
    x: np.ndarray
    y: np.ndarray
    points: int  # points in the log before downsampling
    dots: bool = False  # few points: draw each one
    dashed: bool = False


@dataclass(frozen=True)
class Marker:
    """Where a finding starts, numbered as in the run's list of findings."""

    number: int
    x: float
    code: str
    severity: str
    title: str
    where: str
    row: str | None = None  # heatmaps: the layer the finding names


@dataclass(frozen=True)
class Span:
    """A shaded x range (non-finite loss, the stretch a regime covers)."""

    x0: float
    x1: float
    label: str
    kind: str  # "nonfinite" | "regime"


@dataclass(frozen=True)
class HLine:
    y: float
    label: str


@dataclass(frozen=True)
class LinePlot:
    key: str
    title: str
    x_label: str
    y_label: str
    lines: tuple[Line, ...]
    markers: tuple[Marker, ...] = ()
    spans: tuple[Span, ...] = ()
    hlines: tuple[HLine, ...] = ()
    log_y: bool = False  # the scale shown first
    log_toggle: bool = False  # offer the other scale too
    y_range: tuple[float, float] | None = None
    y_band: tuple[float, float] | None = None  # a shaded healthy range
    x_ticks: tuple[str, ...] | None = None  # categorical x (layer names by depth)
    note: str = ""


@dataclass(frozen=True, eq=False)
class Heatmap:
    key: str
    title: str
    x_label: str
    rows: tuple[str, ...]  # layer names, input side first
    x_edges: np.ndarray  # len(columns) + 1
    log10_values: np.ndarray  # rows x columns; NaN where the layer logged nothing
    center: float  # log10 of the healthy value
    band: tuple[float, float]  # log10 of the healthy range
    markers: tuple[Marker, ...] = ()
    note: str = ""


@dataclass(frozen=True, eq=False)
class HistogramPanel:
    """One histogram tag over time, rebinned onto shared value bins."""

    tag: str  # as written: "layer/fc1/weight_hist"
    layer: str  # "fc1" (the tag itself when it is not a layer tag)
    kind: str  # "weight_hist", "grad_hist", ... ("" when not a layer tag)
    steps: np.ndarray  # int64, one per column
    edges: np.ndarray  # float64, len(bins) + 1 value edges shared by all columns
    density: np.ndarray  # columns x bins: each column's fraction of values per bin


@dataclass(frozen=True)
class Signature:
    """A numeric signature in a finding, said as an equation."""

    equation: str  # "87.3365 = -ln(FLT_MIN)"
    meaning: str
    value: float | None  # where the loss sits, for a line on the loss plot


@dataclass(frozen=True)
class RunPlots:
    loss: LinePlot | None
    accuracy: LinePlot | None
    lr: LinePlot | None
    layers: tuple[LinePlot | Heatmap, ...] = field(default_factory=tuple)
    signatures: dict[int, Signature] = field(default_factory=dict)  # finding number ->
    histograms: tuple[HistogramPanel, ...] = ()
    skipped: LinePlot | None = None  # a live doctor's count of skipped optimizer steps


# --- downsampling --------------------------------------------------------------------


def downsample_minmax(
    x: np.ndarray, y: np.ndarray, buckets: int
) -> tuple[np.ndarray, np.ndarray]:
    """At most about 2 points per x bucket (pixel column): the lowest and the highest
    value of the bucket, in their original order, plus the first and last point.

    Non-finite values are left out of the line, and the line is broken (a NaN in the
    output) wherever the original had one between two kept points, so a NaN stretch
    shows as a gap instead of being bridged.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, but got {x.shape} and {y.shape}")
    if buckets < 1:
        raise ValueError(f"buckets >= 1 must hold, but got {buckets}")
    finite = np.isfinite(y) & np.isfinite(x)
    idx = np.flatnonzero(finite)
    if idx.size == 0:
        return np.empty(0), np.empty(0)
    if idx.size <= 2 * buckets:
        kept = idx
    else:
        fx, fy = x[idx], y[idx]
        lo, hi = float(fx.min()), float(fx.max())
        width = hi - lo if hi > lo else 1.0
        bucket = np.minimum(((fx - lo) / width * buckets).astype(np.int64), buckets - 1)
        # Steps are non-decreasing, so each bucket is one contiguous stretch.
        if np.any(np.diff(bucket) < 0):
            order = np.argsort(bucket, kind="stable")
            idx, fy, bucket = idx[order], fy[order], bucket[order]
        starts = np.flatnonzero(np.r_[True, np.diff(bucket) != 0])
        counts = np.diff(np.r_[starts, bucket.size])
        per_point_min = np.repeat(np.minimum.reduceat(fy, starts), counts)
        per_point_max = np.repeat(np.maximum.reduceat(fy, starts), counts)
        first_min = _first_true_per_group(fy == per_point_min, bucket)
        first_max = _first_true_per_group(fy == per_point_max, bucket)
        kept = np.unique(np.r_[idx[first_min], idx[first_max], idx[0], idx[-1]])
    # A break wherever a non-finite point lies between two kept ones.
    bad_before = np.cumsum(~finite)
    gap_after = np.r_[bad_before[kept[1:]] - bad_before[kept[:-1]] > 0, False]
    out_x, out_y = x[kept], y[kept]
    if gap_after.any():
        at = np.flatnonzero(gap_after) + 1
        out_x = np.insert(out_x, at, np.nan)
        out_y = np.insert(out_y, at, np.nan)
    return out_x, out_y


def _first_true_per_group(mask: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Position of the first True of each group (every group has one)."""
    hits = np.flatnonzero(mask)
    _, first = np.unique(group[hits], return_index=True)
    return np.asarray(hits[first], dtype=np.int64)


def nonfinite_spans(series: Series, x_end: float | None = None, name: str = "") -> list[Span]:
    """The x ranges where a series holds NaN/inf, merged into stretches."""
    bad = ~np.isfinite(series.values)
    if not bad.any():
        return []
    edges = np.diff(np.r_[0, bad.astype(np.int8), 0])
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    steps = series.steps.astype(np.float64)
    spans = []
    for s, e in zip(starts, ends, strict=True):
        x1 = float(steps[e])
        if e == len(series) - 1 and x_end is not None:
            x1 = max(x1, x_end)
        kinds = {_nonfinite_word(v) for v in series.values[s:e + 1]}
        label = "/".join(sorted(kinds))
        spans.append(Span(float(steps[s]), x1, f"{name} {label}".strip(), "nonfinite"))
    return spans


def _nonfinite_word(value: float) -> str:
    return "NaN" if math.isnan(value) else ("inf" if value > 0 else "-inf")


# --- where findings go -----------------------------------------------------------------


def steps_are_epochs(run: Run) -> bool:
    """Whether the run's x axis counts epochs (epoch-level logs such as Keras' CSV)."""
    for key in (TRAIN_LOSS, VAL_LOSS):
        s = run.get(key)
        if s is not None and len(s):
            return s.epochs is not None and bool((s.steps == s.epochs).all())
    return False


def finding_x(run: Run, finding: Finding) -> float | None:
    """The x (step) where a finding starts; an epoch-only finding sits at the last
    step of that epoch, where epoch-level values are logged."""
    if finding.step is not None:
        return float(finding.step)
    if finding.epoch is None:
        return None
    for key in (VAL_LOSS, TRAIN_LOSS, *run.series):
        s = run.get(key)
        if s is None or s.epochs is None or not len(s):
            continue
        hit = np.flatnonzero(s.epochs == finding.epoch)
        if hit.size:
            return float(s.steps[hit[-1]])
    return float(finding.epoch)


def finding_markers(diagnosis: Diagnosis) -> list[Marker]:
    """One marker per located finding, numbered 1.. in the order the report lists them."""
    out = []
    for number, f in enumerate(diagnosis.findings, 1):
        x = finding_x(diagnosis.run, f)
        if x is None:
            continue
        out.append(
            Marker(number, x, f.code, f.severity.value, f.title, f.where(), row=f.layer)
        )
    return out


def regime_span(diagnosis: Diagnosis, x_end: float | None) -> Span | None:
    """From where the regime's own finding starts to the end of the run."""
    for f in diagnosis.findings:
        if f.code == diagnosis.regime:
            x = finding_x(diagnosis.run, f)
            if x is not None and x_end is not None:
                return Span(x, max(x, x_end), diagnosis.regime, "regime")
    return None


# --- numeric signatures ------------------------------------------------------------------


def numeric_signature(f: Finding) -> Signature | None:
    """The constant a numerics finding recognized, as an equation a reader can check."""
    ev = f.evidence
    if f.code == "softmax-overflow" and "saturation_constant" in ev:
        constant = float(ev["saturation_constant"])
        formula, _, meaning = str(ev.get("signature", "")).partition(": ")
        fraction = float(ev.get("saturated_fraction", 1.0))
        frozen = ev.get("frozen_value")
        value = float(frozen) if isinstance(frozen, int | float) else constant
        if fraction < 0.999:
            equation = f"{value:.4f} ≈ {fraction:.2f} × {constant:.4f} = {fraction:.2f} × {formula}"
            meaning += f"; on {fraction:.0%} of the samples"
        else:
            equation = f"{constant:.4f} = {formula}"
        return Signature(equation, meaning, value)
    if f.code == "constant-loss" and "classes" in ev:
        frozen = float(ev.get("frozen_value", math.nan))
        c = ev["classes"]
        return Signature(
            f"{frozen:.4f} = ln({c})",
            f"a uniform prediction over {c} classes: the output ignores the input",
            frozen,
        )
    if f.code == "nan-loss":
        first = ev.get("first_bad_value", "nan")
        where = f.where() or "the start"
        return Signature(f"loss = {first} from {where}", "the first non-finite loss", None)
    return None


# --- the plots ---------------------------------------------------------------------------


def _x_end(*series: Series | None) -> float | None:
    """The last x of the series a plot shows (other series, such as per-batch extras,
    may run on another clock)."""
    ends = [float(s.steps[-1]) for s in series if s is not None and len(s)]
    return max(ends) if ends else None


def _line(label: str, role: str, s: Series, buckets: int) -> Line:
    x, y = downsample_minmax(s.steps, s.values, buckets)
    return Line(label, role, x, y, len(s), dots=len(s) <= 80)


def _spans_decades(lines: Sequence[Line], decades: float) -> bool:
    ys = [ln.y[np.isfinite(ln.y) & (ln.y > 0)] for ln in lines]
    pos = np.concatenate(ys) if ys else np.empty(0)
    return pos.size > 1 and float(pos.max() / pos.min()) >= 10.0**decades


def loss_plot(diagnosis: Diagnosis, buckets: int = 600) -> LinePlot | None:
    run = diagnosis.run
    train, val = run.densest_train_loss(), run.get(VAL_LOSS)
    lines = []
    if train is not None and len(train):
        lines.append(_line("train loss", "train", train, buckets))
    if val is not None and len(val):
        lines.append(_line("val loss", "val", val, buckets))
    if not lines:
        return None
    x_end = _x_end(train, val)
    spans: list[Span] = []
    regime = regime_span(diagnosis, x_end)
    if regime is not None:
        spans.append(regime)
    for s, name in ((train, "train loss"), (val, "val loss")):
        if s is not None:
            spans += nonfinite_spans(s, x_end, name)
    hlines = []
    for f in diagnosis.findings:
        sig = numeric_signature(f)
        if sig is not None and sig.value is not None and math.isfinite(sig.value):
            hlines.append(HLine(sig.value, sig.equation))
    has_positive = any(np.any(ln.y[np.isfinite(ln.y)] > 0) for ln in lines)
    return LinePlot(
        key="loss",
        title="Loss",
        x_label="epoch" if steps_are_epochs(run) else "step",
        y_label="loss",
        lines=tuple(lines),
        markers=tuple(finding_markers(diagnosis)),
        spans=tuple(spans),
        hlines=tuple(hlines),
        log_y=_spans_decades(lines, 2.0),
        log_toggle=has_positive,
    )


def accuracy_plot(diagnosis: Diagnosis, buckets: int = 600) -> LinePlot | None:
    run = diagnosis.run
    train, val = run.get(TRAIN_ACC), run.get(VAL_ACC)
    lines = []
    if train is not None and len(train):
        lines.append(_line("train accuracy", "train", train, buckets))
    if val is not None and len(val):
        lines.append(_line("val accuracy", "val", val, buckets))
    if not lines:
        return None
    note = ""
    gap = accuracy_gap(train, val)
    if gap is not None:
        lines.append(Line("gap (train - val)", "gap", gap.steps.astype(np.float64),
                          gap.values, len(gap), dots=len(gap) <= 80, dashed=True))
        last = gap.finite()
        if len(last):
            note = f"gap at the end: {last.values[-1] * 100:.1f} points"
    values = np.concatenate([ln.y[np.isfinite(ln.y)] for ln in lines])
    in_unit = values.size == 0 or (values.min() >= -1.0 and values.max() <= 1.0)
    markers = [m for m in finding_markers(diagnosis) if m.code in ACCURACY_CODES]
    return LinePlot(
        key="accuracy",
        title="Accuracy",
        x_label="epoch" if steps_are_epochs(run) else "step",
        y_label="accuracy",
        lines=tuple(lines),
        markers=tuple(markers),
        y_range=(min(0.0, float(values.min())) if values.size else 0.0, 1.0)
        if in_unit
        else None,
        note=note,
    )


def accuracy_gap(train: Series | None, val: Series | None) -> Series | None:
    """train - val accuracy at the validation points (training interpolated there)."""
    if train is None or val is None:
        return None
    t, v = train.finite(), val.finite()
    if len(t) < 1 or len(v) < 1:
        return None
    inside = (v.steps >= t.steps[0]) & (v.steps <= t.steps[-1])
    if not inside.any():
        return None
    steps = v.steps[inside]
    gap = np.interp(steps, t.steps, t.values) - v.values[inside]
    return Series(steps, gap, None if v.epochs is None else v.epochs[inside])


def lr_plot(diagnosis: Diagnosis, buckets: int = 600) -> LinePlot | None:
    run = diagnosis.run
    lr = run.get(LR)
    if lr is None or not len(lr):
        return None
    line = _line("learning rate", "lr", lr, buckets)
    positive = line.y[np.isfinite(line.y)]
    return LinePlot(
        key="lr",
        title="Learning rate",
        x_label="epoch" if steps_are_epochs(run) else "step",
        y_label="lr",
        lines=(line,),
        markers=tuple(m for m in finding_markers(diagnosis) if m.code in LR_CODES),
        log_y=bool(positive.size and positive.min() > 0 and _spans_decades([line], 1.0)),
        log_toggle=bool(positive.size and positive.min() > 0),
    )


def skipped_plot(diagnosis: Diagnosis, buckets: int = 600) -> LinePlot | None:
    """The running count of optimizer steps skipped for non-finite gradients (a
    mixed-precision loss scaler's), when a live doctor recorded any: a line that
    climbs with each skip, steep where the scaler keeps skipping."""
    run = diagnosis.run
    skipped = run.get(SKIPPED_STEPS)
    if skipped is None or not len(skipped):
        return None
    return LinePlot(
        key="skipped",
        title="Skipped optimizer steps",
        x_label="step",
        y_label="steps skipped so far",
        lines=(_line("skipped steps (running count)", "skipped", skipped, buckets),),
        markers=tuple(m for m in finding_markers(diagnosis) if m.code == "skipped-steps"),
    )


# --- per-layer signals ---------------------------------------------------------------


def update_ratio_heatmap(
    diagnosis: Diagnosis, columns: int = HEATMAP_MAX_COLUMNS
) -> Heatmap | None:
    """update/weight ratio per layer over time; each cell keeps the value farthest
    from the healthy 1e-3 (in log space) of its time bucket, so spikes survive."""
    layers = layer_signals(diagnosis.run)
    rows = {name: sig["update_ratio"] for name, sig in layers.items() if "update_ratio" in sig}
    if not rows:
        return None
    all_steps = np.concatenate([s.steps for s in rows.values()])
    lo, hi = float(all_steps.min()), float(all_steps.max())
    distinct = np.unique(all_steps).size
    n_cols = max(1, min(columns, distinct))
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, n_cols + 1)
    center = math.log10(UPDATE_RATIO_TARGET)
    grid = np.full((len(rows), n_cols), np.nan)
    for r, series in enumerate(rows.values()):
        ok = np.isfinite(series.values) & (series.values > 0)
        if not ok.any():
            continue
        logv = np.log10(series.values[ok])
        col = np.clip(np.searchsorted(edges, series.steps[ok], side="right") - 1, 0, n_cols - 1)
        dist = np.abs(logv - center)
        # Farthest from the centre wins: sort by distance, then the last write wins.
        order = np.argsort(dist, kind="stable")
        grid[r, col[order]] = logv[order]
    row_names = tuple(rows)
    markers = tuple(
        m for m in finding_markers(diagnosis) if m.row is not None and m.row in row_names
    )
    return Heatmap(
        key="update-ratio",
        title="Update / weight ratio by layer",
        x_label="epoch" if steps_are_epochs(diagnosis.run) else "step",
        rows=row_names,
        x_edges=edges,
        log10_values=grid,
        center=center,
        band=(math.log10(UPDATE_RATIO_BAND[0]), math.log10(UPDATE_RATIO_BAND[1])),
        markers=markers,
    )


def _snapshots(series: Series) -> tuple[float, float, float]:
    """Median of the first, middle and last thirds of the finite values."""
    v = series.values[np.isfinite(series.values)]
    if v.size == 0:
        return math.nan, math.nan, math.nan
    thirds = np.array_split(v, 3) if v.size >= 3 else [v, v, v]
    return tuple(float(np.median(t)) if t.size else math.nan for t in thirds)  # type: ignore[return-value]


def by_depth_plot(
    diagnosis: Diagnosis, signal: str, key: str, title: str, y_label: str, log_y: bool = True
) -> LinePlot | None:
    """A signal against layer depth (input side first), early / middle / late in the run."""
    layers = {n: s[signal] for n, s in layer_signals(diagnosis.run).items() if signal in s}
    if not layers:
        return None
    names = tuple(layers)
    snaps = np.array([_snapshots(s) for s in layers.values()])
    depth = np.arange(len(names), dtype=np.float64)
    lines = tuple(
        Line(f"{label} in the run", role, depth, snaps[:, i], len(names), dots=True)
        for i, (label, role) in enumerate((("early", "early"), ("middle", "middle"),
                                            ("late", "late")))
    )
    finite = snaps[np.isfinite(snaps)]
    usable_log = log_y and finite.size > 0 and bool(finite.min() > 0)
    return LinePlot(
        key=key,
        title=title,
        x_label="layer (input → output)",
        y_label=y_label,
        lines=lines,
        log_y=usable_log,
        log_toggle=usable_log,
        x_ticks=names,
    )


FRACTION_WORDS = {"dead_fraction": "dead", "zero_grad_fraction": "dead (no gradient)",
                  "saturated_fraction": "saturated"}


def fraction_plot(diagnosis: Diagnosis, buckets: int = 600) -> LinePlot | None:
    """Dead (solid: inactive outputs, or no gradient into a Linear/Conv layer's units)
    and saturated (dashed) unit fractions over time, worst layers."""
    layers = layer_signals(diagnosis.run)
    candidates: list[tuple[float, str, str, Series]] = []
    for name, sig in layers.items():
        for signal in FRACTION_WORDS:
            s = sig.get(signal)
            if s is None or not len(s):
                continue
            v = s.values[np.isfinite(s.values)]
            candidates.append((float(v.max()) if v.size else -1.0, name, signal, s))
    if not candidates:
        return None
    candidates.sort(key=lambda c: -c[0])
    shown = candidates[:FRACTION_MAX_LAYERS]
    lines: list[Line] = []
    for _, name, signal, s in shown:
        x, y = downsample_minmax(s.steps, s.values, buckets)
        word = FRACTION_WORDS[signal]
        lines.append(Line(f"{name} {word}", f"layer{len(lines)}", x, y, len(s),
                          dots=len(s) <= 80, dashed=signal == "saturated_fraction"))
    hidden = len(candidates) - len(shown)
    return LinePlot(
        key="fractions",
        title="Dead and saturated units",
        x_label="epoch" if steps_are_epochs(diagnosis.run) else "step",
        y_label="fraction of units",
        lines=tuple(lines),
        markers=tuple(m for m in finding_markers(diagnosis)
                      if m.code in ("dead-units", "saturated-activations")),
        y_range=(0.0, 1.0),
        note=f"{hidden} more series with lower fractions not shown" if hidden else "",
    )


def layer_plots(diagnosis: Diagnosis) -> tuple[LinePlot | Heatmap, ...]:
    plots: list[LinePlot | Heatmap | None] = [
        update_ratio_heatmap(diagnosis),
        by_depth_plot(diagnosis, "grad_norm", "grad-norm", "Gradient norm by depth",
                      "gradient norm"),
        by_depth_plot(diagnosis, "act_std", "act-std", "Activation std by depth",
                      "activation std"),
        by_depth_plot(diagnosis, "act_mean", "act-mean", "Activation mean by depth",
                      "activation mean", log_y=False),
        fraction_plot(diagnosis),
    ]
    return tuple(p for p in plots if p is not None)


HISTOGRAM_MAX_COLUMNS = 120
HISTOGRAM_BINS = 40


def _rebin(edges: np.ndarray, counts: np.ndarray, shared: np.ndarray) -> np.ndarray:
    """`counts` over `edges` moved onto `shared` edges, each bucket's values taken as
    spread evenly over it (linear interpolation of the cumulative count)."""
    cdf = np.concatenate([[0.0], np.cumsum(counts)])
    if edges[-1] <= edges[0]:  # every value at one point: a step in the CDF there
        at = float(edges[0])
        return np.diff(np.where(shared >= at, cdf[-1], 0.0))
    return np.diff(np.interp(shared, edges, cdf))


def histogram_panels(run: Run, columns: int = HISTOGRAM_MAX_COLUMNS,
                     bins: int = HISTOGRAM_BINS) -> tuple[HistogramPanel, ...]:
    """One panel per histogram tag of `run`: a live doctor's layers input side first
    (weights, gradients, activations of each), other tags in the order they were
    written; at most `columns` steps (evenly picked), every histogram rebinned onto
    `bins` equal bins over the range of all of them, and normalized per step
    (fractions summing to 1; all zero where a step had no values)."""
    panels = []
    for tag, hists in sorted(run.histograms.items(), key=_histogram_order(run)):
        hs = [h for h in hists if np.isfinite(h.min) and np.isfinite(h.max)
              and np.isfinite(h.bucket_limit).all()]
        if not hs:
            continue
        if len(hs) > columns:
            pick = np.unique(np.round(np.linspace(0, len(hs) - 1, columns)).astype(np.int64))
            hs = [hs[int(i)] for i in pick]
        own = [h.edges() for h in hs]
        lo = min(float(e[0]) for e in own)
        hi = max(float(e[-1]) for e in own)
        if not hi > lo:
            lo, hi = lo - 0.5, hi + 0.5
        shared = np.linspace(lo, hi, bins + 1)
        density = np.zeros((len(hs), bins))
        for c, (h, e) in enumerate(zip(hs, own, strict=True)):
            moved = np.clip(_rebin(e, h.bucket, shared), 0.0, None)
            total = float(moved.sum())
            if total > 0:
                density[c] = moved / total
        layer, kind = _histogram_title(tag)
        panels.append(HistogramPanel(tag=tag, layer=layer, kind=kind,
                                     steps=np.array([h.step for h in hs], dtype=np.int64),
                                     edges=shared, density=density))
    return tuple(panels)


_HISTOGRAM_KINDS = {"weight_hist": 0, "grad_hist": 1, "act_hist": 2}


def _histogram_order(run: Run) -> Callable[[tuple[str, object]], tuple[int, int, int]]:
    """Sort key of (tag, histograms) items: layers in depth order (see
    `layer_signals`), then every other tag (the sort is stable: written order)."""
    depth = {name: i for i, name in enumerate(layer_signals(run))}

    def key(item: tuple[str, object]) -> tuple[int, int, int]:
        layer, kind = _histogram_title(item[0])
        if item[0].startswith(LAYER_PREFIX) and layer in depth:
            return 0, depth[layer], _HISTOGRAM_KINDS.get(kind, 3)
        return 1, 0, 0

    return key


def _histogram_title(tag: str) -> tuple[str, str]:
    """(layer, kind) a histogram tag names: `layer/<name>/<kind>` (the doctors),
    `<split>/<model>/<layer>/<weight>/histogram` (Keras' `histogram_freq`), else
    (tag, "")."""
    if tag.startswith(LAYER_PREFIX):
        name, sep, kind = tag[len(LAYER_PREFIX):].rpartition("/")
        if sep and name:
            return name, kind
    parts = tag.split("/")
    if len(parts) >= 4 and parts[-1] == "histogram":
        return "/".join(parts[1:-2]), parts[-2]
    return tag, ""


def run_plots(diagnosis: Diagnosis, buckets: int = 600) -> RunPlots:
    """Every plot of one run's section."""
    signatures = {
        n: sig
        for n, f in enumerate(diagnosis.findings, 1)
        if (sig := numeric_signature(f)) is not None
    }
    return RunPlots(
        loss=loss_plot(diagnosis, buckets),
        accuracy=accuracy_plot(diagnosis, buckets),
        lr=lr_plot(diagnosis, buckets),
        layers=layer_plots(diagnosis),
        signatures=signatures,
        histograms=histogram_panels(diagnosis.run),
        skipped=skipped_plot(diagnosis, buckets),
    )
