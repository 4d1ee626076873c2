"""The search page: each hyperparameter against the objective, log scale for log
ranges, the edges marked, and an ensemble against its members; drawn in Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("optuna")
pytest.importorskip("torch")

import search_digits
from chromium import Chromium

import lossdoctor
from lossdoctor.report.searchplot import ensemble_bars, parameter_plots
from lossdoctor.search import Choice, LogUniform, TrialReporter


def short_train(params: dict[str, Any], reporter: TrialReporter) -> Any:
    reporter.seed = 0
    return search_digits.train({**params, "epochs": 5}, reporter)


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> Any:
    # Every lr in [1e-6, 1e-4] is too small for SGD on digits: the best sits on the
    # upper edge (as in tests/search), which the page must show.
    return lossdoctor.search(short_train,
                             {"lr": LogUniform(1e-6, 1e-4), "momentum": Choice([0.9])},
                             n_trials=12, run_root=tmp_path_factory.mktemp("search"),
                             progress=False)


def test_parameter_plot_data(result: Any) -> None:
    [plot] = parameter_plots(result)  # the momentum choice has no axis
    assert plot.name == "lr" and plot.log and (plot.low, plot.high) == (1e-6, 1e-4)
    reported = [t for t in result.trials if t.value is not None or t.metrics.get("val_loss")]
    assert len(plot.points) == len(reported)
    assert plot.best is not None and plot.best.number == result.best.number
    assert plot.edge == "upper" and plot.widened == "LogUniform(1e-06, 0.01)"


def test_ensemble_bars_follow_the_report() -> None:
    from lossdoctor.search.ensemble import EnsembleReport

    report = EnsembleReport({"a": 0.9, "b": 0.8}, vote_accuracy=0.93, mean_accuracy=0.94,
                            samples=100)
    assert [(b.label, b.kind) for b in ensemble_bars(report)] == [
        ("a", "member"), ("b", "member"), ("majority vote", "vote"),
        ("mean probability", "mean")]


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    with Chromium() as chromium:
        yield chromium


def test_search_page_draws_in_chromium(result: Any, browser: Chromium,
                                       tmp_path: Path) -> None:
    x_val, y_val = search_digits.data()[2:]
    ens = lossdoctor.ensemble(result, x_val.numpy(), y_val.numpy(), k=3)
    path = result.save_html(tmp_path / "search.html", ens)
    browser.errors.clear()
    browser.load(path)
    browser.after_paint()
    circles = browser.evaluate("document.querySelectorAll('circle.ld-trial').length")
    assert circles == len(parameter_plots(result)[0].points)
    assert browser.evaluate("document.querySelectorAll('line.ld-edge-hit').length") == 1
    assert browser.evaluate("document.querySelectorAll('tr.ld-ens-vote').length") == 1
    text = browser.evaluate("document.body.innerText")
    assert "search-best-at-boundary" in text and "upper edge" in text
    browser.drain()
    assert browser.errors == []
    with pytest.raises(FileExistsError):
        result.save_html(path)
