"""The drawing step of the HTML report: one self-contained file, plots as inline SVG.

Everything the page needs is inside it (CSS, a few lines of JS, heatmaps as PNG data
URIs), so it opens offline and can be mailed or attached to a CI run. A Content
Security Policy allows only the page's own script (by hash) and data: images, so
even a log string that slipped past escaping could neither run nor load anything.
Every string that comes from a log goes through `_esc` (or `_json_for_script`).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
import math
import os
import re
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lossdoctor import __version__
from lossdoctor.diagnosis import Diagnosis
from lossdoctor.errors import InputError
from lossdoctor.findings import Finding, Severity
from lossdoctor.report.plotdata import (
    Heatmap,
    HistogramPanel,
    Line,
    LinePlot,
    Marker,
    RunPlots,
    Signature,
    run_plots,
)
from lossdoctor.run import TRAIN_LOSS, VAL_LOSS

__all__ = ["Report", "render_html", "write_html_report"]

# Plot geometry in SVG user units (the SVG scales to its column with CSS, so these
# also set the text size relative to the plot).
WIDE_W, WIDE_H = 820, 300
SMALL_W, SMALL_H = 440, 240
LAYER_W = 560
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 58, 14, 30, 38
DISPLAY_BUCKETS = WIDE_W - MARGIN_L - MARGIN_R  # one min/max pair per pixel column
HEATMAP_LABEL_W = 150
MIN_RELATIVE_SPAN = 0.01  # a nearly constant curve is drawn flat, not as magnified noise

COLORS = {
    "train": "#2563eb",
    "val": "#ea580c",
    "gap": "#6b7280",
    "lr": "#7c3aed",
    "skipped": "#dc2626",
    "early": "#93c5fd",
    "middle": "#3b82f6",
    "late": "#1e3a8a",
}
LAYER_COLORS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2")
SEVERITY_COLORS = {"critical": "#dc2626", "warning": "#d97706", "info": "#0891b2"}
REGIME_SEVERITY = {
    "still-learning": "ok",
    "converged": "ok",
    "unknown": "info",
    "overfitting": "warning",
    "plateau": "warning",
    "data-problem": "critical",
    "diverging": "critical",
}


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _json_for_script(data: object) -> str:
    """JSON that cannot end its <script> element or start a comment inside it."""
    text = json.dumps(data, allow_nan=False, ensure_ascii=False)
    for raw, safe in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                      ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(raw, safe)
    return text


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".") if math.isfinite(value) else "0"


def _fmt_value(value: float | int | str) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _fmt_tick(value: float) -> str:
    if value == 0:
        return "0"
    mag = abs(value)
    if mag >= 1e6:
        return f"{value / 1e6:g}M"
    if mag >= 1e4:
        return f"{value / 1e3:g}k"
    if mag < 1e-3:
        return f"{value:.0e}".replace("e-0", "e-")
    return f"{value:.4g}"


def _labelled(ticks: Sequence[float]) -> list[tuple[float, str]]:
    """Each tick with its label; more digits where the short labels would repeat
    (ticks 4.8e-5, 5e-5, 5.2e-5 all read "5e-5" at one digit)."""
    labels = [_fmt_tick(t) for t in ticks]
    digits = 2
    while len(set(labels)) < len(labels) and digits <= 6:
        labels = [re.sub(r"e([+-])0*(\d)", lambda m: f"e{m[1].strip('+')}{m[2]}",
                         f"{t:.{digits}g}") for t in ticks]
        digits += 1
    return list(zip(ticks, labels, strict=True))


# --- scales and ticks ----------------------------------------------------------------


def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    ticks = []
    t = first
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    return ticks


class _Scale:
    """Maps data to pixels; log scales work in log10 space."""

    def __init__(self, lo: float, hi: float, p0: float, p1: float, log: bool) -> None:
        self.log = log
        if log:
            lo, hi = math.log10(lo), math.log10(hi)
        if hi <= lo:
            pad = abs(lo) * 0.05 or 0.5
            lo, hi = lo - pad, hi + pad
        self.lo, self.hi, self.p0, self.p1 = lo, hi, p0, p1

    def __call__(self, values: np.ndarray) -> np.ndarray:
        v = np.asarray(values, dtype=np.float64)
        if self.log:
            with np.errstate(divide="ignore", invalid="ignore"):
                v = np.where(v > 0, np.log10(np.where(v > 0, v, 1.0)), np.nan)
        return self.p0 + (v - self.lo) / (self.hi - self.lo) * (self.p1 - self.p0)

    def one(self, value: float) -> float:
        return float(self(np.array([value]))[0])

    def ticks(self) -> list[float]:
        if not self.log:
            return _nice_ticks(self.lo, self.hi)
        lo, hi = math.floor(self.lo), math.ceil(self.hi)
        decades = [10.0**k for k in range(lo, hi + 1) if self.lo - 1e-9 <= k <= self.hi + 1e-9]
        if len(decades) >= 2:
            stride = max(1, math.ceil(len(decades) / 6))
            return decades[::stride]
        # Less than a decade: round numbers of the data's own scale (0.4, 0.6, 0.8, 1),
        # placed on the log axis, not powers like 10**-0.4 = 0.3981.
        return [t for t in _nice_ticks(10**self.lo, 10**self.hi, 4) if t > 0]


def _y_domain(lines: Sequence[Line], plot: LinePlot, log: bool) -> tuple[float, float] | None:
    """The y range to show; at least MIN_RELATIVE_SPAN of the values' size."""
    if plot.y_range is not None and not log:
        return plot.y_range
    ys = [ln.y[np.isfinite(ln.y)] for ln in lines]
    ys += [np.array([h.y for h in plot.hlines])]
    values = np.concatenate(ys) if ys else np.empty(0)
    if log:
        values = values[values > 0]
    if values.size == 0:
        return None
    lo, hi = float(values.min()), float(values.max())
    if log:
        if hi < lo * (1 + MIN_RELATIVE_SPAN):
            return lo / (1 + MIN_RELATIVE_SPAN), hi * (1 + MIN_RELATIVE_SPAN)
        return lo, hi
    least = MIN_RELATIVE_SPAN * max(abs(lo), abs(hi))
    if hi - lo < least:
        mid = (lo + hi) / 2
        lo, hi = mid - least / 2, mid + least / 2
    pad = (hi - lo) * 0.04 or 0.5
    return (lo - pad if lo < 0 or lo - pad >= 0 else 0.0), hi + pad


