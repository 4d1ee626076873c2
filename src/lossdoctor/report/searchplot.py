"""The search as HTML: each hyperparameter against the objective (log scale for log
ranges, the range edges marked), the findings, and an ensemble against its members.

Data step (`parameter_plots`, `ensemble_bars`) and drawing step (`render_search_html`)
are separate, like the run report; the data step is tested directly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lossdoctor import __version__
from lossdoctor.report.html import CSS, _esc, _finding_html

if TYPE_CHECKING:
    from lossdoctor.search import SearchResult
    from lossdoctor.search.ensemble import EnsembleReport

W, H, PAD_L, PAD_B, PAD_T, PAD_R = 420.0, 240.0, 56.0, 34.0, 14.0, 14.0


@dataclass(frozen=True)
class TrialPoint:
    value: float  # the hyperparameter
    objective: float  # the metric searched (last reported value)
    state: str  # "complete" | "pruned" | ...
    number: int
    reason: str | None = None


@dataclass(frozen=True)
class ParameterPlot:
    name: str
    log: bool
    low: float  # the range searched
    high: float
    points: list[TrialPoint]
    best: TrialPoint | None
    edge: str | None = None  # "lower" | "upper" when the best sits there
    widened: str | None = None


@dataclass(frozen=True)
class Bar:
    label: str
    accuracy: float
    kind: str  # "member" | "vote" | "mean"


def _numeric_range(dim: Any) -> tuple[float, float, bool] | None:
    from lossdoctor.search.space import Int, LogUniform, Uniform

    if isinstance(dim, LogUniform):
        return dim.low, dim.high, True
    if isinstance(dim, Int):
        return float(dim.low), float(dim.high), bool(dim.log)
    if isinstance(dim, Uniform):
        return dim.low, dim.high, False
    return None


def parameter_plots(result: SearchResult) -> list[ParameterPlot]:
    """One scatter per numeric hyperparameter: every trial that reported the
    objective, completed or pruned (a pruned trial at its last reported value)."""
    best = result.best
    edges = {e.name: e for e in result.edges}
    plots = []
    for name, dim in result.space.items():
        rng = _numeric_range(dim)
        if rng is None:
            continue
        low, high, log = rng
        points = []
        for t in result.trials:
            value = t.params.get(name)
            objective = t.value if t.value is not None else t.metrics.get(result.objective)
            if value is None or objective is None or not math.isfinite(float(objective)):
                continue
            if log and float(value) <= 0:
                continue
            points.append(TrialPoint(float(value), float(objective), t.state, t.number,
                                     t.reason))
        best_point = next((p for p in points if best is not None and p.number == best.number),
                          None)
        edge = edges.get(name)
        plots.append(ParameterPlot(
            name, log, low, high, points, best_point,
            edge.edge if edge is not None else None,
            edge.widened.describe() if edge is not None else None,
        ))
    return plots


def ensemble_bars(report: EnsembleReport) -> list[Bar]:
    bars = [Bar(name, acc, "member") for name, acc in report.members.items()]
    bars.append(Bar("majority vote", report.vote_accuracy, "vote"))
    if report.mean_accuracy is not None:
        bars.append(Bar("mean probability", report.mean_accuracy, "mean"))
    return bars


# --- drawing ------------------------------------------------------------------------

def _to_x(value: float, plot: ParameterPlot, lo: float, hi: float) -> float:
    if plot.log:
        value, lo, hi = math.log10(value), math.log10(lo), math.log10(hi)
    frac = (value - lo) / (hi - lo) if hi > lo else 0.5
    return PAD_L + frac * (W - PAD_L - PAD_R)


def _ticks(lo: float, hi: float, log: bool) -> list[float]:
    if log:
        first, last = math.ceil(math.log10(lo)), math.floor(math.log10(hi))
        step = max(1, (last - first) // 6 + 1)
        return [10.0**k for k in range(first, last + 1, step)]
    return [lo + (hi - lo) * k / 4 for k in range(5)]


def _tick_label(v: float, log: bool) -> str:
    return f"1e{round(math.log10(v))}" if log else f"{v:.3g}"


def draw_parameter_plot(plot: ParameterPlot, objective: str) -> str:
    xs = [p.value for p in plot.points]
    # The axis shows the range searched plus a margin, so points sit inside edges.
    lo = min([plot.low, *xs])
    hi = max([plot.high, *xs])
    if plot.log:
        span = math.log10(hi) - math.log10(lo)
        lo, hi = lo / 10 ** (0.06 * span), hi * 10 ** (0.06 * span)
    else:
        span = hi - lo
        lo, hi = lo - 0.06 * span, hi + 0.06 * span
    ys = [p.objective for p in plot.points] or [0.0, 1.0]
    y_lo, y_hi = min(ys), max(ys)
    if y_hi <= y_lo:
        y_lo, y_hi = y_lo - 0.5, y_hi + 0.5
    y_pad = 0.06 * (y_hi - y_lo)
    y_lo, y_hi = y_lo - y_pad, y_hi + y_pad

    def to_y(v: float) -> float:
        return PAD_T + (1 - (v - y_lo) / (y_hi - y_lo)) * (H - PAD_T - PAD_B)

    parts = [f'<svg class="ld-search-svg" viewBox="0 0 {W:.0f} {H:.0f}" width="{W:.0f}" '
             f'height="{H:.0f}" role="img" aria-label="{_esc(plot.name)} against '
             f'{_esc(objective)}">']
    x0, x1 = _to_x(plot.low, plot, lo, hi), _to_x(plot.high, plot, lo, hi)
    parts.append(f'<rect x="{x0:.1f}" y="{PAD_T}" width="{x1 - x0:.1f}" '
                 f'height="{H - PAD_T - PAD_B:.1f}" fill="#f0f9ff"/>')
    for x, side in ((x0, "lower"), (x1, "upper")):
        hot = plot.edge == side
        parts.append(
            f'<line class="ld-edge{" ld-edge-hit" if hot else ""}" x1="{x:.1f}" '
            f'x2="{x:.1f}" y1="{PAD_T}" y2="{H - PAD_B}" stroke="'
            f'{"#dc2626" if hot else "#0284c7"}" stroke-dasharray="4 3" '
            f'stroke-width="{2 if hot else 1}"><title>{side} edge of the range'
            f'{" (the best value sits here)" if hot else ""}</title></line>')
    for t in _ticks(lo, hi, plot.log):
        x = _to_x(t, plot, lo, hi)
        parts.append(f'<text x="{x:.1f}" y="{H - PAD_B + 14}" text-anchor="middle" '
                     f'font-size="10" fill="#6b7280">{_esc(_tick_label(t, plot.log))}</text>')
    # Enough decimals that five ticks over a narrow span stay distinct.
    decimals = max(0, 1 - math.floor(math.log10((y_hi - y_lo) / 4)))
    for k in range(5):
        v = y_lo + (y_hi - y_lo) * k / 4
        parts.append(f'<text x="{PAD_L - 6}" y="{to_y(v) + 3:.1f}" text-anchor="end" '
                     f'font-size="10" fill="#6b7280">{v:.{decimals}f}</text>')
    parts.append(f'<text x="{(PAD_L + W - PAD_R) / 2:.0f}" y="{H - 4}" text-anchor="middle" '
                 f'font-size="11">{_esc(plot.name)}{" (log scale)" if plot.log else ""}</text>')
    for p in plot.points:
        x, y = _to_x(p.value, plot, lo, hi), to_y(p.objective)
        best = plot.best is not None and p.number == plot.best.number
        fill = "#16a34a" if best else ("none" if p.state == "pruned" else "#2563eb")
        stroke = "#16a34a" if best else "#2563eb"
        label = (f"trial {p.number}: {plot.name}={p.value:.4g}, {objective}="
                 f"{p.objective:.4g}, {p.state}" + (f" ({p.reason})" if p.reason else ""))
        parts.append(f'<circle class="ld-trial" cx="{x:.1f}" cy="{y:.1f}" '
                     f'r="{5 if best else 3.5}" fill="{fill}" stroke="{stroke}">'
                     f"<title>{_esc(label)}</title></circle>")
    parts.append("</svg>")
    caption = (f"best at {plot.best.value:.4g}" if plot.best is not None else "no completed trial")
    if plot.edge is not None:
        caption += f" — on the {plot.edge} edge: search {plot.widened} next"
    return (f'<figure class="ld-fig"><figcaption><b>{_esc(plot.name)}</b> · '
            f"{_esc(caption)}</figcaption>{''.join(parts)}</figure>")


def draw_ensemble(bars: Sequence[Bar]) -> str:
    rows = []
    for bar in bars:
        width = max(0.0, min(1.0, bar.accuracy)) * 300
        color = {"member": "#93c5fd", "vote": "#16a34a", "mean": "#0d9488"}[bar.kind]
        rows.append(
            f'<tr class="ld-ens-{bar.kind}"><th>{_esc(bar.label)}</th><td>'
            f'<svg width="310" height="14"><rect width="{width:.1f}" height="12" '
            f'fill="{color}"/></svg></td><td>{bar.accuracy:.2%}</td></tr>')
    return ('<h3>Ensemble against its members (validation accuracy)</h3>'
            f'<table class="ld-kv ld-ensemble">{"".join(rows)}</table>')


def render_search_html(result: SearchResult, ensemble: EnsembleReport | None = None, *,
                       fragment: bool = False) -> str:
    counts = result.counts()
    lead = (f"study {result.study_name}: {len(result.trials)} trials "
            f"({', '.join(f'{n} {s}' for s, n in sorted(counts.items()))}), "
            f"{result.epochs_trained} epochs trained, objective {result.objective} "
            f"({result.direction})")
    parts = [f'<div class="ld-report" id="ld-top"><header><h1>hyperparameter search'
                  f'</h1><p class="ld-lead">{_esc(lead)} · lossdoctor {_esc(__version__)}'
                  "</p></header><section class=\"ld-run\">"]
    best = result.best
    if best is not None:
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in best.params.items())
        parts.append(f"<p><b>Best:</b> trial {best.number}, {_esc(result.objective)} = "
                          f"{best.value:.4g} ({_esc(params)})</p>")
    if result.findings:
        items = "".join(_finding_html(f, i, "ld-search", None)
                        for i, f in enumerate(result.findings, 1))
        parts.append(f'<h3>Findings</h3><ol class="ld-findings">{items}</ol>')
    figures = "".join(draw_parameter_plot(p, result.objective) for p in parameter_plots(result))
    parts.append(f'<h3>Each hyperparameter against {_esc(result.objective)}</h3>'
                      f'<div class="ld-plots">{figures}</div>'
                      '<p class="ld-lead">Filled: completed; hollow: pruned (at its last '
                      "reported value); green: the best; dashed lines: the range searched.</p>")
    reasons = result.prune_reasons()
    if reasons:
        parts.append("<h3>Pruned</h3><ul>" + "".join(
            f"<li>{_esc(r)}: {n}</li>" for r, n in sorted(reasons.items())) + "</ul>")
    if ensemble is not None:
        parts.append(draw_ensemble(ensemble_bars(ensemble)))
    parts.append("</section></div>")
    body = "".join(parts)
    if fragment:
        return f"<style>{CSS}</style>{body}"
    csp = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
            "<title>lossdoctor search</title><style>body{margin:0;background:#f3f4f6}"
            f"{CSS}</style></head><body>{body}</body></html>\n")
