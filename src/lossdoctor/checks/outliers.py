"""`outlier-samples`: samples whose loss is extreme compared with the rest.

Scored with a robust z-score, (loss - median) / (1.4826 * MAD), so the outliers do
not hide themselves by inflating the spread. A sample is listed when its score is
above Z_LIMIT and its loss is also more than RATIO_LIMIT x the median (a tight,
healthy distribution has large z-scores for ordinary differences).

With class labels the losses are cross-entropies, -ln p, and are scored as margins,
ln(e^loss - 1), the inverse of softplus (a binary cross-entropy is the softplus of
the logit's wrong-way margin): softplus squeezes the margins on the right side into a
tight crowd of small losses and leaves those on the wrong side as a long tail, so
logits spread evenly by a random start look like a few extreme samples.
On a binary digits classifier before training, 5 of 256 losses (up to 3.23 against a
median of 0.32) were 16.1 robust deviations out as losses and 6.6 as margins.
Each sample is also scored against its own class: a classifier's classes start at
different losses (a start that leans to one class), and a rare class is not a handful
of bad samples.
"""

from __future__ import annotations

import numpy as np

from lossdoctor.findings import Finding, make_finding

Z_LIMIT = 10.0
RATIO_LIMIT = 3.0
MAX_LISTED = 10
# Too many "outliers" is a distribution, not a handful of bad samples.
MAX_FRACTION = 0.05
# The fewest finite losses a median and spread are taken from; a smaller class is
# scored with all samples.
MIN_GROUP = 8


def class_groups(labels: np.ndarray | None, n: int) -> np.ndarray | None:
    """Each of the `n` samples' class (0, 1, ...) when `labels` are class labels:
    integers (any float holding whole numbers, 0/1 targets included) or one-hot rows;
    None for anything else (regression targets, soft labels)."""
    if labels is None:
        return None
    y = np.asarray(labels)
    if not y.size or y.shape[0] != n or not np.issubdtype(y.dtype, np.number):
        return None
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 2:
        if not (np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all()):
            return None
        y = y.argmax(axis=1)
    if y.ndim != 1 or not np.isfinite(y).all() or not (y == np.round(y)).all():
        return None
    _, groups = np.unique(y, return_inverse=True)
    return np.asarray(groups).reshape(-1)


def _centre_and_scale(values: np.ndarray) -> tuple[float, float]:
    median = float(np.median(values))
    mad = float(np.median(np.abs(values - median))) * 1.4826
    return median, max(mad, 1e-6 * max(abs(median), 1e-12))


def _medians(values: np.ndarray, groups: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Per sample: the median and robust spread of the finite losses it is scored
    against (its class's when the class has MIN_GROUP of them, else all)."""
    finite = np.isfinite(values)
    median, scale = _centre_and_scale(values[finite])
    medians, scales = np.full(len(values), median), np.full(len(values), scale)
    if groups is not None:
        for g in np.unique(groups):
            members = groups == g
            own = values[members & finite]
            if len(own) >= MIN_GROUP:
                medians[members], scales[members] = _centre_and_scale(own)
    return medians, scales


def margins(losses: np.ndarray) -> np.ndarray:
    """ln(e^loss - 1) of cross-entropy losses (a loss of 0 read as 1e-6)."""
    x = np.maximum(losses, 1e-6)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(x + np.log(-np.expm1(-x)))


def outlier_indices(losses: np.ndarray, groups: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Indices of outlying samples, worst first, and their robust z-scores; with
    `groups` (`class_groups`: the losses are cross-entropies), scored as `margins`
    and each within its class."""
    values = np.asarray(losses, dtype=np.float64).reshape(-1)
    finite = np.isfinite(values)
    if finite.sum() < MIN_GROUP:
        return np.array([], dtype=np.int64), np.array([])
    scored = values
    if groups is not None and (values[finite] >= 0).all():
        scored = margins(values)
    centres, scales = _medians(scored, groups)
    z = np.where(finite, (scored - centres) / scales, np.inf)
    medians = _medians(values, groups)[0]
    mask = (z > Z_LIMIT) & (~finite | (values > RATIO_LIMIT * np.maximum(medians, 1e-12)))
    idx = np.flatnonzero(mask)
    order = idx[np.argsort(-z[idx], kind="stable")]
    return order, z[order]


def verdict(losses: np.ndarray, *, when: str, labels: np.ndarray | None = None
            ) -> Finding | None:
    values = np.asarray(losses, dtype=np.float64).reshape(-1)
    groups = class_groups(labels, len(values))
    idx, z = outlier_indices(values, groups)
    if len(idx) == 0 or len(idx) > MAX_FRACTION * len(values):
        return None
    median = float(np.nanmedian(values[np.isfinite(values)]))
    listed = idx[:MAX_LISTED]
    against = f"a median of {median:.4g}"
    if groups is not None:
        own = _medians(values, groups)[0][idx[0]]
        if own != median:
            against = f"a median of {own:.4g} for its class ({median:.4g} for all)"
    return make_finding(
        "outlier-samples",
        title=f"{len(idx)} of {len(values)} samples have extreme loss {when} "
        f"(up to {values[idx[0]]:.4g} against {against})",
        evidence={
            "samples": len(values),
            "outliers": len(idx),
            "indices": ", ".join(str(int(i)) for i in listed),
            "worst_loss": float(values[idx[0]]),
            "median_loss": median,
            "worst_robust_z": float(z[0]),
            "scored_within": "class" if groups is not None else "all samples",
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