def _x_domain(plot: LinePlot) -> tuple[float, float]:
    xs = [ln.x[np.isfinite(ln.x)] for ln in plot.lines]
    xs += [np.array([m.x for m in plot.markers])]
    xs += [np.array([v for s in plot.spans for v in (s.x0, s.x1)])]
    values = np.concatenate(xs)
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = float(values.min()), float(values.max())
    if plot.x_ticks is not None:
        return lo - 0.5, hi + 0.5
    return (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)


# --- SVG pieces ------------------------------------------------------------------------


@functools.lru_cache(maxsize=1 << 16)  # steps between pixels repeat a lot
def _tenths(v: int) -> str:
    """An integer count of tenths as the shortest SVG number: 5 -> ".5", -30 -> "-3"."""
    sign, v = ("-", -v) if v < 0 else ("", v)
    whole, frac = divmod(v, 10)
    if frac == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole if whole else ''}.{frac}"


def _pairs(dx: Sequence[int], dy: Sequence[int]) -> str:
    # SVG needs no separator before a minus sign.
    parts = []
    for x, y in zip(dx, dy, strict=True):
        xs, ys = _tenths(x), _tenths(y)
        pair = xs + ys if ys[0] == "-" else xs + "," + ys
        parts.append(pair if pair[0] == "-" else " " + pair)
    return "".join(parts).removeprefix(" ")


def _path_d(px: np.ndarray, py: np.ndarray) -> str:
    """A compact path: `M` at each start (after a NaN break), then relative `l` steps,
    all on a 0.1 unit grid (rounded once, so steps add up exactly)."""
    ok = np.isfinite(px) & np.isfinite(py)
    if not ok.any():
        return ""
    xi = np.round(np.where(ok, px, 0) * 10).astype(np.int64)
    yi = np.round(np.where(ok, py, 0) * 10).astype(np.int64)
    edges = np.diff(np.r_[0, ok.astype(np.int8), 0])
    parts = []
    for start, stop in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1),
                           strict=True):
        x, y = xi[start:stop], yi[start:stop]
        dx, dy = np.diff(x), np.diff(y)
        moved = (dx != 0) | (dy != 0)
        head = f"M{_tenths(int(x[0]))},{_tenths(int(y[0]))}"
        if moved.any():
            head += "l" + _pairs(dx[moved].tolist(), dy[moved].tolist())
        elif stop - start == 1:
            head += "h0"  # a lone point still shows (round caps)
        parts.append(head)
    return "".join(parts)


def _dots_d(px: np.ndarray, py: np.ndarray) -> str:
    # Zero-length segments with round caps draw as dots: one element for all points.
    return "".join(
        f"M{x:.1f},{y:.1f}h0"
        for x, y in zip(px.tolist(), py.tolist(), strict=True)
        if math.isfinite(x) and math.isfinite(y)
    )


def _line_color(line: Line) -> str:
    if line.role.startswith("layer"):
        return LAYER_COLORS[int(line.role[5:] or 0) % len(LAYER_COLORS)]
    return COLORS.get(line.role, "#374151")


def _y_layer(plot: LinePlot, log: bool, xs: _Scale, width: float, height: float, css: str,
             clip: str) -> str:
    y_lo, y_hi = MARGIN_T, height - MARGIN_B
    lines = plot.lines
    domain = _y_domain(lines, plot, log)
    if domain is None:
        return (f'<g class="{css}"><text x="{width / 2:.0f}" y="{height / 2:.0f}" '
                f'class="ld-empty">no positive values to show on a log scale</text></g>')
    ys = _Scale(domain[0], domain[1], y_hi, y_lo, log)
    out = [f'<g class="{css}">']
    if plot.y_band is not None:
        b0, b1 = ys.one(plot.y_band[0]), ys.one(plot.y_band[1])
        top, bottom = max(min(b0, b1), y_lo), min(max(b0, b1), y_hi)
        if bottom > top:
            out.append(f'<rect class="ld-band" x="{MARGIN_L}" y="{top:.1f}" '
                       f'width="{width - MARGIN_L - MARGIN_R}" height="{bottom - top:.1f}"/>')
    for t, label in _labelled(ys.ticks()):
        py = ys.one(t)
        if not (y_lo - 0.5 <= py <= y_hi + 0.5):
            continue
        out.append(f'<line class="ld-grid" x1="{MARGIN_L}" x2="{width - MARGIN_R}" '
                   f'y1="{py:.1f}" y2="{py:.1f}"/>'
                   f'<text class="ld-ytick" x="{MARGIN_L - 6}" y="{py + 4:.1f}">'
                   f"{_esc(label)}</text>")
    for h in plot.hlines:
        py = ys.one(h.y)
        if math.isfinite(py) and y_lo <= py <= y_hi:
            out.append(f'<line class="ld-hline" x1="{MARGIN_L}" x2="{width - MARGIN_R}" '
                       f'y1="{py:.1f}" y2="{py:.1f}"/>'
                       f'<text class="ld-hlabel" x="{width - MARGIN_R - 4}" y="{py - 5:.1f}">'
                       f"{_esc(h.label)}</text>")
    out.append(f'<g clip-path="url(#{_esc(clip)})">')
    for line in lines:
        px, py_line = xs(line.x), ys(line.y)
        color = _line_color(line)
        dash = ' stroke-dasharray="5 3"' if line.dashed else ""
        out.append(f'<path class="ld-line" stroke="{color}"{dash} d="{_path_d(px, py_line)}"/>')
        if line.dots:
            out.append(f'<path class="ld-dots" stroke="{color}" d="{_dots_d(px, py_line)}"/>')
    out.append("</g></g>")
    return "".join(out)


def _lanes(pixels: Sequence[float], gap: float = 15.0) -> list[int]:
    """A lane for each marker so numbers at nearly the same x do not overlap."""
    lanes: list[int] = []
    last_in_lane: dict[int, float] = {}
    for px in pixels:
        lane = 0
        while lane in last_in_lane and px - last_in_lane[lane] < gap:
            lane += 1
        last_in_lane[lane] = px
        lanes.append(lane)
    return lanes


