"""Histograms over time in the report: the data step (rebinning onto shared bins,
normalized per step) and the drawing (one heatmap figure per histogram tag)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lossdoctor.diagnosis import diagnose
from lossdoctor.report import plotdata as pd
from lossdoctor.report.html import histogram_colors, render_html, write_html_report
from lossdoctor.run import TRAIN_LOSS, Histogram, Run, Series
from lossdoctor.sources.tbwriter import histogram_of


def _hist(step: int, values: np.ndarray, bins: int = 10) -> Histogram:
    f = histogram_of(values, bins)
    return Histogram(step=step, bucket_limit=f.bucket_limit, bucket=f.bucket,
                     min=f.minimum, max=f.maximum, num=f.num)


def _run(n_hist: int = 5) -> Run:
    rng = np.random.default_rng(0)
    steps = np.arange(100)
    run = Run(name="with-hists", source="mem", format="lossdoctor",
              series={TRAIN_LOSS: Series.from_lists(steps, 1.0 / (steps + 1.0))})
    run.histograms["layer/fc1/weight_hist"] = [
        _hist(20 * k, rng.normal(loc=k, scale=1.0, size=500)) for k in range(n_hist)]
    run.histograms["layer/fc1/grad_hist"] = [_hist(0, np.full(10, 3.0))]
    return run


def test_histogram_panels_data_step() -> None:
    panels = pd.histogram_panels(_run(), bins=16)
    assert [(p.layer, p.kind) for p in panels] == [("fc1", "weight_hist"), ("fc1", "grad_hist")]
    w = panels[0]
    assert w.tag == "layer/fc1/weight_hist"
    assert w.steps.tolist() == [0, 20, 40, 60, 80]
    assert w.edges.shape == (17,) and w.density.shape == (5, 16)
    assert np.allclose(w.density.sum(axis=1), 1.0) and (w.density >= 0).all()
    # The distribution moves up by 1 per histogram: its mean over the bins follows.
    centers = (w.edges[:-1] + w.edges[1:]) / 2
    means = w.density @ centers
    assert np.allclose(np.diff(means), 1.0, atol=0.15)
    # A constant tensor: all its mass in one bin.
    g = panels[1]
    assert g.density.shape == (1, 16) and g.density.max() == pytest.approx(1.0)


def test_histogram_panels_limits_columns_and_skips_bad() -> None:
    run = _run(n_hist=300)
    run.histograms["weird"] = [Histogram(0, np.array([np.nan]), np.array([1.0]), 0.0, 1.0, 1.0)]
    run.histograms["empty"] = [_hist(0, np.array([np.nan]))]
    panels = pd.histogram_panels(run, columns=50)
    tags = [p.tag for p in panels]
    assert "weird" not in tags
    w = panels[0]
    assert w.steps.shape == (50,) and w.steps[0] == 0 and w.steps[-1] == 20 * 299
    e = next(p for p in panels if p.tag == "empty")
    assert e.layer == "empty" and e.kind == "" and not e.density.any()
    assert pd.histogram_panels(Run("r", "s", "csv")) == ()


def test_histogram_panel_titles_from_keras_tags() -> None:
    run = Run("r", "s", "tensorboard")
    for tag in ("train/sequential/dense_1/kernel/histogram", "layer/conv/act_hist",
                "odd/histogram"):
        run.histograms[tag] = [_hist(0, np.arange(10.0))]
    assert [(p.layer, p.kind) for p in pd.histogram_panels(run)] == [
        ("sequential/dense_1", "kernel"), ("conv", "act_hist"), ("odd/histogram", "")]


def test_histogram_colors_shade_by_density() -> None:
    density = np.array([[0.0, 0.25, 0.75], [1.0, 0.0, 0.0]])  # 2 steps x 3 bins
    px = histogram_colors(density)
    assert px.shape == (3, 2, 3)
    assert px[2, 0].tolist() == [255, 255, 255]  # bottom row = lowest bin, empty
    assert px[0, 0].tolist() == [30, 58, 138]  # densest bin of step 0, top row
    assert px[2, 1].tolist() == [30, 58, 138]


def test_report_has_histogram_figures() -> None:
    html = render_html([diagnose(_run())])
    assert "Histograms over time" in html
    assert 'data-plot="hist:layer/fc1/weight_hist"' in html
    assert 'data-plot="hist:layer/fc1/grad_hist"' in html
    assert "fc1 · weights" in html and "fc1 · gradients" in html
    plain = _run()
    plain.histograms.clear()
    assert "Histograms over time" not in render_html([diagnose(plain)])


def test_histogram_figures_draw_in_chromium(tmp_path: Path) -> None:
    from chromium import Chromium  # fails with the install command when missing

    path = write_html_report([diagnose(_run())], [], tmp_path / "h.html")
    with Chromium(width=1280, height=2000) as browser:
        browser.load(path)
        browser.after_paint()
        boxes = browser.evaluate(
            "Array.from(document.querySelectorAll('figure.ld-hist svg image'))"
            ".map(i => { const r = i.getBoundingClientRect(); "
            "return [r.width, r.height, i.href.baseVal.length]; })")
        browser.drain()
        assert browser.errors == [], browser.errors
    assert len(boxes) == 2
    assert all(w > 100 and h > 50 and n > 100 for w, h, n in boxes)


def test_histogram_panels_follow_the_layers_depth_then_kind() -> None:
    # Written head first (its base was frozen in a first stage): drawn input side first,
    # each layer's weights, gradients, activations together; other tags after them.
    rng = np.random.default_rng(0)
    run = Run(name="stages", source="mem", format="lossdoctor",
              series={TRAIN_LOSS: Series.from_lists([0, 1], [1.0, 0.5]),
                      "layer/head/weight_norm": Series.from_lists([0], [1.0]),
                      "layer/base/weight_norm": Series.from_lists([1], [1.0])},
              meta={"layers": [{"name": "base"}, {"name": "head"}]})
    for tag in ("layer/head/grad_hist", "layer/head/weight_hist", "keras/other/histogram",
                "layer/base/act_hist", "layer/base/weight_hist"):
        run.histograms[tag] = [_hist(0, rng.normal(size=50))]
    assert [p.tag for p in pd.histogram_panels(run)] == [
        "layer/base/weight_hist", "layer/base/act_hist", "layer/head/weight_hist",
        "layer/head/grad_hist", "keras/other/histogram"]
    page = render_html([diagnose(run)])
    assert "1 histogram; shade" in page and "1 histograms" not in page
