"""`input-problem`: NaN/Inf in the inputs, inputs far from unit scale, and samples
shared by the training and validation sets.

Scale: networks train best on inputs of zero mean and unit variance per feature.
The check looks at the root mean square of all input values (RMS_BAND) and at the
spread of per-feature standard deviations (features that vary differ in scale by more
than FEATURE_SPREAD x). Raw 8-bit pixels (0..255) have an RMS near 100.
"""

from __future__ import annotations

import hashlib

import numpy as np

from lossdoctor.findings import Finding, Severity, make_finding

RMS_BAND = (0.05, 5.0)
FEATURE_SPREAD = 1e3
# Validation samples also in training: any is a warning, this fraction is critical.
CRITICAL_OVERLAP = 0.1


def _as_float(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).reshape(len(x), -1)


def nonfinite_finding(x: np.ndarray) -> Finding | None:
    flat = _as_float(x)
    bad = ~np.isfinite(flat)
    if not bad.any():
        return None
    rows = int(np.sum(bad.any(axis=1)))
    return make_finding(
        "input-problem",
        title=f"{int(bad.sum())} input values are NaN or infinite, in {rows} of "
        f"{len(flat)} samples",
        evidence={"nonfinite_values": int(bad.sum()), "nonfinite_samples": rows,
                  "samples": len(flat), "nan": int(np.isnan(flat).sum()),
                  "first_sample": int(np.argmax(bad.any(axis=1)))},
        explanation="One NaN input makes that sample's output and loss NaN, and the "
        "update from a batch holding it is NaN for every weight: training is lost "
        "at the first such batch. Missing values in the source data or a division by "
        "zero in preprocessing (standardizing a constant feature) are the usual causes.",
        fixes=(
            "Find the samples (np.where(~np.isfinite(x).all(axis=1))) and drop or "
            "impute them.",
            "Guard standardization against zero variance: (x - mean) / (std + 1e-8).",
        ),
        severity=Severity.CRITICAL,
    )


def scale_finding(x: np.ndarray) -> Finding | None:
    flat = _as_float(x)
    finite = flat[np.isfinite(flat).all(axis=1)] if flat.size else flat
    if finite.size == 0:
        return None
    rms = float(np.sqrt(np.mean(np.square(finite))))
    stds = finite.std(axis=0)
    varying = stds[stds > 0]
    spread = float(varying.max() / varying.min()) if varying.size else 1.0
    evidence: dict[str, float | int | str] = {
        "rms": rms, "mean": float(finite.mean()), "std": float(finite.std()),
        "min": float(finite.min()), "max": float(finite.max()),
        "feature_std_spread": spread,
    }
    low, high = RMS_BAND
    if rms > high or (0 < rms < low):
        where = "large" if rms > high else "small"
        consequence = ("saturated units, huge initial logits and an early blow-up"
                       if rms > high else
                       "signals that fade through the layers and slow learning")
        return make_finding(
            "input-problem",
            severity=Severity.WARNING,
            title=f"Inputs are far from unit scale: root mean square {rms:.3g} "
            f"(range {evidence['min']:.3g} to {evidence['max']:.3g})",
            evidence=evidence,
            explanation=f"The inputs are {where} compared with the unit scale that "
            "standard initializers assume, so the first layer's outputs are "
            f"{where} too: {consequence}.",
            fixes=(
                "Standardize each feature with the training set's mean and std, and "
                "apply the same numbers to validation and test data.",
                "For images, divide 8-bit pixels by 255 (and optionally standardize).",
            ),
        )
    if spread > FEATURE_SPREAD:
        return make_finding(
            "input-problem",
            severity=Severity.WARNING,
            title=f"Input features differ in scale by {spread:.3g}x",
            evidence=evidence,
            explanation="Features with a large scale dominate the first layer and the "
            "gradient, and the small ones are learned slowly or not at all.",
            fixes=("Standardize every feature separately (per-feature mean and std).",),
        )
    return None


def _row_hashes(x: np.ndarray) -> list[bytes]:
    flat = np.ascontiguousarray(np.asarray(x).reshape(len(x), -1))
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in flat]


def overlap_finding(x_train: np.ndarray, x_val: np.ndarray) -> Finding | None:
    if len(x_val) == 0 or len(x_train) == 0:
        return None
    # Compare as float32 so the same sample saved in two dtypes still matches.
    train = set(_row_hashes(np.asarray(x_train, dtype=np.float32)))
    shared = sum(h in train for h in _row_hashes(np.asarray(x_val, dtype=np.float32)))
    if shared == 0:
        return None
    fraction = shared / len(x_val)
    return make_finding(
        "input-problem",
        severity=Severity.CRITICAL if fraction >= CRITICAL_OVERLAP else Severity.WARNING,
        title=f"{shared} of {len(x_val)} validation samples ({fraction:.0%}) also appear "
        "in the training data",
        evidence={"shared": shared, "validation_samples": len(x_val),
                  "fraction": fraction, "training_samples_compared": len(x_train)},
        explanation="A validation sample that is also a training sample measures "
        "memory, not generalization, so validation loss looks better than the model "
        "is and overfitting goes unseen. Duplicates in the source data or a split made "
        "after augmentation/oversampling cause it.",
        fixes=(
            "Deduplicate the data before splitting.",
            "Split first, then augment or oversample the training part only.",
        ),
    )
