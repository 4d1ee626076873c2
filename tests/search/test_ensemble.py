"""Ensembles: the vote checked by hand on tiny cases, and a real one from a search."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lossdoctor.search.ensemble import (
    as_probabilities,
    ensemble,
    evaluate,
    majority_vote,
    mean_probability,
)


def test_majority_vote_by_hand() -> None:
    # 3 members, 4 samples, 3 classes. Per sample, the members' argmax classes are:
    #   sample 0: 0, 0, 1  -> mode 0
    #   sample 1: 2, 1, 2  -> mode 2
    #   sample 2: 1, 1, 1  -> mode 1
    #   sample 3: 0, 1, 2  -> three-way tie; mean probabilities .367, .300, .333 -> 0
    a = np.array([[.8, .1, .1], [.1, .2, .7], [.2, .7, .1], [.6, .3, .1]])
    b = np.array([[.6, .3, .1], [.1, .5, .4], [.3, .6, .1], [.3, .4, .3]])
    c = np.array([[.3, .6, .1], [.2, .1, .7], [.1, .8, .1], [.2, .2, .6]])
    assert majority_vote([a, b, c]).tolist() == [0, 2, 1, 0]
    # Mean probability: sample 1 -> (.133, .267, .600) -> 2; sample 3 -> 0 as above.
    assert mean_probability([a, b, c]).argmax(1).tolist() == [0, 2, 1, 0]


def test_vote_ties_go_to_the_higher_mean_probability_then_the_lower_class() -> None:
    # Two members disagree: one vote each for class 2 and class 1.
    a = np.array([[0.1, 0.3, 0.6]])
    b = np.array([[0.1, 0.5, 0.4]])  # mean: 0.1, 0.4, 0.5 -> class 2 wins the tie
    assert majority_vote([a, b]).tolist() == [2]
    # Labels only (no probabilities): the lowest class among the tied ones.
    assert majority_vote([np.array([2, 0]), np.array([1, 0])]).tolist() == [1, 0]


def test_logits_become_probabilities() -> None:
    p = as_probabilities(np.array([[2.0, -1.0, 0.0]]))
    assert p.sum() == pytest.approx(1.0) and p.argmax() == 0


def test_report_counts_members_vote_and_mean_by_hand() -> None:
    y = np.array([0, 1, 2, 1])
    members = {
        "a": np.array([0, 1, 2, 2]),  # 3/4
        "b": np.array([0, 1, 0, 1]),  # 3/4
        "c": np.array([1, 1, 2, 0]),  # 2/4
    }
    # votes: s0 {0,0,1} -> 0 ok; s1 {1,1,1} -> 1 ok; s2 {2,0,2} -> 2 ok;
    # s3 {2,1,0} tie -> lowest class 0, wrong.  3/4.
    report = evaluate(members, y)
    assert report.members == {"a": 0.75, "b": 0.75, "c": 0.5}
    assert report.vote_accuracy == 0.75
    assert report.mean_accuracy is None  # labels only: no mean probability
    assert "vote (mode)" in report.render()


def test_ensemble_of_a_real_search(tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    pytest.importorskip("torch")
    import search_digits

    import lossdoctor
    from lossdoctor.search import Choice, LogUniform

    result = lossdoctor.search(search_digits.train,
                               {"lr": LogUniform(3e-2, 1.0), "momentum": Choice([0.9])},
                               n_trials=4, run_root=tmp_path, progress=False, pruner="none")
    _, _, x_val, y_val = search_digits.data()
    report = lossdoctor.ensemble(result, x_val, y_val.numpy(), k=3)
    assert len(report.members) == 3 and report.samples == len(y_val)
    # Each member's accuracy is what its own model gives on the validation set.
    for name, acc in report.members.items():
        model = result.outputs[int(name.split("-")[1])]["model"]
        own = float((model(x_val).argmax(1) == y_val).float().mean())
        assert acc == pytest.approx(own)
    assert report.vote_accuracy > 0.9 and report.mean_accuracy is not None
    # Snapshots of one run.
    best = result.best
    assert best is not None
    snaps = ensemble(result.outputs[best.number]["snapshots"], x_val, y_val.numpy())
    assert len(snaps.members) == 4
