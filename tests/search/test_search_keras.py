"""A real small Keras search (examples/search_digits_keras.py, in-process): every
trial is a lossdoctor run, and hopeless settings are pruned with their reasons."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("optuna")
pytest.importorskip("keras")

import search_digits_keras  # examples/ is on sys.path: tests/conftest.py

import lossdoctor
from lossdoctor.search import Choice, TrialReporter
from lossdoctor.sources import Options, load

# One setting per trial, by trial number, so what each trial meets does not depend
# on the sampler: two good learning rates first (the reference curves), then one so
# small that the loss stays at chance level (ln 10), and one so large that the
# weights overflow float32 and the loss is NaN from the first epoch. (At lr=1e6 Keras
# only saturates: its cross-entropy clips the probabilities, so the loss stays finite.)
SETTINGS = [{"lr": 0.3, "momentum": 0.9}, {"lr": 0.1, "momentum": 0.9},
            {"lr": 1e-6, "momentum": 0.5}, {"lr": 1e8, "momentum": 0.99}]
EPOCHS = 5


def by_trial(params: dict[str, Any], reporter: TrialReporter) -> Any:
    assert reporter.number is not None
    return search_digits_keras.train({**params, **SETTINGS[reporter.number]}, reporter)


def test_keras_search_prunes_hopeless_trials_with_reasons(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search_digits_keras, "EPOCHS", EPOCHS)
    result = lossdoctor.search(by_trial, {"lr": Choice([0.3]), "momentum": Choice([0.9])},
                               n_trials=len(SETTINGS), run_root=tmp_path,
                               objective="val_loss", progress=False)
    good, other, slow, blown = result.trials
    assert (good.state, other.state) == ("complete", "complete")
    assert good.epochs == other.epochs == EPOCHS
    # Stuck at chance while the good trials are far below: stopped at the third epoch,
    # as soon as its own curve can be read.
    assert (slow.state, slow.reason, slow.epochs) == ("pruned", "plateau", 3)
    # NaN needs no comparison and no waiting: stopped at the first epoch.
    assert (blown.state, blown.reason, blown.epochs) == ("pruned", "nan-loss", 1)
    assert result.prune_reasons() == {"plateau": 1, "nan-loss": 1}
    assert result.best is not None and result.best.number in (0, 1)
    assert result.epochs_trained == 2 * EPOCHS + 3 + 1
    # Every trial is a lossdoctor run: its folder loads, with a curve per reported epoch
    # and the reason it stopped.
    for trial in result.trials:
        assert trial.run_dir is not None
        [loaded] = load(trial.run_dir, Options())
        assert loaded.run is not None
        assert len(loaded.run.series["val/loss"]) == trial.epochs
        assert "train/loss" in loaded.run.series
        meta = json.loads((Path(trial.run_dir) / "run.json").read_text())
        if trial.state == "pruned":
            assert meta["stopped"]["reason"] == trial.reason
            assert result.study.trials[trial.number].user_attrs["prune_reason"] == trial.reason
    # The completed trials returned Keras models (kept for ensembles).
    assert sorted(result.outputs) == [0, 1]
