"""`outlier-samples`: samples whose loss is extreme compared with the rest.

Scored with a robust z-score, (loss - median) / (1.4826 * MAD), so the outliers do
not hide themselves by inflating the spread. A sample is listed when its score is
above Z_LIMIT and its loss is also more than RATIO_LIMIT x the median (a tight,
healthy distribution has large z-scores for ordinary differences).
"""

from __future__ import annotations

import numpy as np

from lossdoctor.findings import Finding, make_finding

Z_LIMIT = 10.0
RATIO_LIMIT = 3.0
MAX_LISTED = 10
# Too many "outliers" is a distribution, not a handful of bad samples.
MAX_FRACTION = 0.05


def outlier_indices(losses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of outlying samples, worst first, and their robust z-scores."""
    values = np.asarray(losses, dtype=np.float64).reshape(-1)
    finite = np.isfinite(values)
    if finite.sum() < 8:
        return np.array([], dtype=np.int64), np.array([])
    median = float(np.median(values[finite]))
    mad = float(np.median(np.abs(values[finite] - median))) * 1.4826
    scale = max(mad, 1e-6 * max(abs(median), 1e-12))
    z = np.where(finite, (values - median) / scale, np.inf)
    mask = (z > Z_LIMIT) & (~finite | (values > RATIO_LIMIT * max(median, 1e-12)))
    idx = np.flatnonzero(mask)
    order = idx[np.argsort(-z[idx], kind="stable")]
    return order, z[order]


def verdict(losses: np.ndarray, *, when: str) -> Finding | None:
    values = np.asarray(losses, dtype=np.float64).reshape(-1)
    idx, z = outlier_indices(values)
    if len(idx) == 0 or len(idx) > MAX_FRACTION * len(values):
        return None
    median = float(np.nanmedian(values[np.isfinite(values)]))
    listed = idx[:MAX_LISTED]
    return make_finding(
        "outlier-samples",
        title=f"{len(idx)} of {len(values)} samples have extreme loss {when} "
        f"(up to {values[idx[0]]:.4g} against a median of {median:.4g})",
        evidence={
            "samples": len(values),
            "outliers": len(idx),
            "indices": ", ".join(str(int(i)) for i in listed),
            "worst_loss": float(values[idx[0]]),
            "median_loss": median,
            "worst_robust_z": float(z[0]),
        },
        explanation="These samples cost far more than the rest, so a batch that holds "
        "one is dominated by it and its update points wherever that sample wants: "
        "the loss spikes and can blow up. Corrupted inputs (wrong scale, garbage "
        "values) or wrong labels are the usual cause.",
        fixes=(
            f"Inspect the listed samples (indices into the checked sample: "
            f"{', '.join(str(int(i)) for i in listed[:5])}) and their labels.",
            "Fix or drop corrupted samples; relabel wrong ones.",
            "If they are genuine rare cases, keep them but clip gradients.",
        ),
    )
