"""A live-doctor run folder is an ordinary TensorBoard log: TensorBoard's own reader
lists the doctor's per-layer signals next to the loss."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing.event_accumulator import (
    EventAccumulator,
)
from tests.live import digits_torch as dt


def test_tensorboard_reads_a_torch_doctor_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    dt.scenario("healthy", run_dir)
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert "train/loss_step" in tags and "epoch/val_loss" in tags
    ratios = {t for t in tags if t.startswith("layer/") and t.endswith("/update_ratio")}
    assert ratios, sorted(tags)
    events = acc.Scalars(sorted(ratios)[0])
    assert len(events) >= 5 and all(0 < e.value < 1 for e in events)
