"""Hugging Face Trainer logs: `trainer_state.json` (in every checkpoint folder; its
`log_history` holds a record per logging step and per evaluation, then a summary
whose `train_loss` is the mean of the whole run) and the same records as JSON Lines.
Files are built here in the Trainer's layout (key names as transformers writes them)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from lossdoctor.cli import main
from lossdoctor.diagnosis import diagnose
from lossdoctor.run import LR, TRAIN_LOSS, VAL_ACC, VAL_LOSS, Run
from lossdoctor.sources import load

LOGGING_STEPS, EVAL_STEPS, MAX_STEPS = 10, 100, 1000
STEPS_PER_EPOCH = 250


def log_history(val_loss_at: float = 0.0) -> list[dict[str, float]]:
    """Training loss falling; the evaluation loss falling too, or rising again after
    `val_loss_at` (a fraction of the run) when it is given."""
    rng = np.random.default_rng(0)
    records: list[dict[str, float]] = []
    for step in range(LOGGING_STEPS, MAX_STEPS + 1, LOGGING_STEPS):
        records.append({"epoch": round(step / STEPS_PER_EPOCH, 4),
                        "grad_norm": float(1 + rng.random()),
                        "learning_rate": 5e-5 * (1 - step / MAX_STEPS),
                        "loss": float(2.3 * math.exp(-step / 200) + 0.05
                                      + 0.02 * rng.random()),
                        "step": step})
        if step % EVAL_STEPS == 0:
            t = step / MAX_STEPS
            rise = 2.0 * max(0.0, t - val_loss_at) ** 2 if val_loss_at else 0.0
            records.append({"epoch": round(step / STEPS_PER_EPOCH, 4),
                            "eval_loss": 2.3 * math.exp(-step / 200) + 0.3 + rise,
                            "eval_accuracy": 0.5 + 0.3 * t, "eval_runtime": 3.1,
                            "eval_samples_per_second": 322.5,
                            "eval_steps_per_second": 10.1, "step": step})
    records.append({"epoch": MAX_STEPS / STEPS_PER_EPOCH, "step": MAX_STEPS,
                    "total_flos": 1.3e14, "train_loss": 0.61, "train_runtime": 301.7,
                    "train_samples_per_second": 106.1, "train_steps_per_second": 3.3})
    return records


def trainer_state(path: Path, records: list[dict[str, float]]) -> Path:
    path.write_text(json.dumps({
        "best_metric": None, "best_model_checkpoint": None,
        "epoch": MAX_STEPS / STEPS_PER_EPOCH, "eval_steps": EVAL_STEPS,
        "global_step": MAX_STEPS, "is_hyper_param_search": False,
        "is_local_process_zero": True, "is_world_process_zero": True,
        "log_history": records, "logging_steps": LOGGING_STEPS, "max_steps": MAX_STEPS,
        "num_input_tokens_seen": 0, "num_train_epochs": 4, "save_steps": 500,
        "total_flos": 1.3e14, "train_batch_size": 32, "trial_name": None,
        "trial_params": None}, indent=2))
    return path


def read_one(path: Path) -> Run:
    [loaded] = load(path)
    assert loaded.error is None, loaded.error
    assert loaded.run is not None
    return loaded.run


def test_the_curves_of_a_trainer_state(tmp_path: Path):
    run = read_one(trainer_state(tmp_path / "trainer_state.json", log_history()))
    assert run.format == "hf-trainer-state"
    train = run.get(TRAIN_LOSS)
    # Every logging step, and not the summary's run-wide mean (0.61 at the last step).
    assert train is not None and train.steps.tolist() == list(range(10, 1001, 10))
    assert 0.61 not in train.values.tolist()
    val = run.get(VAL_LOSS)
    assert val is not None and val.steps.tolist() == list(range(100, 1001, 100))
    assert run.get(VAL_ACC) is not None and run.get(LR) is not None
    assert diagnose(run).regime == "still-learning"


def test_an_overfitting_fine_tune_is_found_where_evaluation_turned(tmp_path: Path):
    records = log_history(0.4)
    run = read_one(trainer_state(tmp_path / "trainer_state.json", records))
    d = diagnose(run)
    assert d.regime == "overfitting"
    [finding] = [f for f in d.findings if f.code == "overfitting"]
    evals = [r for r in records if "eval_loss" in r]
    best = min(evals, key=lambda r: r["eval_loss"])
    assert finding.step == best["step"] and finding.epoch == int(best["epoch"])


def test_the_same_records_as_json_lines(tmp_path: Path):
    path = tmp_path / "log_history.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in log_history()) + "\n")
    run = read_one(path)
    train = run.get(TRAIN_LOSS)
    assert train is not None and len(train) == MAX_STEPS // LOGGING_STEPS
    assert 0.61 not in train.values.tolist()


def test_an_empty_log_history_is_one_clear_line(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]):
    path = trainer_state(tmp_path / "trainer_state.json", [])
    assert main(["diagnose", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [f"lossdoctor: {path}: trainer_state.json with an empty "
                                "log_history"]


def test_an_output_folder_is_its_last_checkpoints_log(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]):
    # What `Trainer(output_dir=...)` leaves: checkpoint folders, each with the log so
    # far beside the model's and tokenizer's JSON files, which are not logs.
    records = log_history()
    for step in (500, 1000):
        ckpt = tmp_path / "out" / f"checkpoint-{step}"
        ckpt.mkdir(parents=True)
        trainer_state(ckpt / "trainer_state.json",
                      [r for r in records if r["step"] <= step and "train_runtime" not in r])
        (ckpt / "config.json").write_text(json.dumps(
            {"architectures": ["BertForSequenceClassification"], "hidden_size": 768,
             "id2label": {"0": "NEG", "1": "POS"}, "torch_dtype": "float32"}))
        (ckpt / "tokenizer_config.json").write_text(json.dumps(
            {"do_lower_case": True, "model_max_length": 512}))
        (ckpt / "preprocessor_config.json").write_text(json.dumps(
            {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}))
        (ckpt / "scheduler.json").write_text(json.dumps({"last_epoch": None}))
    (tmp_path / "out" / "all_results.json").write_text(json.dumps(
        {"epoch": 4.0, "eval_accuracy": 0.8, "eval_loss": 0.31, "eval_runtime": 3.1,
         "total_flos": 1.3e14, "train_loss": 0.61, "train_runtime": 301.7,
         "train_samples_per_second": 106.1, "train_steps_per_second": 3.3}, indent=2))
    (tmp_path / "out" / "eval_results.json").write_text(json.dumps(
        {"epoch": 4.0, "eval_accuracy": 0.8, "eval_loss": 0.31, "eval_runtime": 3.1}))
    loaded = load(tmp_path / "out")
    assert [x.error for x in loaded] == [None]
    run = loaded[0].run
    assert run is not None and run.name == "checkpoint-1000/trainer_state.json"
    assert any("checkpoint-500" in w for w in run.warnings)
    assert main(["diagnose", str(tmp_path / "out")]) == 0
    assert "lossdoctor:" not in capsys.readouterr().err
    # Named alone, a config file is still an error of its own.
    assert main(["diagnose", str(tmp_path / "out" / "checkpoint-500" / "config.json")]) == 2