def _markers_svg(markers: Sequence[Marker], xs: _Scale, height: float, anchor: str,
                 row_y: dict[str, float] | None = None) -> str:
    y_lo, y_hi = MARGIN_T, height - MARGIN_B
    ordered = sorted(markers, key=lambda m: m.x)
    pixels = [xs.one(m.x) for m in ordered]
    out = []
    for m, px, lane in zip(ordered, pixels, _lanes(pixels), strict=True):
        color = SEVERITY_COLORS.get(m.severity, "#374151")
        tip = f"{m.number}. {m.code} ({m.severity}) at {m.where}: {m.title}"
        cy = y_lo - 9 + lane * 15 if row_y is None else row_y.get(m.row or "", y_lo)
        line = ("" if row_y is not None else
                f'<line class="ld-mline" stroke="{color}" x1="{px:.1f}" x2="{px:.1f}" '
                f'y1="{y_lo - 2}" y2="{y_hi}"/>')
        out.append(
            f'<a href="#{_esc(anchor)}-f{m.number}" class="ld-marker">'
            f"<title>{_esc(tip)}</title>{line}"
            f'<circle cx="{px:.1f}" cy="{cy:.1f}" r="7" fill="{color}"/>'
            f'<text x="{px:.1f}" y="{cy + 3.5:.1f}">{m.number}</text></a>'
        )
    return "".join(out)


def _x_axis(plot: LinePlot, xs: _Scale, width: float, height: float) -> str:
    y_hi = height - MARGIN_B
    out = [f'<line class="ld-axis" x1="{MARGIN_L}" x2="{width - MARGIN_R}" '
           f'y1="{y_hi}" y2="{y_hi}"/>']
    if plot.x_ticks is not None:
        names = plot.x_ticks
        stride = max(1, math.ceil(len(names) / 12))
        for i in range(0, len(names), stride):
            px = xs.one(float(i))
            label = names[i] if len(names[i]) <= 12 else names[i][:11] + "…"
            out.append(f'<text class="ld-xtick" x="{px:.1f}" y="{y_hi + 14}">'
                       f"<title>{_esc(names[i])}</title>{_esc(label)}</text>")
    else:
        for t, label in _labelled(xs.ticks()):
            px = xs.one(t)
            out.append(f'<text class="ld-xtick" x="{px:.1f}" y="{y_hi + 14}">'
                       f"{_esc(label)}</text>")
    out.append(f'<text class="ld-xlabel" x="{(MARGIN_L + width - MARGIN_R) / 2:.0f}" '
               f'y="{height - 6}">'
               f"{_esc(plot.x_label)}</text>")
    return "".join(out)


def _legend(lines: Sequence[Line]) -> str:
    items = []
    for line in lines:
        dash = ' stroke-dasharray="5 3"' if line.dashed else ""
        swatch = (f'<svg width="22" height="8" aria-hidden="true"><line x1="1" x2="21" y1="4" '
                  f'y2="4" stroke="{_line_color(line)}" stroke-width="2.5"{dash}/></svg>')
        count = f" ({line.points:,} pts)" if line.points > 1 and line.role in (
            "train", "val", "lr") else ""
        items.append(f"<span>{swatch}{_esc(line.label)}{_esc(count)}</span>")
    return f'<div class="ld-legend">{"".join(items)}</div>'


def draw_line_plot(plot: LinePlot, anchor: str, uid: str, width: float = SMALL_W,
                   height: float = SMALL_H, wide: bool = False) -> str:
    """A figure with an SVG plot: both y scales drawn when a toggle is offered."""
    xs = _Scale(*_x_domain(plot), MARGIN_L, width - MARGIN_R, log=False)
    clip = f"{uid}-clip"
    layers = []
    scales = (False, True) if plot.log_toggle else (plot.log_y,)
    for log in scales:
        css = "ld-log" if log else "ld-lin"
        layers.append(_y_layer(plot, log, xs, width, height, css, clip))
    spans = []
    y_lo, y_hi = MARGIN_T, height - MARGIN_B
    labelled = 0
    for s in plot.spans:
        x0, x1 = xs.one(s.x0), xs.one(s.x1)
        w = max(x1 - x0, 2.0)
        regime = s.kind == "regime"
        label = f"regime: {s.label}" if regime else s.label
        # Regime at the bottom; non-finite stretches stacked under the top edge.
        ty = y_hi - 6 if regime else y_lo + 14 + 13 * labelled
        labelled += 0 if regime else 1
        spans.append(f'<rect class="ld-span ld-span-{s.kind}" x="{x0:.1f}" y="{y_lo}" '
                     f'width="{w:.1f}" height="{y_hi - y_lo}"><title>{_esc(label)}</title></rect>'
                     f'<text class="ld-spanlabel" x="{x0 + 4:.1f}" y="{ty}">'
                     f"{_esc(label)}</text>")
    toggle = ""
    if plot.log_toggle:
        pressed = str(plot.log_y).lower()
        toggle = (f'<button type="button" class="ld-scale" aria-pressed="{pressed}">'
                  f'{"linear y" if plot.log_y else "log y"}</button>')
    classes = "ld-fig" + (" ld-wide" if wide else "") + (
        " ld-show-log" if plot.log_toggle and plot.log_y else "")
    note = f'<span class="ld-note">{_esc(plot.note)}</span>' if plot.note else ""
    svg = (
        f'<svg viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
        f'aria-label="{_esc(plot.title)}"><defs><clipPath id="{_esc(clip)}">'
        f'<rect x="{MARGIN_L}" y="{MARGIN_T}" width="{width - MARGIN_L - MARGIN_R}" '
        f'height="{y_hi - y_lo}"/>'
        f"</clipPath></defs>{''.join(spans)}{''.join(layers)}{_x_axis(plot, xs, width, height)}"
        f'<text class="ld-ylabel" transform="translate(13 {(y_lo + y_hi) / 2:.0f}) rotate(-90)">'
        f"{_esc(plot.y_label)}</text>"
        f"{_markers_svg(plot.markers, xs, height, anchor)}</svg>"
    )
    return (f'<figure class="{classes}" data-plot="{_esc(plot.key)}"><figcaption>'
            f"<strong>{_esc(plot.title)}</strong>{toggle}{note}</figcaption>{svg}"
            f"{_legend(plot.lines)}</figure>")


# --- heatmap ---------------------------------------------------------------------------


def png_bytes(rgb: np.ndarray) -> bytes:
    """A truecolour PNG of an (h, w, 3) uint8 array (no dependency beyond zlib)."""
    h, w, _ = rgb.shape
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rgb.reshape(h, w * 3)], axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(raw.tobytes(), 9)) + chunk(b"IEND", b""))


