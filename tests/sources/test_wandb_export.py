"""Weights & Biases panel exports: one CSV, several runs side by side as
`<run> - <metric>` columns with `__MIN`/`__MAX` bounds, empty where a run has no point."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from lossdoctor.diagnosis import diagnose
from lossdoctor.run import TRAIN_LOSS, VAL_LOSS
from lossdoctor.sources import load
from lossdoctor.sources.tabular import read_table_file
from lossdoctor.sources.wandb_export import runs_in_header


def write_export(path: Path, runs: dict[str, dict[str, list[float | None]]],
                 x: str = "Step", x_values: list[int] | None = None) -> Path:
    """A panel export as W&B writes it: every cell quoted, value then bounds."""
    n = max(len(v) for metrics in runs.values() for v in metrics.values())
    xs = x_values if x_values is not None else [10 * i for i in range(n)]
    header = [x]
    for run, metrics in runs.items():
        for metric in metrics:
            header += [f"{run} - {metric}", f"{run} - {metric}__MIN", f"{run} - {metric}__MAX"]
    with path.open("w", newline="") as f:
        writer = csv.writer(f, quoting=csv.QUOTE_ALL)
        writer.writerow(header)
        for i in range(n):
            row: list[object] = [xs[i]]
            for metrics in runs.values():
                for values in metrics.values():
                    v = values[i] if i < len(values) else None
                    row += ["", "", ""] if v is None else [v, v, v]
            writer.writerow(row)
    return path


def falling(n: int) -> list[float | None]:
    return [2.3 * math.exp(-i / 8) + 0.1 for i in range(n)]


def turning_up(n: int) -> list[float | None]:
    return [2.3 * math.exp(-i / 8) + 0.1 + 0.04 * max(0, i - 12) for i in range(n)]


def test_each_run_of_the_export_is_a_run(tmp_path: Path) -> None:
    path = write_export(tmp_path / "wandb_export_2026-11-29.csv", {
        "brisk-pond-1": {"train/loss": falling(40), "val/loss": turning_up(40)},
        "lucky-sun-2": {"train/loss": falling(25), "val/loss": falling(25)},  # stopped early
    })
    runs = read_table_file(path)
    assert [r.name for r in runs] == ["wandb_export_2026-11-29#brisk-pond-1",
                                      "wandb_export_2026-11-29#lucky-sun-2"]
    assert {r.format for r in runs} == {"wandb-csv"}
    first, second = runs
    assert first.series[TRAIN_LOSS].steps.tolist() == [10 * i for i in range(40)]
    assert len(second.series[TRAIN_LOSS]) == len(second.series[VAL_LOSS]) == 25
    assert first.series[VAL_LOSS].values[-1] == pytest.approx(turning_up(40)[-1])
    assert diagnose(first).regime == "overfitting"
    assert diagnose(second).regime != "overfitting"


def test_grouped_runs_and_an_epoch_axis(tmp_path: Path) -> None:
    path = write_export(tmp_path / "export.csv", {
        "Group: sweep-a": {"train_loss": falling(30)},
        "Group: sweep-b": {"train_loss": [2.302585] * 30},
    }, x="epoch", x_values=list(range(30)))
    by_name = {item.run.name: item.run for item in load(path.parent) if item.run is not None}
    assert sorted(by_name) == ["export.csv#sweep-a", "export.csv#sweep-b"]
    assert by_name["export.csv#sweep-a"].series[TRAIN_LOSS].epochs is not None
    codes = {f.code for f in diagnose(by_name["export.csv#sweep-b"]).findings}
    assert "constant-loss" in codes


def test_columns_with_a_dash_are_not_an_export(tmp_path: Path) -> None:
    """Without the bounds, `loss - smoothed` is an ordinary column name: one run."""
    path = tmp_path / "log.csv"
    path.write_text("epoch,loss,loss - smoothed,val_loss\n"
                    + "".join(f"{i},{2 / (i + 1)},{2 / (i + 1)},{2.2 / (i + 1)}\n"
                              for i in range(10)))
    (run,) = read_table_file(path)
    assert run.format == "keras-csv"
    assert runs_in_header(["epoch", "loss", "loss - smoothed", "val_loss"]) is None
    assert runs_in_header(["Step", "a - loss", "a - loss__MIN", "a - loss__MAX"]) == {
        "a": [(1, "loss")]}


def test_override_names_the_metric(tmp_path: Path) -> None:
    path = write_export(tmp_path / "export.csv", {
        "run-1": {"objective_ema": falling(20), "holdout": turning_up(20)},
    })
    (run,) = read_table_file(path, train_loss="objective_ema", val_loss="holdout")
    assert run.name == "export#run-1"
    assert len(run.series[TRAIN_LOSS]) == len(run.series[VAL_LOSS]) == 20


def test_a_runs_exports_from_two_panels_are_read_as_that_run(tmp_path: Path) -> None:
    """Training loss exported from one panel, validation loss from another: each W&B
    run is one run with both, so the turn of its validation loss is seen."""
    folder = tmp_path / "project" / "sweep"
    folder.mkdir(parents=True)
    write_export(folder / "train_loss.csv", {"brisk-pond-1": {"train/loss": falling(40)},
                                             "lucky-sun-2": {"train/loss": falling(40)},
                                             "only-train-3": {"train/loss": falling(40)}})
    write_export(folder / "val_loss.csv", {"brisk-pond-1": {"val/loss": turning_up(40)},
                                           "lucky-sun-2": {"val/loss": falling(40)}},
                 x_values=[10 * i + 5 for i in range(40)])
    items = load(tmp_path / "project")
    runs = {i.run.name: i.run for i in items if i.run is not None}
    assert sorted(runs) == ["sweep/brisk-pond-1", "sweep/lucky-sun-2",
                            "sweep/train_loss.csv#only-train-3"]
    brisk = runs["sweep/brisk-pond-1"]
    assert brisk.format == "wandb-csv" and brisk.warnings == []
    assert len(brisk.series[TRAIN_LOSS]) == 40
    assert brisk.series[VAL_LOSS].steps.tolist() == [10 * i + 5 for i in range(40)]
    assert brisk.meta["files"] == [str(folder / "train_loss.csv"), str(folder / "val_loss.csv")]
    assert diagnose(brisk).regime == "overfitting"
    assert diagnose(runs["sweep/lucky-sun-2"]).regime != "overfitting"


def test_a_series_in_two_exports_is_kept_once_with_a_warning(tmp_path: Path) -> None:
    write_export(tmp_path / "a.csv", {"run-1": {"train/loss": falling(10)}})
    write_export(tmp_path / "b.csv", {"run-1": {"train/loss": falling(30),
                                                "val/loss": falling(30)}})
    (item,) = load(tmp_path)
    assert item.run is not None and item.run.name == "run-1"
    assert len(item.run.series[TRAIN_LOSS]) == 30
    assert item.run.warnings == ["train/loss is in more than one export; kept the one with "
                                 "more points"]


def test_exports_in_different_folders_stay_apart(tmp_path: Path) -> None:
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
    write_export(tmp_path / "a" / "train.csv", {"run-1": {"train/loss": falling(20)}})
    write_export(tmp_path / "b" / "val.csv", {"run-1": {"val/loss": falling(20)}})
    names = sorted(i.run.name for i in load(tmp_path) if i.run is not None)
    assert names == ["a/train.csv#run-1", "b/val.csv#run-1"]


def test_run_names_with_dots_are_joined_too(tmp_path: Path) -> None:
    """W&B run names are free text (`lr-0.1.seed-2`): a dot is not a restarted part."""
    write_export(tmp_path / "train.csv", {"lr-0.1.seed-2": {"train/loss": falling(20)}})
    write_export(tmp_path / "val.csv", {"lr-0.1.seed-2": {"val/loss": falling(20)}})
    (item,) = load(tmp_path)
    assert item.run is not None and item.run.name == "lr-0.1.seed-2"
    assert set(item.run.series) == {TRAIN_LOSS, VAL_LOSS}
