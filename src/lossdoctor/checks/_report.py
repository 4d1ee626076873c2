"""The result of `lossdoctor.check`: findings plus what passed, skipped and why."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lossdoctor.findings import Finding, Severity, worst_first


@dataclass
class CheckReport:
    framework: str
    model: str
    samples: int
    findings: list[Finding] = field(default_factory=list)
    passed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def worst(self) -> Severity | None:
        problems = [f.severity for f in self.findings if f.code != "check-skipped"]
        return max(problems, key=lambda s: s.rank, default=None)

    def codes(self) -> list[str]:
        return [f.code for f in self.findings]

    def by_code(self, code: str) -> list[Finding]:
        return [f for f in self.findings if f.code == code]

    def sort(self) -> None:
        self.findings = worst_first(self.findings)

    def to_dict(self) -> dict[str, Any]:
        from lossdoctor import __version__

        return {
            "lossdoctor": __version__,
            "check": {
                "framework": self.framework,
                "model": self.model,
                "samples": self.samples,
                "findings": [f.to_dict() for f in self.findings],
                "passed": list(self.passed),
                "notes": list(self.notes),
                "seconds": {k: round(v, 4) for k, v in self.seconds.items()},
            },
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def to_html(self, *, fragment: bool = False) -> str:
        from lossdoctor.report.html import render_findings_html

        problems = [f for f in self.findings if f.code != "check-skipped"]
        skipped = [
            f"skipped {f.evidence.get('check', '?')}: {f.evidence.get('reason', '')}"
            for f in self.by_code("check-skipped")
        ]
        return render_findings_html(
            f"pre-flight check: {self.model}",
            f"{self.framework}; {self.samples} samples; {len(problems)} finding(s)",
            problems,
            notes=[*self.notes, *skipped],
            passed=self.passed,
            fragment=fragment,
        )

    def _repr_html_(self) -> str:
        return self.to_html(fragment=True)

    def save_html(self, path: str | os.PathLike[str], *, force: bool = False) -> Path:
        """Write the results as a self-contained HTML page; never replaces a file
        unless `force`."""
        from lossdoctor.report.html import write_text_safely

        return write_text_safely(self.to_html(), path, force=force)

    def render(self, color: bool = False) -> str:
        from lossdoctor.report.text import Style, _wrap, render_finding

        style = Style(color)
        lines = [
            style.bold(f"pre-flight check: {self.model}")
            + style.dim(f"  ({self.framework}; {self.samples} samples)")
        ]
        if not [f for f in self.findings if f.code != "check-skipped"]:
            lines.append("  " + style.severity(None, "no problems found"))
        for f in self.findings:
            if f.code != "check-skipped":
                lines += render_finding(f, style)
        for f in self.by_code("check-skipped"):
            text = f"{f.evidence.get('check', '?')}: {f.evidence.get('reason', '')}"
            lines += [style.dim(line) for line in _wrap(text, "        ", "  skipped: ")]
        for note in self.notes:
            lines += _wrap(note, "        ", "  note: ")
        if self.passed:
            lines += _wrap(", ".join(self.passed), "          ", "  passed: ")
        counts = {s: sum(1 for f in self.findings if f.severity is s
                         and f.code != "check-skipped") for s in Severity}
        skipped = len(self.by_code("check-skipped"))
        summary = (f"{counts[Severity.CRITICAL]} critical, {counts[Severity.WARNING]} "
                   f"warning, {len(self.passed)} passed, {skipped} skipped")
        worst = self.worst
        lines.append(style.severity(worst, summary) if worst else style.bold(summary))
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        return self.render()


def merged_by_output(framework: str, model: str, whole: CheckReport | None,
                     per_output: list[tuple[str, CheckReport]]) -> CheckReport:
    """One report for a model with several outputs: `whole` holds the checks of the
    model as a whole (its inputs, its initialization), `per_output` each output's own
    checks, whose findings and passed checks are labelled with the output's key."""
    samples = (whole or per_output[0][1]).samples
    out = CheckReport(framework, model, samples)
    parts = ([("", whole)] if whole is not None else []) + per_output
    for key, report in parts:
        label = f" ({key})" if key else ""
        for f in report.findings:
            if key:
                evidence = {**f.evidence, "output": key}
                if "check" in evidence:  # a skipped or failed check: which output's
                    evidence["check"] = f"{evidence['check']}{label}"
                f = replace(f, title=f"Output '{key}': {f.title}", evidence=evidence)
            out.findings.append(f)
        out.passed += [name + label for name in report.passed]
        out.notes += [n for n in report.notes if n not in out.notes]
        out.seconds.update({name + label: t for name, t in report.seconds.items()})
    out.sort()
    return out
