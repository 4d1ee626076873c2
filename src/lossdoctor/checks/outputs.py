"""`logits-probabilities-mismatch`: what the model outputs against what the loss expects.

The kind of output is read from the numbers on a sample, not from layer names, so
it works on any model: rows in [0, 1] summing to 1 are softmax probabilities, values
in [0, 1] otherwise are sigmoid probabilities, rows <= 0 whose exponentials sum to 1
are log-probabilities, anything else is logits (raw scores).

Keras 3 on TensorFlow quietly takes the logits behind a softmax output when its
built-in crossentropy has from_logits=False, so softmax + from_logits=False is fine
there; probabilities into a from_logits=True loss (or nn.CrossEntropyLoss /
BCEWithLogitsLoss) are squashed twice and learn slowly or not at all.
"""

from __future__ import annotations

import numpy as np

from lossdoctor.checks._probe import LossInfo
from lossdoctor.findings import Finding, make_finding

SUM_TOL = 1e-3


def describe_outputs(outputs: np.ndarray) -> str:
    """'softmax', 'sigmoid', 'log-softmax' or 'logits'."""
    out = np.asarray(outputs, dtype=np.float64)
    if out.size == 0 or not np.all(np.isfinite(out)):
        return "logits"
    rows = out.reshape(len(out), -1)
    in_unit = bool(np.all(rows >= 0.0) and np.all(rows <= 1.0))
    # A constant output in [0, 1] (e.g. all zeros) says nothing either way.
    varies = float(np.ptp(rows)) > 0
    if rows.shape[1] >= 2:
        if in_unit and np.allclose(rows.sum(axis=1), 1.0, atol=SUM_TOL):
            return "softmax"
        if np.all(rows <= 0) and np.allclose(np.exp(rows).sum(axis=1), 1.0, atol=SUM_TOL):
            return "log-softmax"
    if in_unit and varies:
        return "sigmoid"
    return "logits"


_OUTPUT_WORDS = {
    "softmax": "softmax probabilities (rows in [0, 1] summing to 1)",
    "sigmoid": "probabilities (every value in [0, 1])",
    "log-softmax": "log-probabilities (rows whose exponentials sum to 1)",
    "logits": "raw scores (logits)",
}


def verdict(output_kind: str, loss: LossInfo, outputs: np.ndarray) -> Finding | None:
    expects = loss.expects
    if expects == "any":
        return None
    ok = {
        # log_softmax then softmax gives the same softmax: harmless before CE.
        "logits": {"logits", "log-softmax"},
        "probabilities": {"softmax", "sigmoid"},
        "log-probabilities": {"log-softmax"},
    }[expects]
    if output_kind in ok:
        return None
    # A softmax row is also in [0, 1]: probabilities of either kind satisfy a
    # probabilities loss; a single-column sigmoid is fine for binary losses.
    out = np.asarray(outputs, dtype=np.float64)
    evidence: dict[str, float | str] = {
        "output": output_kind,
        "loss": loss.name,
        "loss_expects": expects,
        "setting": loss.setting,
        "output_min": float(np.nanmin(out)) if out.size else float("nan"),
        "output_max": float(np.nanmax(out)) if out.size else float("nan"),
    }
    fixes: tuple[str, ...]
    if expects == "logits":
        title = (f"The model outputs {output_kind} probabilities but {loss.name} "
                 f"({loss.setting}) expects logits")
        explanation = (
            f"The model's output is {_OUTPUT_WORDS[output_kind]}, and the loss applies "
            "its own softmax/sigmoid on top: the probabilities are squashed twice. "
            "The loss then lives in a narrow band near its chance value, gradients "
            "are tiny, and training crawls or stalls with the loss barely below ln C."
        )
        fixes = (
            "Remove the final softmax/sigmoid from the model and keep the loss on "
            "logits; apply softmax only when you need probabilities for prediction.",
            "Or keep the activation and use a loss on probabilities (Keras: "
            "from_logits=False; PyTorch: NLLLoss on log_softmax, or BCELoss).",
        )
    elif expects == "log-probabilities":
        title = (f"The model outputs {output_kind} but {loss.name} expects "
                 "log-probabilities")
        explanation = (
            f"The model's output is {_OUTPUT_WORDS[output_kind]}, but NLLLoss only "
            "picks the value of the true class and negates it, which is a "
            "cross-entropy only if the input is log_softmax. On probabilities the loss "
            "is negative and unbounded in the wrong sense; on logits it rewards "
            "inflating one score."
        )
        fixes = (
            "End the model with log_softmax before NLLLoss, or use nn.CrossEntropyLoss "
            "on raw logits.",
        )
    else:
        title = (f"The model outputs {output_kind} but {loss.name} ({loss.setting}) "
                 "expects probabilities")
        explanation = (
            f"The model's output is {_OUTPUT_WORDS[output_kind]}, but the loss treats "
            "it as probabilities: values outside [0, 1] are clipped (Keras) or make "
            "the log undefined (PyTorch BCELoss raises or returns NaN), so gradients "
            "are wrong or zero."
        )
        fixes = (
            "Tell the loss it receives logits (Keras: from_logits=True; PyTorch: "
            "BCEWithLogitsLoss / CrossEntropyLoss).",
            "Or end the model with the matching softmax/sigmoid.",
        )
    return make_finding(
        "logits-probabilities-mismatch",
        title=title,
        evidence=evidence,
        explanation=explanation,
        fixes=fixes,
    )