_LOW, _MID, _HIGH, _NONE = (
    np.array([29, 78, 216]), np.array([187, 247, 208]), np.array([185, 28, 28]),
    np.array([243, 244, 246]),
)
HEATMAP_DECADES = 3.0  # this far from the centre the colour is at its strongest


def heatmap_colors(log10_values: np.ndarray, center: float) -> np.ndarray:
    """Blue below the healthy value, green at it, red above; grey where nothing was logged."""
    t = np.clip((log10_values - center) / HEATMAP_DECADES, -1.0, 1.0)
    t = np.nan_to_num(t)[..., None]
    color = np.where(t < 0, _MID + (_LOW - _MID) * -t, _MID + (_HIGH - _MID) * t)
    color = np.where(np.isnan(log10_values)[..., None], _NONE, color)
    return np.asarray(np.round(color), dtype=np.uint8)


def draw_heatmap(hm: Heatmap, anchor: str, uid: str) -> str:
    n_rows = len(hm.rows)
    row_h = max(5.0, min(20.0, 220.0 / n_rows))
    left, right = HEATMAP_LABEL_W, LAYER_W - MARGIN_R
    top = MARGIN_T
    height = top + row_h * n_rows + MARGIN_B + 34
    bottom = top + row_h * n_rows
    png = base64.b64encode(png_bytes(heatmap_colors(hm.log10_values, hm.center))).decode()
    xs = _Scale(float(hm.x_edges[0]), float(hm.x_edges[-1]), left, right, log=False)
    out = [f'<svg viewBox="0 0 {LAYER_W} {height:.0f}" role="img" '
           f'aria-label="{_esc(hm.title)}">',
           f'<image x="{left}" y="{top}" width="{right - left}" height="{bottom - top:.1f}" '
           f'preserveAspectRatio="none" class="ld-pixels" href="data:image/png;base64,{png}"/>']
    stride = max(1, math.ceil(n_rows * 11 / (bottom - top)))
    row_y = {}
    for i, name in enumerate(hm.rows):
        y0 = top + i * row_h
        row_y[name] = y0 + row_h / 2
        values = hm.log10_values[i][np.isfinite(hm.log10_values[i])]
        median = f"median {10 ** float(np.median(values)):.2e}" if values.size else "no data"
        out.append(f'<rect class="ld-row" x="{left}" y="{y0:.1f}" width="{right - left}" '
                   f'height="{row_h:.1f}"><title>{_esc(name)}: {_esc(median)}</title></rect>')
        if i % stride == 0:
            label = name if len(name) <= 22 else "…" + name[-21:]
            out.append(f'<text class="ld-rowlabel" x="{left - 6}" y="{y0 + row_h / 2 + 4:.1f}">'
                       f"<title>{_esc(name)}</title>{_esc(label)}</text>")
    for t, label in _labelled(xs.ticks()):
        out.append(f'<text class="ld-xtick" x="{xs.one(t):.1f}" y="{bottom + 14:.1f}">'
                   f"{_esc(label)}</text>")
    out.append(f'<text class="ld-xlabel" x="{(left + right) / 2:.0f}" y="{bottom + 28:.1f}">'
               f"{_esc(hm.x_label)}</text>")
    out.append(_colorbar(hm, uid, left, bottom + 40))
    out.append(_markers_svg(hm.markers, xs, height, anchor, row_y))
    out.append("</svg>")
    return (f'<figure class="ld-fig" data-plot="{_esc(hm.key)}"><figcaption><strong>'
            f"{_esc(hm.title)}</strong><span class=\"ld-note\">colour = log10(update / weight); "
            f"green = the healthy ~1e-3</span></figcaption>{''.join(out)}</figure>")


def _colorbar(hm: Heatmap, uid: str, x: float, y: float) -> str:
    w = 220.0
    lo, hi = hm.center - HEATMAP_DECADES, hm.center + HEATMAP_DECADES
    stops = "".join(
        f'<stop offset="{i / 8:.3f}" stop-color="rgb({",".join(map(str, c))})"/>'
        for i, c in enumerate(heatmap_colors(np.linspace(lo, hi, 9), hm.center))
    )
    gid = f"{uid}-grad"
    band0 = x + (hm.band[0] - lo) / (hi - lo) * w
    band1 = x + (hm.band[1] - lo) / (hi - lo) * w
    ticks = "".join(
        f'<text class="ld-xtick" x="{x + (k - lo) / (hi - lo) * w:.1f}" y="{y + 22}">'
        f"1e{k:.0f}</text>"
        for k in np.arange(math.ceil(lo), math.floor(hi) + 1)
    )
    return (f'<defs><linearGradient id="{_esc(gid)}">{stops}</linearGradient></defs>'
            f'<rect x="{x}" y="{y}" width="{w}" height="8" fill="url(#{_esc(gid)})"/>'
            f'<rect class="ld-bandbox" x="{band0:.1f}" y="{y - 2}" width="{band1 - band0:.1f}" '
            f'height="12"/>{ticks}<text class="ld-note-svg" x="{x + w + 10}" y="{y + 8}">'
            f"box: healthy {_fmt_tick(10 ** hm.band[0])} … {_fmt_tick(10 ** hm.band[1])}</text>")


# --- histograms over time --------------------------------------------------------------

HIST_W, HIST_H = SMALL_W, 200
_HIST_EMPTY, _HIST_FULL = np.array([255, 255, 255]), np.array([30, 58, 138])
HIST_KIND_WORDS = {"weight_hist": "weights", "grad_hist": "gradients", "act_hist": "activations"}


