"""`initial-loss-mismatch`: the first loss, regularization off, against its expected value.

With small random weights an untrained classifier is unsure of every class, so its
first softmax cross-entropy is about ln C (C classes) and a binary cross-entropy about
ln 2. A regression net outputs about 0, so its first mean squared error is about the
mean square of the targets (their variance when they are centred).

Tolerance: the loss passes when loss / expected lies in RATIO_BAND[kind]. Common
initializers give logits with a spread of about 1, which lifts the first
cross-entropy 10-40% above ln C, hence +50%; a regression output layer adds its own
variance to the targets', hence up to 3x. Far below the band means the model already
"knows" the labels (pretrained weights, leaked labels) or the loss is scaled down;
far above means over-confident initial outputs, unscaled inputs or a summed loss.
"""

from __future__ import annotations

import math

import numpy as np

from lossdoctor.checks._probe import LossInfo
from lossdoctor.findings import Finding, Severity, make_finding

RATIO_BAND: dict[str, tuple[float, float]] = {
    "softmax-ce": (0.5, 1.5),
    "nll": (0.5, 1.5),
    "binary-ce": (0.5, 1.5),
    "mse": (0.5, 3.0),
}


def expected_initial_loss(
    loss: LossInfo, classes: int, y: np.ndarray
) -> tuple[float, str] | None:
    """The expected first loss and how it is derived, or None for an unknown loss."""
    if loss.kind in ("softmax-ce", "nll"):
        if classes < 2:
            return None
        return math.log(classes), f"ln C = ln {classes}"
    if loss.kind == "binary-ce":
        return math.log(2.0), "ln 2"
    if loss.kind == "mse":
        target = np.asarray(y, dtype=np.float64)
        value = float(np.mean(np.square(target)))
        return value, "mean square of the targets (their variance when centred)"
    return None


def verdict(loss_value: float, expected: float, formula: str, loss: LossInfo) -> Finding | None:
    low, high = RATIO_BAND[loss.kind]
    evidence: dict[str, float | str] = {
        "initial_loss": loss_value,
        "expected": expected,
        "expected_from": formula,
        "loss": loss.name,
    }
    if not math.isfinite(loss_value):
        return make_finding(
            "initial-loss-mismatch",
            severity=Severity.CRITICAL,
            title=f"The very first loss is {loss_value} before any training",
            evidence=evidence,
            explanation="Nothing has been trained yet, so a NaN or infinite loss comes "
            "from the inputs, the labels or the loss itself: NaN/Inf in the data, a "
            "log of zero in a hand-written loss, or weights initialized far too large.",
            fixes=(
                "Check inputs and labels for NaN/Inf (see input-problem/label-problem).",
                "Use the framework's cross-entropy on logits rather than log(softmax).",
                "Use a standard initializer for every layer.",
            ),
        )
    ratio = loss_value / expected if expected > 0 else float("inf")
    evidence["ratio"] = ratio
    if low <= ratio <= high:
        return None
    if ratio > high:
        return make_finding(
            "initial-loss-mismatch",
            title=f"The first loss is {loss_value:.4g}, {ratio:.1f}x the expected "
            f"{expected:.4g} ({formula})",
            evidence=evidence,
            explanation=f"An untrained model should start near {expected:.4g}. Starting "
            f"{ratio:.1f}x higher means the initial outputs are already large and "
            "confidently wrong: inputs that are not standardized, weights initialized "
            "too large, or a loss summed over the batch instead of averaged.",
            fixes=(
                "Standardize the inputs (zero mean, unit variance per feature).",
                "Use a fan-in scaled initializer and a zero bias in the output layer.",
                "Average the loss over the batch (reduction='mean').",
            ),
        )
    return make_finding(
        "initial-loss-mismatch",
        title=f"The first loss is {loss_value:.4g}, only {ratio:.2f}x the expected "
        f"{expected:.4g} ({formula})",
        evidence=evidence,
        explanation=f"An untrained model cannot do better than chance, yet the loss "
        f"starts at {ratio:.2f}x the chance level. Either the weights are not fresh "
        "(a trained checkpoint: then ignore this), the labels leak into the inputs, or "
        "the loss is scaled down (divided by the number of classes, or fed the wrong "
        "kind of output).",
        fixes=(
            "If the model is freshly initialized, look for the label in the inputs.",
            "Check the loss's reduction and that it receives what it expects "
            "(logits vs probabilities).",
        ),
    )
