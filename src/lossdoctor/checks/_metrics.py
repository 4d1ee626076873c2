"""Small numeric helpers shared by the checks."""

from __future__ import annotations

import numpy as np

from lossdoctor.checks._probe import LossInfo


def n_classes(outputs: np.ndarray) -> int:
    return int(outputs.shape[-1]) if outputs.ndim >= 2 else 1


def is_classification(loss: LossInfo | None) -> bool:
    return loss is not None and loss.kind in ("softmax-ce", "binary-ce", "nll")


def class_indices(y: np.ndarray, classes: int) -> np.ndarray | None:
    """Integer class per sample from sparse or one-hot labels; None if neither."""
    y = np.asarray(y)
    if y.ndim >= 2 and y.shape[-1] == classes and classes > 1:
        return np.asarray(np.argmax(y.reshape(len(y), -1), axis=1))
    flat = y.reshape(len(y), -1)
    if flat.shape[1] != 1:
        return None
    return np.rint(flat[:, 0].astype(np.float64)).astype(np.int64)


def accuracy(outputs: np.ndarray, y: np.ndarray, loss: LossInfo | None) -> float | None:
    """Fraction of samples predicted right; None when the task is not classification."""
    if not is_classification(loss) or outputs.size == 0:
        return None
    out = outputs.reshape(len(outputs), -1)
    if out.shape[1] == 1:  # binary: logits split at 0, probabilities at 0.5
        cut = 0.0 if loss is not None and loss.expects == "logits" else 0.5
        pred = (out[:, 0] > cut).astype(np.int64)
        truth = np.rint(np.asarray(y, dtype=np.float64).reshape(len(y), -1)[:, 0])
        return float(np.mean(pred == truth))
    truth_idx = class_indices(y, out.shape[1])
    if truth_idx is None:
        return None
    return float(np.mean(np.argmax(out, axis=1) == truth_idx))
