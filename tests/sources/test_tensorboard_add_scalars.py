"""`SummaryWriter.add_scalars` (PyTorch, tensorboardX): each key of the dict is written
into its own subfolder of the run (`loss_train/`, `loss_val/`), all under the one tag
`loss`. Those folders are parts of their parent's run, not runs of their own."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from lossdoctor.run import LR, TRAIN_LOSS, VAL_LOSS
from lossdoctor.sources import load
from lossdoctor.sources.tbwriter import encode_scalar_event, frame_records
from lossdoctor.sources.tensorboard import is_tensorboard_run_dir, read_tensorboard_run

torch_tb = pytest.importorskip("torch.utils.tensorboard")


def curves(step: int) -> tuple[float, float]:
    """A training loss that keeps falling and a validation loss that turns up."""
    train = 2.0 * math.exp(-step / 8) + 0.1
    return train, train + 0.03 * max(0, step - 10)


def write_add_scalars(logdir: Path, main_tag: str, keys: tuple[str, str],
                      with_lr: bool = True) -> None:
    writer = torch_tb.SummaryWriter(str(logdir))
    for step in range(30):
        train, val = curves(step)
        writer.add_scalars(main_tag, {keys[0]: train, keys[1]: val}, step)
        if with_lr:
            writer.add_scalar("lr", 0.01, step)
    writer.close()


def test_add_scalars_folders_are_one_run(tmp_path: Path) -> None:
    write_add_scalars(tmp_path / "runs" / "exp1", "loss", ("train", "val"))
    run_dir = tmp_path / "runs" / "exp1"
    assert sorted(p.name for p in run_dir.iterdir() if p.is_dir()) == ["loss_train", "loss_val"]

    loaded = load(tmp_path / "runs")
    assert [item.error for item in loaded] == [None]  # the parent alone held only lr
    (run,) = [item.run for item in loaded]
    assert run is not None and run.name == "exp1"
    assert run.series[TRAIN_LOSS].values[-1] == pytest.approx(curves(29)[0], rel=1e-6)
    assert run.series[VAL_LOSS].values[-1] == pytest.approx(curves(29)[1], rel=1e-6)
    assert LR in run.series


def test_main_tag_with_a_slash_and_no_other_scalars(tmp_path: Path) -> None:
    write_add_scalars(tmp_path, "Loss/epoch", ("training", "validation"), with_lr=False)
    assert is_tensorboard_run_dir(tmp_path)
    run = read_tensorboard_run(tmp_path)
    assert {"extra/Loss/epoch/training", "extra/Loss/epoch/validation"}.isdisjoint(run.series)
    assert len(run.series[TRAIN_LOSS].values) == len(run.series[VAL_LOSS].values) == 30
    assert run.series[VAL_LOSS].values[-1] > run.series[TRAIN_LOSS].values[-1]


def test_diagnosis_sees_the_validation_curve(tmp_path: Path) -> None:
    from lossdoctor.diagnosis import diagnose

    write_add_scalars(tmp_path / "exp", "loss", ("train", "val"))
    (item,) = load(tmp_path / "exp")
    assert item.run is not None
    assert diagnose(item.run).regime == "overfitting"


def test_sub_runs_named_with_underscores_stay_runs(tmp_path: Path) -> None:
    """A sweep's runs (`lr_0.1/`, `lr_0.01/`), one `loss` tag each, are not
    `add_scalars` folders: their names do not start with the tag."""
    for name, scale in (("lr_0.1", 1.0), ("lr_0.01", 2.0)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "events.out.tfevents.1.x").write_bytes(frame_records(
            [encode_scalar_event("loss", scale / (s + 1), s, 0.0) for s in range(5)]))
    (tmp_path / "events.out.tfevents.1.root").write_bytes(frame_records(
        [encode_scalar_event("loss", 3.0, 0, 0.0)]))
    names = sorted(item.run.name for item in load(tmp_path) if item.run is not None)
    assert names == sorted([tmp_path.resolve().name, "lr_0.01", "lr_0.1"])


def test_a_folder_with_several_tags_is_not_an_add_scalars_folder(tmp_path: Path) -> None:
    """`loss_sweep/` holds `loss` and `accuracy`: a run of its own, even though its name
    starts with one of its tags."""
    sub = tmp_path / "loss_sweep"
    sub.mkdir()
    (sub / "events.out.tfevents.1.x").write_bytes(frame_records(
        [encode_scalar_event(tag, 1.0 / (s + 1), s, 0.0)
         for s in range(5) for tag in ("loss", "accuracy")]))
    (tmp_path / "events.out.tfevents.1.root").write_bytes(frame_records(
        [encode_scalar_event("loss", 3.0, s, 0.0) for s in range(5)]))
    assert len([item for item in load(tmp_path) if item.run is not None]) == 2
