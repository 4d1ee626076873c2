"""diagnose(run): the regime of a run plus every finding its rules return."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lossdoctor.findings import Finding, Severity, make_finding, worst_first
from lossdoctor.rules import DEFAULT_RULES, Rule, assess_regime
from lossdoctor.run import Run

# A specific finding explains a general one away: a loss frozen by softmax overflow
# is also "flat", but "decay the learning rate" would be the wrong advice.
SUPERSEDES: dict[str, frozenset[str]] = {
    "softmax-overflow": frozenset({"plateau", "lr-too-high", "lr-too-low", "barely-learning"}),
    "constant-loss": frozenset({"plateau", "lr-too-high", "lr-too-low", "barely-learning"}),
    "nan-loss": frozenset({"lr-too-high", "barely-learning"}),
    # Steps that make no update flatten the curve; the learning rate is not why.
    "skipped-steps": frozenset({"plateau", "lr-too-low", "barely-learning"}),
    # Spikes everywhere are what divergence looks like per step; one finding says it.
    "diverging": frozenset({"loss-spike", "barely-learning"}),
    # Both advise a lower learning rate; the specific diagnosis says why.
    "lr-too-high": frozenset({"plateau"}),
    # A train/validation accuracy gap is the symptom; regularizing would not cure it.
    "data-problem": frozenset({"generalization-gap", "barely-learning"}),
    # A flat run near chance is a plateau (at chance, with its own advice); a straight
    # slow descent near chance is the learning rate's, and says so more precisely.
    "plateau": frozenset({"barely-learning"}),
    "lr-too-low": frozenset({"barely-learning"}),
}


@dataclass
class Diagnosis:
    run: Run
    regime: str
    findings: list[Finding] = field(default_factory=list)
    regime_evidence: dict[str, float | int | str] = field(default_factory=dict)

    @property
    def worst(self) -> Severity | None:
        return max((f.severity for f in self.findings), key=lambda s: s.rank, default=None)

    def codes(self) -> list[str]:
        return [f.code for f in self.findings]

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run.name,
            "source": self.run.source,
            "format": self.run.format,
            "regime": self.regime,
            "findings": [f.to_dict() for f in self.findings],
        }


def diagnose(run: Run, rules: Sequence[Rule] = DEFAULT_RULES) -> Diagnosis:
    """Run every rule on `run`. A rule that fails becomes a `monitor-error` finding
    instead of taking the others down."""
    verdict = assess_regime(run)
    findings: list[Finding] = [verdict.finding] if verdict.finding is not None else []
    for rule in rules:
        try:
            findings.extend(rule(run))
        except Exception as exc:  # a broken rule must not hide the others' findings
            findings.append(
                make_finding(
                    "monitor-error",
                    evidence={"rule": getattr(rule, "__name__", repr(rule)),
                              "error": f"{type(exc).__name__}: {exc}"},
                    title=f"Rule {getattr(rule, '__name__', rule)} failed on this run",
                    explanation="lossdoctor could not evaluate one of its rules on this "
                    "run; the other findings are unaffected.",
                )
            )
    codes = {f.code for f in findings}
    hidden = set().union(*(SUPERSEDES.get(c, frozenset()) for c in codes))
    # What the whole run's curve says hides run-level findings only: one output of a
    # multi-output model near chance (`barely-learning` at that output) still stands.
    findings = [f for f in findings if f.code not in hidden or f.layer is not None]
    return Diagnosis(run, verdict.regime, worst_first(findings), dict(verdict.evidence))
