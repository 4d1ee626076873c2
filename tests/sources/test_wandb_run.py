"""The `.wandb` files of W&B runs, read without wandb. The two in data/wandb were
written by wandb 0.31.0 in offline mode (`data/wandb/make_runs.py`): `brisk-pond-1`
(40 epochs, validation loss turning up, a nested `{"val": {"acc": ...}}` log) and
`long-night-2` (200 steps whose loss turns NaN at step 160, records across a 32 KiB
block boundary, finished with exit code 1)."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from lossdoctor.cli import main
from lossdoctor.diagnosis import diagnose
from lossdoctor.run import LR, TRAIN_LOSS, VAL_ACC, VAL_LOSS
from lossdoctor.sources import load

DATA = Path(__file__).parent / "data" / "wandb"
BRISK = DATA / "offline-run-20261129_055039-4xbxx0cf" / "run-4xbxx0cf.wandb"
LONG = DATA / "offline-run-20261129_055040-l10tv26h" / "run-l10tv26h.wandb"


@pytest.fixture
def wandb_dir(tmp_path: Path) -> Path:
    """A project folder as W&B leaves it: `wandb/<run folders>`, `latest-run` a link."""
    folder = tmp_path / "project" / "wandb"
    shutil.copytree(DATA, folder, ignore=shutil.ignore_patterns("*.py"))
    (folder / "latest-run").symlink_to(LONG.parent.name)
    return tmp_path / "project"


def test_a_wandb_folder_of_runs(wandb_dir: Path) -> None:
    runs = {item.run.name: item.run for item in load(wandb_dir) if item.run is not None}
    assert sorted(runs) == ["wandb/brisk-pond-1 [4xbxx0cf]", "wandb/long-night-2 [l10tv26h]"]
    brisk = runs["wandb/brisk-pond-1 [4xbxx0cf]"]
    assert brisk.format == "wandb" and brisk.meta["project"] == "digits"
    expected = [2.0 * math.exp(-e / 6) + 0.05 for e in range(40)]
    np.testing.assert_allclose(brisk.series[TRAIN_LOSS].values, expected)
    assert brisk.series[VAL_LOSS].steps.tolist() == list(range(40))
    assert brisk.series[VAL_ACC].values[-1] == pytest.approx(0.95)  # from {"val": {"acc"}}
    assert diagnose(brisk).regime == "overfitting"

    long = runs["wandb/long-night-2 [l10tv26h]"]
    assert len(long.series[TRAIN_LOSS]) == 200 and LR in long.series
    assert long.meta["exit_code"] == 1
    assert "the run's process exited with code 1" in long.warnings
    nan = [f for f in diagnose(long).findings if f.code == "nan-loss"]
    assert nan and nan[0].step == 160


def test_a_file_cut_short_is_read_up_to_the_cut(tmp_path: Path) -> None:
    data = LONG.read_bytes()
    cut = tmp_path / "run-cut.wandb"
    cut.write_bytes(data[:40_000])  # into the second block, mid-record
    (item,) = load(cut)
    assert item.run is not None
    assert 0 < len(item.run.series[TRAIN_LOSS]) < 200
    assert any("unfinished record" in w for w in item.run.warnings)


def test_a_damaged_record_stops_the_reading_there(tmp_path: Path) -> None:
    data = bytearray(BRISK.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged = tmp_path / "run-damaged.wandb"
    damaged.write_bytes(bytes(data))
    (item,) = load(damaged)
    assert item.run is not None and 0 < len(item.run.series[TRAIN_LOSS]) < 40
    assert any("damaged or unfinished record" in w for w in item.run.warnings)


def test_not_a_wandb_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "run-x.wandb"
    bad.write_bytes(b"\x00\x01 not W&B")
    assert main(["diagnose", str(bad)]) == 2
    assert f"{bad}: not a training log" in capsys.readouterr().err
    header_only = tmp_path / "run-y.wandb"
    header_only.write_bytes(BRISK.read_bytes()[:7])
    (item,) = load(header_only)
    assert item.error is not None and "no logged numbers" in item.error.problem
