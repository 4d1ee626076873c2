"""The terminal report: worst first, what / where / why / what to do, 80 columns,
colour that also reads without colour."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

from lossdoctor.diagnosis import Diagnosis
from lossdoctor.errors import InputError
from lossdoctor.findings import Finding, Severity

WIDTH = 80
DETAIL_LIMIT = 5  # above this many runs, a table; details on request


@dataclass(frozen=True)
class Style:
    color: bool

    def _wrap(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text

    def bold(self, text: str) -> str:
        return self._wrap("1", text)

    def dim(self, text: str) -> str:
        return self._wrap("2", text)

    def severity(self, severity: Severity | None, text: str) -> str:
        code = {Severity.CRITICAL: "1;31", Severity.WARNING: "33", Severity.INFO: "36"}.get(
            severity,  # type: ignore[arg-type]
            "32",
        )
        return self._wrap(code, text)


# The label carries the severity without colour too.
LABEL = {Severity.CRITICAL: "CRITICAL", Severity.WARNING: "warning", Severity.INFO: "info"}
REGIME_WORDS = {
    "still-learning": "still learning (keep training)",
    "converged": "converged",
    "overfitting": "OVERFITTING",
    "data-problem": "DATA PROBLEM",
    "plateau": "PLATEAU",
    "diverging": "DIVERGING",
    "unknown": "unknown (too little data)",
}


def _fmt_value(value: float | int | str) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _wrap(text: str, indent: str, first: str | None = None) -> list[str]:
    return textwrap.wrap(
        text,
        width=WIDTH,
        initial_indent=first if first is not None else indent,
        subsequent_indent=indent,
        break_on_hyphens=False,
    ) or [first or indent]


def _points(d: Diagnosis) -> str:
    from lossdoctor.run import TRAIN_LOSS, VAL_LOSS

    parts = []
    for key, label in ((TRAIN_LOSS, "train"), (VAL_LOSS, "val")):
        series = d.run.get(key)
        if series is not None:
            parts.append(f"{label} {len(series)} pts")
    return ", ".join(parts)


def render_finding(f: Finding, style: Style) -> list[str]:
    label = style.severity(f.severity, f"[{LABEL[f.severity]}]")
    where = f.where()
    head = f"  {label} {style.bold(f.code)}"
    lines = [head + (style.dim(f"  at {where}") if where else "")]
    lines += _wrap(f.title, "      ")
    if f.evidence:
        ev = ", ".join(f"{k}={_fmt_value(v)}" for k, v in f.evidence.items())
        lines += [style.dim(line) for line in _wrap(ev, "        ", "      evidence: ")]
    if f.explanation:
        lines += _wrap(f.explanation, "        ", "      why: ")
    if f.fixes:
        lines.append("      what to do:")
    for i, fix in enumerate(f.fixes, 1):
        lines += _wrap(fix, "           ", f"        {i}. ")
    return lines


def _fit(text: str, width: int) -> str:
    """Shorten from the left: the end of a run name is what tells runs apart."""
    return text if len(text) <= width else "..." + text[-(width - 3) :]


def render_run(d: Diagnosis, style: Style) -> list[str]:
    regime = REGIME_WORDS.get(d.regime, d.regime)
    info = f"  ({d.run.format}; {_points(d)})"
    name = _fit(d.run.name, WIDTH)
    if len(name) + len(info) > WIDTH:
        header = [style.bold(name), style.dim("  " + info.strip())]
    else:
        header = [style.bold(name) + style.dim(info)]
    lines = [
        *header,
        "  regime: " + style.severity(d.worst if d.findings else None, regime),
    ]
    for warning in d.run.warnings:
        lines += _wrap(warning, "      ", "  note: ")
    if not d.findings:
        lines.append("  " + style.severity(None, "no problems found"))
    for f in d.findings:
        lines += render_finding(f, style)
    return lines


def _worst_rank(d: Diagnosis) -> int:
    return d.worst.rank if d.worst is not None else -1


def render_table(diagnoses: Sequence[Diagnosis], style: Style) -> list[str]:
    rows = sorted(diagnoses, key=lambda d: -_worst_rank(d))
    name_w = min(36, max(4, *(len(d.run.name) for d in rows)))
    lines = [style.bold(f"{'run':<{name_w}}  {'regime':<14}  worst finding")]
    for d in rows:
        name = _fit(d.run.name, name_w)
        worst = d.findings[0] if d.findings else None
        cell = f"[{LABEL[worst.severity]}] {worst.code}" if worst else "-"
        more = f" +{len(d.findings) - 1}" if len(d.findings) > 1 else ""
        text = f"{name:<{name_w}}  {d.regime:<14}  {cell}{more}"
        lines.append(style.severity(worst.severity if worst else None, text[:WIDTH]))
    return lines


def render_text(
    diagnoses: Sequence[Diagnosis],
    errors: Sequence[InputError] = (),
    *,
    color: bool = False,
    details: bool | None = None,
) -> str:
    style = Style(color)
    runs = sorted(diagnoses, key=lambda d: -_worst_rank(d))
    lines: list[str] = []
    show_details = details if details is not None else len(runs) <= DETAIL_LIMIT
    if len(runs) > 1:
        lines += render_table(runs, style)
        lines.append("")
    if show_details:
        for d in runs:
            lines += render_run(d, style)
            lines.append("")
    elif runs:
        lines.append(style.dim("(--details shows what, why and what to do for each run)"))
    for e in errors:
        lines.append(style.severity(Severity.CRITICAL, f"error: {e.path}: {e.problem}"))
    counts = _summary(runs)
    if counts:
        lines.append(style.bold(counts))
    return "\n".join(lines).rstrip() + "\n"


def _summary(runs: Sequence[Diagnosis]) -> str:
    if not runs:
        return ""
    crit = sum(1 for d in runs if d.worst is Severity.CRITICAL)
    warn = sum(1 for d in runs if d.worst is Severity.WARNING)
    ok = len(runs) - crit - warn
    plural = "s" if len(runs) != 1 else ""
    return f"{len(runs)} run{plural}: {crit} critical, {warn} warning, {ok} ok"