def histogram_colors(density: np.ndarray) -> np.ndarray:
    """(bins, columns, 3) pixels, highest bin on top: white where no values fell,
    dark blue at each column's densest bin (square root, so thin tails still show)."""
    peak = density.max(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.sqrt(np.where(peak > 0, density / np.where(peak > 0, peak, 1.0), 0.0))
    t = t.T[::-1][..., None]
    return np.asarray(np.round(_HIST_EMPTY + (_HIST_FULL - _HIST_EMPTY) * t), dtype=np.uint8)


def draw_histogram_panel(panel: HistogramPanel) -> str:
    """A histogram tag over time: x = step (one column per histogram), y = value bins,
    shade = the fraction of values in the bin."""
    left, right = MARGIN_L, HIST_W - MARGIN_R
    top, bottom = MARGIN_T - 12, HIST_H - MARGIN_B
    png = base64.b64encode(png_bytes(histogram_colors(panel.density))).decode()
    kind = HIST_KIND_WORDS.get(panel.kind, panel.kind)
    title = f"{panel.layer} · {kind}" if kind else panel.layer
    out = [f'<svg viewBox="0 0 {HIST_W} {HIST_H}" role="img" '
           f'aria-label="{_esc(title)} histograms over time">',
           f'<image x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" '
           f'preserveAspectRatio="none" class="ld-pixels" href="data:image/png;base64,{png}"/>',
           f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" '
           'fill="none" stroke="#d1d5db"/>']
    ys = _Scale(float(panel.edges[0]), float(panel.edges[-1]), bottom, top, log=False)
    for t, label in _labelled(ys.ticks()):
        if panel.edges[0] <= t <= panel.edges[-1]:
            out.append(f'<text class="ld-ytick" x="{left - 6}" y="{ys.one(t) + 4:.1f}">'
                       f"{_esc(label)}</text>")
    n = int(panel.steps.shape[0])
    col_w = (right - left) / max(n, 1)
    picks = sorted({0, n // 2, n - 1}) if n else []
    for i in picks:
        x = left + (i + 0.5) * col_w
        out.append(f'<text class="ld-xtick" x="{x:.1f}" y="{bottom + 14}">'
                   f"{_esc(_fmt_tick(float(panel.steps[i])))}</text>")
    out.append(f'<text class="ld-xlabel" x="{(left + right) / 2:.0f}" y="{bottom + 30}">'
               "step</text></svg>")
    return (f'<figure class="ld-fig ld-hist" data-plot="hist:{_esc(panel.tag)}"><figcaption>'
            f"<strong>{_esc(title)}</strong><span class=\"ld-note\">{n} histogram{'s' * (n != 1)}; "
            f"shade = share of values</span></figcaption>{''.join(out)}</figure>")


# --- page ------------------------------------------------------------------------------


def _severity_word(d: Diagnosis) -> str:
    return d.worst.value if d.worst is not None else "ok"


def _worst_rank(d: Diagnosis) -> int:
    return d.worst.rank if d.worst is not None else -1


def _signature_html(sig: Signature) -> str:
    return (f'<div class="ld-signature"><code>{_esc(sig.equation)}</code>'
            f"<span>{_esc(sig.meaning)}</span></div>")


def _finding_html(f: Finding, number: int, anchor: str, sig: Signature | None) -> str:
    sev = f.severity.value
    where = f.where()
    evidence = "".join(
        f"<tr><th>{_esc(k)}</th><td>{_esc(_fmt_value(v))}</td></tr>"
        for k, v in f.evidence.items()
    )
    fixes = "".join(f"<li>{_esc(fix)}</li>" for fix in f.fixes)
    return (
        f'<li class="ld-finding ld-sev-{sev}" id="{_esc(anchor)}-f{number}">'
        f'<div class="ld-fhead"><span class="ld-num">{number}</span>'
        f'<span class="ld-badge">{_esc(sev)}</span><code>{_esc(f.code)}</code>'
        + (f'<span class="ld-where">at {_esc(where)}</span>' if where else
           '<span class="ld-where">whole run</span>')
        + f'</div><p class="ld-ftitle">{_esc(f.title)}</p>'
        + (_signature_html(sig) if sig is not None else "")
        + (f'<p class="ld-why"><b>Why:</b> {_esc(f.explanation)}</p>' if f.explanation else "")
        + (f'<div class="ld-fixes"><b>What to do:</b><ol>{fixes}</ol></div>' if fixes else "")
        + (f'<details><summary>evidence</summary><table class="ld-kv">{evidence}</table>'
           "</details>" if evidence else "")
        + "</li>"
    )


def _meta_rows(d: Diagnosis) -> str:
    rows = [("source", d.run.source), ("format", d.run.format)]
    for key, series in d.run.series.items():
        if key in (TRAIN_LOSS, VAL_LOSS) or not key.startswith("layer/"):
            rows.append((f"series {key}", f"{len(series):,} points"))
    for key, value in d.run.meta.items():
        if isinstance(value, str | int | float | bool):
            rows.append((key, _fmt_value(value) if not isinstance(value, bool) else str(value)))
        elif isinstance(value, list | tuple) and all(
            isinstance(v, str | int | float) for v in value
        ):
            text = ", ".join(str(v) for v in value[:20]) + (", …" if len(value) > 20 else "")
            rows.append((key, text))
    return "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in rows)


def _run_section(d: Diagnosis, index: int, plots: RunPlots) -> str:
    anchor = f"run-{index}"
    sev = _severity_word(d)
    regime_sev = REGIME_SEVERITY.get(d.regime, "info")
    figures = []
    for i, plot in enumerate((plots.loss, plots.accuracy, plots.lr, plots.skipped)):
        if plot is not None:
            wide = plot.key == "loss"
            figures.append(draw_line_plot(plot, anchor, f"{anchor}-p{i}",
                                          WIDE_W if wide else SMALL_W,
                                          WIDE_H if wide else SMALL_H, wide=wide))
    layer_figs = []
    for i, lp in enumerate(plots.layers):
        uid = f"{anchor}-l{i}"
        layer_figs.append(draw_heatmap(lp, anchor, uid) if isinstance(lp, Heatmap)
                          else draw_line_plot(lp, anchor, uid, LAYER_W, SMALL_H))
    hist_figs = "".join(draw_histogram_panel(h) for h in plots.histograms)
    findings = "".join(
        _finding_html(f, n, anchor, plots.signatures.get(n))
        for n, f in enumerate(d.findings, 1)
    )
    notes = "".join(f'<p class="ld-warning">note: {_esc(w)}</p>' for w in d.run.warnings)
    return (
        f'<section class="ld-run" id="{anchor}" data-severity="{sev}">'
        f'<header class="ld-runhead"><h2>{_esc(d.run.name)}</h2>'
        f'<span class="ld-regime ld-sev-{regime_sev}">regime: {_esc(d.regime)}</span>'
        f'<span class="ld-sub">{_esc(d.run.format)} · {_esc(d.run.source)}</span>'
        f'<a class="ld-top" href="#ld-top">↑ all runs</a></header>{notes}'
        f'<div class="ld-body"><div class="ld-plots">{"".join(figures)}</div>'
        f'<div class="ld-side"><h3>Findings ({len(d.findings)})</h3>'
        + (f'<ol class="ld-findings">{findings}</ol>' if findings
           else '<p class="ld-ok">No problems found.</p>')
        + "</div></div>"
        + (f'<h3>Layers</h3><div class="ld-plots ld-layers">{"".join(layer_figs)}</div>'
           if layer_figs else "")
        + (f'<h3>Histograms over time</h3><div class="ld-plots ld-layers ld-hists">'
           f"{hist_figs}</div>" if hist_figs else "")
        + f'<details class="ld-metabox"><summary>Run details</summary>'
        f'<table class="ld-kv">{_meta_rows(d)}</table></details></section>'
    )


def _runs_table(ordered: Sequence[tuple[int, Diagnosis]]) -> str:
    rows = []
    for index, d in ordered:
        worst = d.findings[0] if d.findings else None
        sev = _severity_word(d)
        worst_cell = (f'<span class="ld-badge ld-sev-{sev}">{_esc(sev)}</span> '
                      f"<code>{_esc(worst.code)}</code>" if worst else "—")
        rows.append(
            f'<tr data-severity="{sev}"><td data-v="{index}">{index}</td>'
            f'<td data-v="{_esc(d.run.name)}"><a href="#run-{index}">{_esc(d.run.name)}</a></td>'
            f'<td data-v="{_esc(d.regime)}">{_esc(d.regime)}</td>'
            f'<td data-v="{_worst_rank(d)}">{worst_cell}</td>'
            f'<td data-v="{len(d.findings)}">{len(d.findings)}</td>'
            f'<td data-v="{_esc(d.run.format)}">{_esc(d.run.format)}</td></tr>'
        )
    head = "".join(
        f'<th data-sort="{kind}" scope="col"><button type="button">{label}</button></th>'
        for label, kind in (("#", "num"), ("run", "text"), ("regime", "text"),
                            ("worst finding", "num"), ("findings", "num"), ("format", "text"))
    )
    return (
        '<div class="ld-tablebar"><input type="search" class="ld-filter" '
        'placeholder="filter runs (name, regime, finding)" aria-label="filter runs">'
        '<select class="ld-sevfilter" aria-label="severity"><option value="">any severity'
        '</option><option value="critical">critical</option><option value="warning">warning'
        '</option><option value="info">info</option><option value="ok">ok</option></select>'
        '<span class="ld-count"></span></div>'
        f'<table class="ld-runs"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody>'
        "</table>"
    )


def _summary(diagnoses: Sequence[Diagnosis]) -> str:
    crit = sum(1 for d in diagnoses if d.worst is Severity.CRITICAL)
    warn = sum(1 for d in diagnoses if d.worst is Severity.WARNING)
    ok = len(diagnoses) - crit - warn
    plural = "s" if len(diagnoses) != 1 else ""
    return f"{len(diagnoses)} run{plural}: {crit} critical, {warn} warning, {ok} ok"


CSS = """
.ld-report{--fg:#111827;--mut:#6b7280;--bd:#e5e7eb;--bg:#fff;--soft:#f9fafb;color:var(--fg);
 font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1400px;
 margin:0 auto;padding:16px 20px}
.ld-report h1{font-size:22px;margin:0 0 2px}.ld-report h2{font-size:18px;margin:0;
 overflow-wrap:anywhere}.ld-report h3{font-size:15px;margin:14px 0 6px}
.ld-report code{font:12.5px ui-monospace,SFMono-Regular,Menlo,monospace}
.ld-lead{color:var(--mut);margin:0 0 12px}
.ld-run{border:1px solid var(--bd);border-radius:10px;padding:14px 16px;margin:16px 0;
 background:var(--bg);content-visibility:auto;contain-intrinsic-size:auto 900px}
.ld-runhead{display:flex;flex-wrap:wrap;align-items:baseline;gap:6px 12px;margin-bottom:8px}
.ld-sub{color:var(--mut);font-size:12px;overflow-wrap:anywhere}.ld-top{margin-left:auto;
 font-size:12px}
.ld-regime{font-weight:600;border-radius:999px;padding:1px 10px;font-size:13px}
.ld-regime.ld-sev-ok{background:#dcfce7;color:#166534}.ld-regime.ld-sev-info{
 background:#e0f2fe;color:#075985}.ld-regime.ld-sev-warning{background:#fef3c7;color:#92400e}
.ld-regime.ld-sev-critical{background:#fee2e2;color:#991b1b}
.ld-body{display:grid;grid-template-columns:minmax(0,1fr) minmax(300px,420px);gap:14px}
@media (max-width:1000px){.ld-body{grid-template-columns:1fr}}
.ld-plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:10px;
 align-content:start}
.ld-layers{grid-template-columns:repeat(auto-fill,minmax(440px,1fr))}
.ld-fig{margin:0;border:1px solid var(--bd);border-radius:8px;padding:6px 8px;
 background:var(--bg);min-width:0}
.ld-fig.ld-wide{grid-column:1/-1}
.ld-fig figcaption{display:flex;gap:8px;align-items:center;font-size:13px}
.ld-fig svg{width:100%;height:auto;display:block;overflow:visible}
.ld-fig .ld-log{display:none}.ld-fig.ld-show-log .ld-log{display:inline}
.ld-fig.ld-show-log .ld-lin{display:none}
.ld-scale{font:12px system-ui,sans-serif;border:1px solid var(--bd);background:var(--soft);
 border-radius:6px;padding:1px 8px;cursor:pointer}
.ld-note{color:var(--mut);font-size:12px;margin-left:auto}
.ld-legend{display:flex;flex-wrap:wrap;gap:4px 14px;font-size:12px;color:#374151}
.ld-legend span{display:inline-flex;align-items:center;gap:4px;white-space:nowrap}
.ld-line{fill:none;stroke-width:1.6;stroke-linejoin:round}
.ld-dots{fill:none;stroke-width:5;stroke-linecap:round}
.ld-grid{stroke:#eef0f3}.ld-axis{stroke:#9ca3af}
.ld-ytick,.ld-xtick,.ld-xlabel,.ld-ylabel,.ld-note-svg,.ld-rowlabel{font-size:11px;
 fill:#4b5563}
.ld-ytick,.ld-rowlabel{text-anchor:end}.ld-xtick,.ld-xlabel,.ld-ylabel{text-anchor:middle}
.ld-hline{stroke:#be123c;stroke-dasharray:2 3;stroke-width:1.2}
.ld-hlabel{font-size:11px;fill:#be123c;text-anchor:end;font-weight:600}
.ld-hlabel,.ld-spanlabel,.ld-empty{paint-order:stroke;stroke:#fff;stroke-width:3px;
 stroke-linejoin:round}
.ld-span-nonfinite{fill:#fecaca;fill-opacity:.55}.ld-span-regime{fill:#fde68a;
 fill-opacity:.28}
.ld-spanlabel{font-size:10.5px;fill:#7f1d1d}
.ld-band{fill:#bbf7d0;fill-opacity:.45}
.ld-empty{font-size:12px;fill:var(--mut);text-anchor:middle}
.ld-marker text{font-size:10px;font-weight:700;fill:#fff;text-anchor:middle;
 pointer-events:none}
.ld-mline{stroke-dasharray:4 3;stroke-width:1.3}
.ld-pixels{image-rendering:pixelated}.ld-row{fill:transparent}
.ld-row:hover{fill:#0000000f}.ld-bandbox{fill:none;stroke:#111827;stroke-width:1.2}
.ld-findings{list-style:none;margin:0;padding:0;display:grid;gap:8px}
.ld-finding{border:1px solid var(--bd);border-left:4px solid var(--mut);border-radius:8px;
 padding:8px 10px;background:var(--soft)}
.ld-finding:target{outline:2px solid #2563eb}
.ld-finding.ld-sev-critical{border-left-color:#dc2626}.ld-finding.ld-sev-warning{
 border-left-color:#d97706}.ld-finding.ld-sev-info{border-left-color:#0891b2}
.ld-fhead{display:flex;flex-wrap:wrap;gap:6px;align-items:center}
.ld-num{display:inline-grid;place-items:center;width:18px;height:18px;border-radius:50%;
 color:#fff;background:var(--mut);font-size:11px;font-weight:700}
.ld-sev-critical .ld-num{background:#dc2626}.ld-sev-warning .ld-num{background:#d97706}
.ld-sev-info .ld-num{background:#0891b2}
.ld-badge{font-size:11px;text-transform:uppercase;letter-spacing:.03em;font-weight:700;
 color:var(--mut)}
.ld-sev-critical .ld-badge,.ld-badge.ld-sev-critical{color:#b91c1c}
.ld-sev-warning .ld-badge,.ld-badge.ld-sev-warning{color:#b45309}
.ld-sev-info .ld-badge,.ld-badge.ld-sev-info{color:#0e7490}
.ld-badge.ld-sev-ok{color:#15803d}
.ld-where{color:var(--mut);font-size:12px;margin-left:auto}
.ld-ftitle{margin:4px 0;font-weight:600;overflow-wrap:anywhere}
.ld-why{margin:4px 0;color:#374151;font-size:13px}.ld-fixes{font-size:13px}
.ld-fixes ol{margin:2px 0 2px 0;padding-left:20px}
.ld-signature{border:1px dashed #be123c;background:#fff1f2;border-radius:6px;
 padding:6px 8px;margin:6px 0;display:grid;gap:2px}
.ld-signature code{font-size:13px;font-weight:700;color:#9f1239;white-space:nowrap;
 overflow-x:auto}
.ld-signature span{font-size:12px;color:#4b5563}
.ld-kv{border-collapse:collapse;font-size:12px;margin-top:4px}
.ld-kv th{text-align:left;font-weight:500;color:var(--mut);padding:1px 10px 1px 0;
 vertical-align:top;overflow-wrap:anywhere}.ld-kv td{overflow-wrap:anywhere}
.ld-ok{color:#15803d;font-weight:600}.ld-warning{color:#92400e;margin:2px 0;font-size:13px}
.ld-metabox{margin-top:10px;font-size:13px}
.ld-tablebar{display:flex;gap:8px;align-items:center;margin:8px 0}
.ld-filter{flex:0 1 340px;padding:4px 8px;border:1px solid var(--bd);border-radius:6px}
.ld-count{color:var(--mut);font-size:12px}
.ld-runs{border-collapse:collapse;width:100%;font-size:13px}
.ld-runs th,.ld-runs td{border-bottom:1px solid var(--bd);padding:4px 8px;text-align:left;
 overflow-wrap:anywhere}
.ld-runs th button{font:600 13px system-ui,sans-serif;border:0;background:none;
 cursor:pointer;padding:0}
.ld-runs th[aria-sort=ascending] button::after{content:" ▲"}
.ld-runs th[aria-sort=descending] button::after{content:" ▼"}
.ld-errors{border:1px solid #fecaca;background:#fef2f2;border-radius:8px;padding:8px 12px}
"""

# Small on purpose: scale toggles, sorting and filtering. Attached once per report root
# so two reports in one notebook do not toggle each other.
SCRIPT = """(function(){
var roots=document.querySelectorAll('.ld-report:not([data-ld-ready])');
roots.forEach(function(root){root.setAttribute('data-ld-ready','1');
var table=root.querySelector('.ld-runs');var filter=root.querySelector('.ld-filter');
var sev=root.querySelector('.ld-sevfilter');var count=root.querySelector('.ld-count');
function refilter(){if(!table)return;var q=(filter.value||'').toLowerCase();var s=sev.value;
var rows=table.tBodies[0].rows,shown=0;for(var i=0;i<rows.length;i++){var r=rows[i];
var ok=(!q||r.textContent.toLowerCase().indexOf(q)>=0)&&(!s||r.dataset.severity===s);
r.hidden=!ok;if(ok)shown++;}count.textContent=shown+' of '+rows.length+' runs';}
if(table){filter.addEventListener('input',refilter);sev.addEventListener('change',refilter);
refilter();}
root.addEventListener('click',function(e){var b=e.target.closest('.ld-scale');
if(b){var f=b.closest('.ld-fig');var log=f.classList.toggle('ld-show-log');
b.textContent=log?'linear y':'log y';b.setAttribute('aria-pressed',String(log));return;}
var th=e.target.closest('th[data-sort]');if(!th||!table)return;
var col=Array.prototype.indexOf.call(th.parentNode.children,th);
var asc=th.getAttribute('aria-sort')!=='ascending';
th.parentNode.querySelectorAll('th').forEach(function(h){h.removeAttribute('aria-sort');});
th.setAttribute('aria-sort',asc?'ascending':'descending');var num=th.dataset.sort==='num';
var body=table.tBodies[0];var rows=Array.prototype.slice.call(body.rows);
rows.sort(function(a,b){var x=a.cells[col].dataset.v,y=b.cells[col].dataset.v;
var c=num?(parseFloat(x)-parseFloat(y)):x.localeCompare(y);return asc?c:-c;});
rows.forEach(function(r){body.appendChild(r);});});});
})();"""


def _body(diagnoses: Sequence[Diagnosis], errors: Sequence[InputError], title: str) -> str:
    ordered = sorted(enumerate(diagnoses, 1), key=lambda p: -_worst_rank(p[1]))
    parts = [
        f'<div class="ld-report" id="ld-top"><header><h1>{_esc(title)}</h1>'
        f'<p class="ld-lead">{_esc(_summary(diagnoses))} · lossdoctor {_esc(__version__)}'
        "</p></header>"
    ]
    if errors:
        items = "".join(f"<li><code>{_esc(e.path)}</code>: {_esc(e.problem)}</li>"
                        for e in errors)
        parts.append(f'<section class="ld-errors"><h3>Inputs that could not be read</h3>'
                     f"<ul>{items}</ul></section>")
    if len(diagnoses) > 1:
        parts.append(_runs_table(ordered))
    for index, d in ordered:
        parts.append(_run_section(d, index, run_plots(d, DISPLAY_BUCKETS)))
    parts.append("</div>")
    return "".join(parts)


def _script_hash() -> str:
    digest = hashlib.sha256(SCRIPT.encode("utf-8")).digest()
    return "sha256-" + base64.b64encode(digest).decode("ascii")


def render_html(
    diagnoses: Sequence[Diagnosis],
    errors: Sequence[InputError] = (),
    *,
    title: str = "lossdoctor report",
) -> str:
    """The whole report as one HTML document (no external resources)."""
    from lossdoctor.report.json import to_json_dict

    csp = (f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
           f"script-src '{_script_hash()}'")
    data = _json_for_script(to_json_dict(diagnoses, errors))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_esc(title)}</title><style>body{{margin:0;background:#f3f4f6}}{CSS}</style>"
        f"</head><body>{_body(diagnoses, errors, title)}"
        # The same JSON as `diagnose --format json`, for tools that read the report.
        f'<script type="application/json" id="lossdoctor-data">{data}</script>'
        f"<script>{SCRIPT}</script></body></html>\n"
    )


def render_fragment(diagnoses: Sequence[Diagnosis], errors: Sequence[InputError] = (),
                    *, title: str = "lossdoctor report") -> str:
    """The report as a fragment for embedding (Jupyter): scoped CSS, no <html>."""
    return f"<style>{CSS}</style>{_body(diagnoses, errors, title)}<script>{SCRIPT}</script>"


def _findings_body(heading: str, lead: str, findings: Sequence[Finding],
                   notes: Sequence[str], passed: Sequence[str]) -> str:
    """A page of findings without curves: pre-flight check results."""
    items = "".join(_finding_html(f, i, "ld-pre", None) for i, f in enumerate(findings, 1))
    parts = [
        f'<div class="ld-report" id="ld-top"><header><h1>{_esc(heading)}</h1>'
        f'<p class="ld-lead">{_esc(lead)} · lossdoctor {_esc(__version__)}</p></header>',
        '<section class="ld-run">',
        f'<h3>Findings ({len(findings)})</h3><ol class="ld-findings">{items}</ol>'
        if findings else '<p class="ld-ok">No problems found.</p>',
    ]
    if passed:
        parts.append("<h3>Passed</h3><p>" + ", ".join(f"<code>{_esc(c)}</code>"
                                                      for c in passed) + "</p>")
    if notes:
        parts.append("<h3>Notes</h3><ul>" + "".join(f"<li>{_esc(n)}</li>" for n in notes)
                     + "</ul>")
    parts.append("</section></div>")
    return "".join(parts)


def render_findings_html(heading: str, lead: str, findings: Sequence[Finding], *,
                         notes: Sequence[str] = (), passed: Sequence[str] = (),
                         fragment: bool = False) -> str:
    """Findings that have no run to plot (pre-flight checks), as a page or a fragment."""
    body = _findings_body(heading, lead, findings, notes, passed)
    if fragment:
        return f"<style>{CSS}</style>{body}"
    csp = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_esc(heading)}</title><style>body{{margin:0;background:#f3f4f6}}{CSS}"
        f"</style></head><body>{body}</body></html>\n"
    )


def write_text_safely(text: str, path: str | os.PathLike[str], *, force: bool) -> Path:
    """Write `text` to `path`, never replacing an existing file unless `force`."""
    target = Path(path)
    if not force and target.exists():
        raise FileExistsError(f"{target}: already exists (use --force to overwrite it)")
    if force:
        tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
    else:
        with target.open("x", encoding="utf-8") as fh:  # "x": never clobber a racing file
            fh.write(text)
    return target


def write_html_report(
    diagnoses: Sequence[Diagnosis],
    errors: Sequence[InputError],
    path: str | os.PathLike[str],
    *,
    force: bool = False,
    title: str = "lossdoctor report",
) -> Path:
    """Write the report to `path`. An existing file is kept unless `force`: raises
    FileExistsError (its message is one line naming the file)."""
    text = render_html(diagnoses, errors, title=title)  # before touching the file
    return write_text_safely(text, path, force=force)


class Report:
    """Diagnoses as an HTML report: shows itself in Jupyter and saves to a file."""

    def __init__(self, diagnoses: Diagnosis | Sequence[Diagnosis],
                 errors: Sequence[InputError] = (), *, title: str = "lossdoctor report"):
        self.diagnoses = [diagnoses] if isinstance(diagnoses, Diagnosis) else list(diagnoses)
        self.errors = list(errors)
        self.title = title

    @classmethod
    def from_paths(cls, *paths: str | os.PathLike[str]) -> Report:
        """Read and diagnose every run under the paths (as `lossdoctor report` does)."""
        from lossdoctor.diagnosis import diagnose
        from lossdoctor.sources import load

        diagnoses, errors = [], []
        for path in paths:
            for item in load(Path(path)):
                if item.run is not None:
                    diagnoses.append(diagnose(item.run))
                elif item.error is not None:
                    errors.append(item.error)
        return cls(diagnoses, errors)

    def to_html(self) -> str:
        return render_html(self.diagnoses, self.errors, title=self.title)

    def _repr_html_(self) -> str:
        return render_fragment(self.diagnoses, self.errors, title=self.title)

    def save(self, path: str | os.PathLike[str], *, force: bool = False) -> Path:
        return write_html_report(self.diagnoses, self.errors, path, force=force,
                                 title=self.title)
