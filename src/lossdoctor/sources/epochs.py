"""Epoch numbers for TensorBoard series, which store only steps.

Findings should say "epoch 4, step 170", not a bare step. Three conventions give the
epochs away: Keras names its per-epoch scalars `epoch_*` (their step IS the epoch);
Lightning and many hand-written loops log a scalar named `epoch`; Keras 3 logs
`evaluation_*_vs_iterations` at the last iteration of every epoch.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from lossdoctor.run import Series


def _leaf(tag: str) -> str:
    return tag.rsplit("/", 1)[-1].lower()


def _with_epochs(series: Series, epochs: np.ndarray) -> Series:
    return Series(series.steps, series.values, epochs.astype(np.int64))


def _epoch_marker(raw: Mapping[str, Series]) -> Series | None:
    """A scalar named `epoch`: (step at which it was logged, epoch number)."""
    for tag, series in raw.items():
        if _leaf(tag) == "epoch" and len(series) and np.isfinite(series.values).all():
            return series
    return None


def _keras_epoch_ends(raw: Mapping[str, Series]) -> np.ndarray | None:
    """Iteration at which each epoch ended, from Keras' evaluation_*_vs_iterations."""
    for tag, series in raw.items():
        if _leaf(tag).startswith("evaluation_") and _leaf(tag).endswith("_vs_iterations"):
            return series.steps
    return None


def attach_epochs(raw: Mapping[str, Series]) -> dict[str, Series]:
    """The same series, with `epochs` filled in where the log tells them."""
    marker = _epoch_marker(raw)
    ends = None if marker is not None else _keras_epoch_ends(raw)
    out: dict[str, Series] = {}
    for tag, series in raw.items():
        if series.epochs is not None or not len(series):
            out[tag] = series
        elif _leaf(tag).startswith("epoch_"):
            out[tag] = _with_epochs(series, series.steps)
        elif marker is not None:
            # The epoch logged at the first marker step at or after this step.
            idx = np.searchsorted(marker.steps, series.steps, side="left")
            idx = np.minimum(idx, len(marker) - 1)
            out[tag] = _with_epochs(series, marker.values[idx].astype(np.int64))
        elif ends is not None and len(ends):
            out[tag] = _with_epochs(series, np.searchsorted(ends, series.steps, side="left"))
        else:
            out[tag] = series
    return out
