"""MLflow's local tracking store (`mlruns/`), written as MLflow's file store writes it:
one file per metric key under `<experiment id>/<run id>/metrics/`, a line per value,
`<timestamp ms> <value> <step>`."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from lossdoctor.cli import main
from lossdoctor.diagnosis import diagnose
from lossdoctor.run import TRAIN_ACC, TRAIN_LOSS, VAL_LOSS
from lossdoctor.sources import load

T0 = 1_764_400_000_000  # ms


def write_run(root: Path, experiment: tuple[str, str], run_id: str, name: str,
              metrics: dict[str, list[float]], *, steps: bool = True,
              status: int = 3) -> Path:
    exp_id, exp_name = experiment
    exp = root / exp_id
    exp.mkdir(parents=True, exist_ok=True)
    (exp / "meta.yaml").write_text(f"artifact_location: file://{exp}\nexperiment_id: "
                                   f"'{exp_id}'\nlifecycle_stage: active\nname: {exp_name}\n")
    run = exp / run_id
    for sub in ("metrics", "params", "tags", "artifacts"):
        (run / sub).mkdir(parents=True)
    (run / "meta.yaml").write_text(
        f"artifact_uri: file://{run}/artifacts\nend_time: {T0 + 99_000}\nentry_point_name: "
        f"''\nexperiment_id: '{exp_id}'\nlifecycle_stage: active\nrun_id: {run_id}\n"
        f"run_name: {name}\nrun_uuid: {run_id}\nsource_name: ''\nsource_type: 4\n"
        f"source_version: ''\nstart_time: {T0}\nstatus: {status}\ntags: []\nuser_id: me\n")
    (run / "tags" / "mlflow.runName").write_text(name)
    (run / "params" / "learning_rate").write_text("0.01")
    for key, values in metrics.items():
        file = run / "metrics" / key
        file.parent.mkdir(parents=True, exist_ok=True)
        lines = [f"{T0 + 1000 * i} {v}" + (f" {i}" if steps else "")
                 for i, v in enumerate(values)]
        file.write_text("\n".join(lines) + "\n")
    return run


def falling(n: int) -> list[float]:
    return [2.3 * math.exp(-i / 6) + 0.05 for i in range(n)]


def turning_up(n: int) -> list[float]:
    return [2.3 * math.exp(-i / 6) + 0.05 + 0.05 * max(0, i - 10) for i in range(n)]


def test_an_mlruns_folder_of_experiments(tmp_path: Path) -> None:
    mlruns = tmp_path / "mlruns"
    write_run(mlruns, ("0", "Default"), "1c6b2d5b909041df93e6e00b960de019", "wistful-ant-659",
              {"loss": falling(30), "val_loss": turning_up(30), "accuracy": [0.5] * 30})
    write_run(mlruns, ("6067833752", "digits"), "04544bb4a5024c75929124d75f27bfaa",
              "brisk-pond-1", {"train/loss": falling(30), "val/loss": falling(30)})
    (mlruns / ".trash").mkdir()
    loaded = load(mlruns)
    assert [item.error for item in loaded] == [None, None]
    runs = {item.run.name: item.run for item in loaded if item.run is not None}
    assert sorted(runs) == ["Default/wistful-ant-659", "digits/brisk-pond-1"]
    keras_like = runs["Default/wistful-ant-659"]
    assert keras_like.format == "mlflow" and keras_like.meta["status"] == "finished"
    assert keras_like.series[TRAIN_LOSS].steps.tolist() == list(range(30))
    assert TRAIN_ACC in keras_like.series
    assert diagnose(keras_like).regime == "overfitting"
    nested = runs["digits/brisk-pond-1"]
    assert nested.series[VAL_LOSS].values[-1] == pytest.approx(falling(30)[-1])
    assert diagnose(nested).regime != "overfitting"


def test_a_run_folder_given_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = write_run(tmp_path, ("0", "Default"), "abc123", "lucky-sun-2",
                    {"train_loss": [2.302585] * 12})
    # The artifacts are the run's outputs: a CSV there is not another run.
    (run / "artifacts" / "predictions.csv").write_text("epoch,loss\n0,1.0\n1,0.5\n")
    (item,) = load(run)
    assert item.run is not None and item.run.name == "lucky-sun-2"
    assert main(["diagnose", str(run)]) == 1  # a constant loss is critical
    assert "lucky-sun-2" in capsys.readouterr().out


def test_values_logged_without_steps_and_bad_lines(tmp_path: Path) -> None:
    run = write_run(tmp_path, ("0", "Default"), "r1", "old-client", {"loss": falling(10)},
                    steps=False, status=5)
    with (run / "metrics" / "loss").open("a") as f:
        f.write("not a metric line\n")
    (item,) = load(run)
    assert item.run is not None
    series = item.run.series[TRAIN_LOSS]
    assert series.steps.tolist() == list(range(10))  # all at step 0: kept in time order
    assert series.values.tolist() == pytest.approx(falling(10))
    assert any("1 malformed line" in w for w in item.run.warnings)
    assert any("MLflow marks this run killed" in w for w in item.run.warnings)


def test_a_run_that_logged_nothing(tmp_path: Path) -> None:
    run = write_run(tmp_path, ("0", "Default"), "r2", "crashed", {}, status=4)
    (item,) = load(run)
    assert item.run is None and item.error is not None
    assert "no logged metric values" in item.error.problem
