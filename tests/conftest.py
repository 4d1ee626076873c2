"""Shared fixtures. Real training runs are made once per test session and shared by
every test that reads them (they are the slow part of the suite)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))


@pytest.fixture(scope="session")
def keras_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every Keras scenario of examples/digits_scenarios.py, trained for real."""
    import digits_scenarios as scenarios

    root = tmp_path_factory.mktemp("keras-runs")
    return {
        name: scenarios.run_keras_scenario(name, root / name)
        for name in scenarios.KERAS_SCENARIOS
    }


@pytest.fixture(scope="session")
def torch_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every PyTorch scenario of examples/digits_scenarios.py, trained for real."""
    import digits_scenarios as scenarios

    root = tmp_path_factory.mktemp("torch-runs")
    return {
        name: scenarios.run_torch_scenario(name, root / name)
        for name in scenarios.TORCH_SCENARIOS
    }
