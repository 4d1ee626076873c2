"""`label-problem`: labels that cannot be right for this loss and output, and labels
that do not depend on the inputs.

Static checks (no training): NaN labels, class labels outside the output range,
non-integer class labels, a single class in the sample, one-hot labels given to a
loss that wants class indices or the reverse, binary labels outside [0, 1].

The "unrelated" check trains two copies for the same short budget on one half of
the sample, one on the labels as given and one on a random permutation of them, and
compares the loss each reaches on the other half. Labels that carry information
make the held-out loss fall below the shuffled copy's; when they do not, the labels
are misaligned with the inputs (shuffled separately, off by one, joined on the wrong
key).
"""

from __future__ import annotations

import math

import numpy as np

from lossdoctor.checks._probe import LossInfo
from lossdoctor.findings import Finding, Severity, make_finding

# The real labels must beat the shuffled ones on held-out loss by this fraction of the
# starting loss; both copies start from the same weights and see the same inputs.
MIN_ADVANTAGE = 0.05


def _finding(title: str, evidence: dict[str, float | int | str], explanation: str,
             fixes: tuple[str, ...], severity: Severity | None = None) -> Finding:
    return make_finding("label-problem", title=title, evidence=evidence,
                        explanation=explanation, fixes=fixes, severity=severity)


def static_findings(y: np.ndarray, loss: LossInfo, classes: int) -> list[Finding]:
    y = np.asarray(y)
    n = len(y)
    out: list[Finding] = []
    numeric = np.issubdtype(y.dtype, np.number) or y.dtype == np.bool_
    if not numeric:
        return [_finding(
            f"Labels have dtype {y.dtype}, not numbers",
            {"dtype": str(y.dtype)},
            "The loss needs numeric labels; strings or objects must be encoded first.",
            ("Encode labels as integers 0..C-1 (e.g. sklearn's LabelEncoder).",),
        )]
    yf = y.astype(np.float64)
    bad = int(np.sum(~np.isfinite(yf)))
    if bad:
        out.append(_finding(
            f"{bad} of {n} labels are NaN or infinite",
            {"nonfinite_labels": bad, "samples": n},
            "A NaN label makes that sample's loss NaN, and one NaN in a batch turns the "
            "whole update into NaN.",
            ("Drop or repair the samples with missing labels before training.",),
        ))
        return out
    if loss.kind not in ("softmax-ce", "nll", "binary-ce"):
        return out
    flat = yf.reshape(n, -1)
    sparse_given = flat.shape[1] == 1
    onehot_given = y.ndim >= 2 and flat.shape[1] == classes and classes > 1
    if loss.kind in ("softmax-ce", "nll"):
        if loss.target == "sparse" and onehot_given:
            return [_finding(
                f"{loss.name} expects class indices but the labels are one-hot "
                f"(shape {tuple(y.shape)})",
                {"label_shape": str(tuple(y.shape)), "loss": loss.name, "classes": classes},
                "A sparse cross-entropy reads each label as one class number; given "
                "one-hot rows it either fails on the shape or reads the 0/1 entries "
                "as class numbers.",
                ("Use the categorical (one-hot) version of the loss, or pass "
                 "np.argmax(y, axis=1) as labels.",),
            )]
        if loss.target == "one-hot" and not onehot_given:
            return [_finding(
                f"{loss.name} expects one-hot labels but got shape {tuple(y.shape)} for "
                f"{classes} classes",
                {"label_shape": str(tuple(y.shape)), "loss": loss.name, "classes": classes},
                "A categorical cross-entropy multiplies the label row with the log "
                "probabilities. Class numbers of shape (N,) or (N, 1) broadcast against "
                "the C outputs, so the loss is computed but means nothing.",
                ("Use the sparse version of the loss (SparseCategoricalCrossentropy), "
                 "or one-hot encode the labels.",),
                Severity.CRITICAL,
            )]
        if sparse_given:
            labels = flat[:, 0]
            if np.any(labels != np.round(labels)):
                out.append(_finding(
                    "Class labels are not whole numbers",
                    {"example": float(labels[labels != np.round(labels)][0])},
                    "Sparse cross-entropy needs class numbers 0..C-1; fractional labels "
                    "are truncated or rejected.",
                    ("Check the label column; encode classes as integers.",),
                ))
                return out
            lo, hi = float(labels.min()), float(labels.max())
            if lo < 0 or hi > classes - 1:
                outside = int(np.sum((labels < 0) | (labels > classes - 1)))
                out.append(_finding(
                    f"Labels run from {lo:g} to {hi:g} but the model has {classes} "
                    f"outputs (classes 0..{classes - 1})",
                    {"label_min": lo, "label_max": hi, "classes": classes,
                     "outside": outside, "samples": n},
                    "Every label must index one output. Labels outside 0..C-1 make "
                    "PyTorch raise (on CPU) or fault (on GPU) and make TensorFlow "
                    "return NaN or silently wrong losses: the labels are 1-based, "
                    "the output layer has too few units, or a class was added later.",
                    (f"Give the output layer {int(hi) + 1} units if there are that many "
                     "classes.",
                     "Or shift the labels to start at 0 (e.g. y - 1 for 1-based labels).",),
                    Severity.CRITICAL,
                ))
                return out
    elif loss.kind == "binary-ce":
        lo, hi = float(flat.min()), float(flat.max())
        if lo < 0 or hi > 1:
            out.append(_finding(
                f"Binary labels run from {lo:g} to {hi:g}, outside [0, 1]",
                {"label_min": lo, "label_max": hi},
                "Binary cross-entropy reads labels as probabilities of the positive "
                "class; values outside [0, 1] (such as -1/+1 or 1/2 coding) give a "
                "loss without a minimum where the model should be.",
                ("Map the labels to 0/1.",),
                Severity.CRITICAL,
            ))
            return out
    classes_seen = len(np.unique(flat, axis=0))
    if classes_seen == 1:
        out.append(_finding(
            f"All {n} labels in the sample are the same class",
            {"distinct_labels": 1, "samples": n},
            "With a single class there is nothing to learn but a constant: either the "
            "sample is sorted by class (shuffle it) or the label column is wrong.",
            ("Shuffle the data before taking batches.",
             "Check that the label column is the one you mean."),
            Severity.WARNING,
        ))
    return out


def unrelated_verdict(
    start: float, real: float, shuffled: float, *, train_samples: int, steps: int
) -> Finding | None:
    if not (math.isfinite(start) and math.isfinite(real) and math.isfinite(shuffled)):
        return None
    advantage = (shuffled - real) / max(abs(start), 1e-12)
    if advantage >= MIN_ADVANTAGE:
        return None
    return _finding(
        "The labels look unrelated to the inputs: training on them generalizes no "
        "better than training on shuffled labels",
        {"heldout_loss_start": start, "heldout_loss_real_labels": real,
         "heldout_loss_shuffled_labels": shuffled, "advantage": advantage,
         "needed": MIN_ADVANTAGE, "train_samples": train_samples, "steps": steps},
        f"Two copies trained for {steps} steps on {train_samples} samples, one on the "
        f"labels given and one on the same labels shuffled, reach held-out losses of "
        f"{real:.4g} and {shuffled:.4g} (from {start:.4g}). If the labels described the "
        "inputs, the first copy would do clearly better. Inputs and labels have been "
        "shuffled or sorted separately, joined on the wrong key, or shifted by one.",
        ("Print a few inputs next to their labels and check them by eye.",
         "Shuffle inputs and labels with one permutation (or shuffle pairs).",
         "Check joins/merges that attach labels to samples."),
        Severity.CRITICAL,
    )
