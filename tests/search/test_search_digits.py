"""Real small searches: PyTorch MLPs on scikit-learn's digits (examples/search_digits.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("optuna")
torch = pytest.importorskip("torch")

import search_digits  # noqa: E402  (examples/ is on sys.path: tests/conftest.py)

import lossdoctor  # noqa: E402
from lossdoctor.cli import main  # noqa: E402
from lossdoctor.search import Choice, LogUniform, TrialReporter  # noqa: E402
from lossdoctor.search.reporter import INNER_KEPT  # noqa: E402
from lossdoctor.sources import Options, load  # noqa: E402

SGD_FIXED_MOMENTUM = Choice([0.9])


def fixed_init(params: dict[str, Any], reporter: TrialReporter) -> Any:
    """The example's train with the same initialization in every trial: at tiny
    learning rates the init's noise would otherwise outweigh the lr's effect."""
    reporter.seed = 0
    return search_digits.train({**params, "epochs": 10}, reporter)


def test_edge_warning_fires_when_the_optimum_is_above_the_range_and_extend_widens(
        tmp_path: Path) -> None:
    # SGD on digits wants lr around 0.1-1: every lr in [1e-6, 1e-4] is too small, so
    # the best one is the largest tried (with seed 0 the sampler reaches the top 10%).
    result = lossdoctor.search(fixed_init,
                               {"lr": LogUniform(1e-6, 1e-4), "momentum": SGD_FIXED_MOMENTUM},
                               n_trials=12, run_root=tmp_path, extend=True, max_rounds=2,
                               progress=False)
    [first] = result.rounds
    assert [f.code for f in first.findings] == ["search-best-at-boundary"]
    finding = first.findings[0]
    assert finding.evidence["parameter"] == "lr"
    assert finding.evidence["edge"] == "upper"
    assert finding.evidence["widened"] == "LogUniform(1e-06, 0.01)"
    # The second round searched the widened range, in a study of its own, and did better.
    assert result.study_name == "fixed_init-r2"
    assert result.space["lr"].describe() == "LogUniform(1e-06, 0.01)"
    assert result.best is not None and first.best is not None
    assert (result.best.value or 0) < (first.best.value or 0)
    # Every trial is a lossdoctor run that `diagnose` reads.
    best = result.best
    assert best.run_dir is not None
    [loaded] = load(best.run_dir, Options())
    assert loaded.run is not None and len(loaded.run.series["val/loss"]) == best.epochs


def test_no_edge_warning_when_the_optimum_is_inside(tmp_path: Path) -> None:
    result = lossdoctor.search(search_digits.train,
                               {"lr": LogUniform(1e-3, 1e1), "momentum": SGD_FIXED_MOMENTUM},
                               n_trials=8, run_root=tmp_path, progress=False)
    assert result.best is not None
    assert 0.02 < result.best.params["lr"] < 2.0
    assert result.findings == []


def _softmax_regression(params: dict[str, Any], reporter: TrialReporter) -> None:
    """Full-batch gradient descent with a naive float32 softmax: a huge lr overflows
    exp() within an epoch or two and the loss turns to NaN."""
    x_tr, y_tr, x_val, y_val = (t.numpy() for t in search_digits.data())
    rng = np.random.default_rng(reporter.seed)
    w = (rng.normal(size=(64, 10)) * 0.01).astype(np.float32)
    onehot = np.eye(10, dtype=np.float32)[y_tr]

    def loss_of(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        with np.errstate(all="ignore"):
            e = np.exp(x @ w)
            p = e / e.sum(axis=1, keepdims=True)
            return float(-np.log(p[np.arange(len(y)), y]).mean()), p

    for epoch in range(12):
        train_loss, p = loss_of(x_tr, y_tr)
        with np.errstate(all="ignore"):
            w = w - np.float32(params["lr"]) * (x_tr.T @ (p - onehot) / len(y_tr))
        val_loss, pv = loss_of(x_val, y_val)
        reporter.report(epoch, train_loss=train_loss, val_loss=val_loss,
                        val_accuracy=float((pv.argmax(1) == y_val).mean()))


def test_a_diverging_trial_is_pruned_with_its_reason(tmp_path: Path) -> None:
    result = lossdoctor.search(_softmax_regression, {"lr": Choice([1e6])}, n_trials=1,
                               run_root=tmp_path, progress=False)
    [trial] = result.trials
    assert trial.state == "pruned"
    assert trial.reason == "nan-loss"
    assert trial.epochs < 12
    frozen = result.study.trials[0]
    assert frozen.user_attrs["prune_reason"] == "nan-loss"
    # The run folder says so too.
    meta = json.loads((Path(trial.run_dir or "") / "run.json").read_text())
    assert meta["stopped"]["reason"] == "nan-loss"


def test_combined_pruner_marks_trials_only_the_diagnosis_stopped(tmp_path: Path) -> None:
    # MedianPruner waits for 5 finished trials: the first trial's NaN is the
    # diagnosis' call alone, recorded for the median's view of the study.
    result = lossdoctor.search(_softmax_regression, {"lr": Choice([1e6])}, n_trials=1,
                               run_root=tmp_path, progress=False, pruner="diagnosis+median")
    frozen = result.study.trials[0]
    assert frozen.user_attrs["prune_reason"] == "nan-loss"
    assert frozen.user_attrs[INNER_KEPT] is True


def test_hopeless_trials_are_pruned_and_save_epochs(tmp_path: Path) -> None:
    result = lossdoctor.search(search_digits.train, search_digits.SPACE, n_trials=10,
                               run_root=tmp_path, progress=False)
    reasons = result.prune_reasons()
    assert reasons, result.counts()
    assert set(reasons) <= {"nan-loss", "softmax-overflow", "diverging", "constant-loss",
                            "plateau", "lr-too-low"}
    assert result.epochs_trained < 10 * search_digits.EPOCHS


def test_cli_search_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = str(Path(search_digits.__file__)) + ":train"
    code = main(["search", target, "--trials", "3", "--run-root", str(tmp_path),
                 "--format", "json", "--pruner", "diagnosis+median"])
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert code in (0, 1)
    assert out["n_trials"] == 3 and len(out["trials"]) == 3
    assert out["storage"] == f"sqlite:///{tmp_path / 'study.db'}"
    progress = [json.loads(line) for line in captured.err.splitlines()]
    assert [p["done"] for p in progress] == [1, 2, 3]
    # Rerunning the same command joins the finished study: n_trials is a total.
    assert main(["search", target, "--trials", "3", "--run-root", str(tmp_path),
                 "--format", "json"]) in (0, 1)
    assert len(json.loads(capsys.readouterr().out)["trials"]) == 3


def test_cli_search_bad_target(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", "no_such_module_xyz:train"]) == 2
    assert "cannot import module" in capsys.readouterr().err
