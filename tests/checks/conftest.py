"""Shared data for the pre-flight check tests: scikit-learn's digits, standardized."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x standardized float32, y int64, x_raw 0..16) for 600 digits."""
    from sklearn.datasets import load_digits

    data = load_digits()
    raw = data.data[:600].astype(np.float32)
    x = ((raw - raw.mean(0)) / (raw.std(0) + 1e-6)).astype(np.float32)
    return x, data.target[:600].astype(np.int64), raw
