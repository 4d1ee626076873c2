"""The finding catalog: every code explains itself and says what to do."""

from __future__ import annotations

from lossdoctor.findings import CATALOG, REGIMES, Finding, Severity, make_finding


def test_every_code_has_a_title_an_explanation_and_fixes():
    for code, entry in CATALOG.items():
        assert entry.code == code
        assert entry.title and len(entry.explanation) > 40, code
        assert entry.fixes and all(fix.strip() for fix in entry.fixes), code


def test_design_codes_are_all_present():
    design = {
        "overfitting", "data-problem", "plateau", "diverging", "lr-too-high", "lr-too-low",
        "generalization-gap", "loss-spike", "nan-loss", "softmax-overflow", "constant-loss",
        "update-ratio-high", "update-ratio-low", "vanishing-gradients", "exploding-gradients",
        "dead-units", "saturated-activations", "poor-initialization", "nan-origin",
        "frozen-batchnorm", "initial-loss-mismatch", "regularization-not-increasing-loss",
        "cannot-overfit-small-batch", "gradient-check-failed", "logits-probabilities-mismatch",
        "label-problem", "input-problem", "outlier-samples", "search-best-at-boundary",
        "monitor-error",
    }
    assert design <= set(CATALOG)
    # The four unhealthy regimes are findings with the same code.
    assert {"overfitting", "data-problem", "plateau", "diverging"} <= set(REGIMES)


def test_make_finding_fills_defaults_and_json_has_no_nan():
    f = make_finding("nan-loss", step=3, evidence={"x": float("nan"), "y": float("inf")})
    assert isinstance(f, Finding) and f.severity is Severity.CRITICAL
    assert f.to_dict()["evidence"] == {"x": "nan", "y": "inf"}
    assert f.explanation == CATALOG["nan-loss"].explanation
