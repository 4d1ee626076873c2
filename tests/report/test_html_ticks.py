"""Axis ticks in the HTML report: on a log axis spanning less than a decade, round
numbers of the data's scale; labels never repeat (a constant learning rate of 5e-5
had three ticks all reading "5e-5")."""

from __future__ import annotations

import re

import numpy as np

from lossdoctor.diagnosis import diagnose
from lossdoctor.report.html import render_html
from lossdoctor.run import LR, TRAIN_LOSS, Run, Series


def figure(page: str, plot: str) -> str:
    start = page.index(f'data-plot="{plot}"')
    return page[start:page.index("</figure>", start)]


def y_labels(fig: str) -> list[list[str]]:
    """The y tick labels of each drawing in a figure (its linear and log versions)."""
    return [re.findall(r'class="ld-ytick"[^>]*>([^<]*)<', part)
            for part in re.split(r'<g class="ld-(?:lin|log)">', fig)[1:]]


def test_a_constant_learning_rate_has_distinct_tick_labels() -> None:
    steps = np.arange(200)
    run = Run("r", "mem", "csv", {
        TRAIN_LOSS: Series.from_lists(steps, 2.0 / (1.0 + steps / 20.0)),
        LR: Series.from_lists(steps, np.full(200, 5e-5)),
    })
    drawings = y_labels(figure(render_html([diagnose(run)]), "lr"))
    assert drawings
    for labels in drawings:
        assert len(labels) >= 2 and len(set(labels)) == len(labels), labels
        assert all(re.fullmatch(r"[0-9.]+e-5", label) for label in labels), labels


def test_less_than_a_decade_on_a_log_axis_gets_round_ticks() -> None:
    steps = np.arange(100)
    grads = {name: Series.from_lists([0, 50, 99], values) for name, values in
             (("a", [1.5, 1.1, 0.9]), ("b", [0.6, 0.45, 0.42]))}
    series = {TRAIN_LOSS: Series.from_lists(steps, 2.0 / (1.0 + steps / 20.0))}
    series.update({f"layer/{n}/grad_norm": s for n, s in grads.items()})
    run = Run("r", "mem", "lossdoctor", series,
              meta={"layers": [{"name": "a"}, {"name": "b"}]})
    drawings = y_labels(figure(render_html([diagnose(run)]), "grad-norm"))
    assert drawings and all(drawings)
    for labels in drawings:
        assert all(re.fullmatch(r"\d+(\.\d{1,2})?", label) for label in labels), labels
