"""The data step of the HTML report, tested without drawing anything."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from synthetic import layered_diagnosis, million_point_run

from lossdoctor.diagnosis import Diagnosis, diagnose
from lossdoctor.findings import make_finding
from lossdoctor.report import plotdata as pd
from lossdoctor.run import TRAIN_ACC, TRAIN_LOSS, VAL_ACC, VAL_LOSS, Run, Series
from lossdoctor.sources import load


def _tb_diagnosis(run_dir: Path) -> Diagnosis:
    (item,) = [i for i in load(run_dir / "tb") if i.run is not None]
    assert item.run is not None
    return diagnose(item.run)


# --- downsampling ------------------------------------------------------------------


def test_downsample_keeps_every_buckets_min_and_max() -> None:
    rng = np.random.default_rng(1)
    x = np.arange(100_000, dtype=np.float64)
    y = rng.standard_normal(x.size)
    buckets = 100
    ox, oy = pd.downsample_minmax(x, y, buckets)
    assert ox.size <= 2 * buckets + 2
    assert np.all(np.diff(ox) > 0)  # original order
    # Every kept point is an original point.
    assert np.array_equal(oy, y[ox.astype(np.int64)])
    for b in range(buckets):
        inside = (x >= b * 1000) & (x < (b + 1) * 1000)
        kept = oy[(ox >= b * 1000) & (ox < (b + 1) * 1000)]
        assert y[inside].min() in kept and y[inside].max() in kept


def test_downsample_keeps_a_single_spike_among_a_million_points() -> None:
    run = million_point_run()
    loss = run.series[TRAIN_LOSS]
    ox, oy = pd.downsample_minmax(loss.steps, loss.values, 600)
    assert ox.size <= 1202
    assert oy.max() == loss.values.max() == 40.0
    assert oy.min() == loss.values.min()
    assert ox[0] == 0 and ox[-1] == len(loss) - 1


def test_downsample_returns_small_series_unchanged() -> None:
    x, y = np.arange(10.0), np.linspace(3, 1, 10)
    ox, oy = pd.downsample_minmax(x, y, 100)
    assert np.array_equal(ox, x) and np.array_equal(oy, y)


def test_downsample_breaks_the_line_at_nan_instead_of_bridging_it() -> None:
    y = np.linspace(2.0, 1.0, 5000)
    y[2000:3000] = np.nan
    y[4000] = np.inf
    ox, oy = pd.downsample_minmax(np.arange(5000.0), y, 50)
    breaks = np.flatnonzero(np.isnan(oy))
    assert breaks.size == 2  # one per non-finite stretch
    assert np.isnan(ox[breaks]).all()
    before, after = ox[breaks[0] - 1], ox[breaks[0] + 1]
    assert before < 2000 and after >= 3000
    assert np.isfinite(oy[~np.isnan(oy)]).all()


def test_downsample_of_nothing_finite_is_empty() -> None:
    ox, oy = pd.downsample_minmax(np.arange(4.0), np.full(4, np.nan), 10)
    assert ox.size == oy.size == 0


def test_downsample_states_its_rule_on_bad_arguments() -> None:
    with pytest.raises(ValueError, match="buckets >= 1"):
        pd.downsample_minmax(np.arange(3.0), np.arange(3.0), 0)


def test_nonfinite_spans_cover_the_nan_stretch_to_the_end() -> None:
    s = Series.from_lists([0, 10, 20, 30, 40], [1.0, 0.5, math.nan, math.nan, math.inf])
    (span,) = pd.nonfinite_spans(s, x_end=50.0, name="train loss")
    assert (span.x0, span.x1) == (20.0, 50.0)
    assert span.label == "train loss NaN/inf"


# --- markers ---------------------------------------------------------------------------


def test_markers_sit_where_each_finding_starts_on_a_real_overfitting_run(
    torch_runs: dict[str, Path],
) -> None:
    d = _tb_diagnosis(torch_runs["overfitting"])
    plot = pd.loss_plot(d)
    assert plot is not None
    located = [f for f in d.findings if f.step is not None]
    assert located, d.findings
    for number, f in enumerate(d.findings, 1):
        (m,) = [m for m in plot.markers if m.number == number]
        assert m.x == f.step and m.code == f.code
    regime = [s for s in plot.spans if s.kind == "regime"]
    assert regime and regime[0].label == "overfitting"
    assert regime[0].x0 == next(f.step for f in d.findings if f.code == "overfitting")


def test_nan_run_has_a_nonfinite_span_from_the_first_nan(torch_runs: dict[str, Path]) -> None:
    d = _tb_diagnosis(torch_runs["nan"])
    nan = next(f for f in d.findings if f.code == "nan-loss")
    plot = pd.loss_plot(d)
    assert plot is not None
    spans = [s for s in plot.spans if s.kind == "nonfinite"]
    assert spans[0].x0 == nan.step and spans[0].label.startswith("train loss")
    train = plot.lines[0]
    assert np.nanmax(train.x) < nan.step  # the line stops there, nothing is bridged


def test_epoch_only_finding_sits_at_the_last_step_of_its_epoch() -> None:
    steps = np.arange(40)
    epochs = steps // 10
    run = Run("r", "s", "csv", {
        TRAIN_LOSS: Series(steps, np.linspace(2, 1, 40), epochs),
        VAL_LOSS: Series(np.array([9, 19, 29, 39]), np.array([2.0, 1.8, 1.7, 1.9]),
                         np.arange(4)),
    })
    d = Diagnosis(run, "overfitting", [make_finding("overfitting", epoch=2)])
    (marker,) = pd.finding_markers(d)
    assert marker.x == 29.0 and marker.where == "epoch 2"


def test_epoch_level_logs_use_epochs_as_x() -> None:
    e = np.arange(5)
    run = Run("r", "s", "keras-csv", {TRAIN_LOSS: Series(e, np.linspace(2, 1, 5), e)})
    d = Diagnosis(run, "still-learning", [make_finding("plateau", epoch=3)])
    plot = pd.loss_plot(d)
    assert plot is not None and plot.x_label == "epoch"
    assert plot.markers[0].x == 3.0


# --- numeric signatures -----------------------------------------------------------------


def test_softmax_overflow_signature_says_the_constant_as_an_equation() -> None:
    s = np.arange(50)
    run = Run("r", "s", "csv", {TRAIN_LOSS: Series(
        s, np.r_[np.linspace(2.3, 5, 10), np.full(40, 87.3365)].astype(np.float64))})
    d = diagnose(run)
    plots = pd.run_plots(d)
    (sig,) = plots.signatures.values()
    assert sig.equation == "87.3365 = -ln(FLT_MIN)"
    assert "smallest normal float" in sig.meaning
    assert plots.loss is not None
    assert [h.y for h in plots.loss.hlines] == [pytest.approx(87.3365)]


def test_uniform_output_signature_is_ln_of_the_classes() -> None:
    s = np.arange(40)
    run = Run("r", "s", "csv", {TRAIN_LOSS: Series(s, np.full(40, math.log(10)))})
    sigs = pd.run_plots(diagnose(run)).signatures
    assert [s.equation for s in sigs.values()] == ["2.3026 = ln(10)"]


# --- accuracy, layers --------------------------------------------------------------------


def test_accuracy_gap_is_train_minus_val_at_the_val_points() -> None:
    train = Series.from_lists([0, 10, 20], [0.5, 0.9, 1.0])
    val = Series.from_lists([5, 20], [0.6, 0.75])
    gap = pd.accuracy_gap(train, val)
    assert gap is not None
    assert list(gap.steps) == [5, 20]
    assert gap.values == pytest.approx([0.7 - 0.6, 0.25])


def test_accuracy_plot_carries_the_gap_line_and_a_unit_range() -> None:
    s = np.arange(0, 100, 10)
    run = Run("r", "s", "csv", {TRAIN_ACC: Series(s, np.linspace(0.5, 1.0, 10)),
                                VAL_ACC: Series(s, np.linspace(0.5, 0.8, 10))})
    plot = pd.accuracy_plot(Diagnosis(run, "overfitting"))
    assert plot is not None and plot.y_range == (0.0, 1.0)
    assert [ln.role for ln in plot.lines] == ["train", "val", "gap"]
    assert plot.note == "gap at the end: 20.0 points"


def test_layer_names_may_hold_slashes() -> None:
    run = Run("r", "s", "lossdoctor", {
        "layer/block3/conv/update_ratio": Series.from_lists([0], [1e-3]),
        "layer/head/grad_norm": Series.from_lists([0], [1.0]),
    })
    assert pd.layer_signals(run) == {
        "block3/conv": {"update_ratio": run.series["layer/block3/conv/update_ratio"]},
        "head": {"grad_norm": run.series["layer/head/grad_norm"]},
    }


def test_layers_run_from_input_to_output_as_run_json_lists_them() -> None:
    # Fine-tuning in stages: the head was read first (the base was frozen), so its
    # series come first; the depth plots must still put the base on the input side.
    grads = {name: Series.from_lists([0, 50, 100], [1.0, 0.5, 0.2])
             for name in ("head", "base")}
    run = Run("r", "s", "lossdoctor",
              {f"layer/{name}/grad_norm": s for name, s in grads.items()},
              meta={"layers": [{"name": "base"}, {"name": "head"}]})
    plot = pd.by_depth_plot(diagnose(run), "grad_norm", "grads", "Gradient norm", "norm")
    assert plot is not None and plot.x_ticks == ("base", "head")


def test_heatmap_cell_keeps_the_value_farthest_from_the_healthy_ratio() -> None:
    steps = np.arange(10)
    ratios = np.full(10, 1e-3)
    ratios[3] = 0.5  # one huge update in the first half
    run = Run("r", "s", "lossdoctor", {"layer/fc/update_ratio": Series(steps, ratios)})
    hm = pd.update_ratio_heatmap(Diagnosis(run, "unknown"), columns=2)
    assert hm is not None and hm.rows == ("fc",)
    assert hm.log10_values[0] == pytest.approx([math.log10(0.5), -3.0])
    assert hm.center == -3.0


def test_layered_run_gives_every_layer_plot_in_depth_order() -> None:
    d = layered_diagnosis()
    plots = pd.layer_plots(d)
    keys = [p.key for p in plots]
    assert keys == ["update-ratio", "grad-norm", "act-std", "act-mean", "fractions"]
    heatmap = plots[0]
    assert isinstance(heatmap, pd.Heatmap)
    assert heatmap.rows[0] == "conv1" and heatmap.rows[-1] == "head"
    assert {m.row for m in heatmap.markers} >= {"fc1", "fc2"}
    grad = plots[1]
    assert isinstance(grad, pd.LinePlot) and grad.log_y
    assert grad.x_ticks == heatmap.rows
    fractions = plots[-1]
    assert isinstance(fractions, pd.LinePlot)
    assert fractions.lines[0].label == "fc1 dead"  # the worst first


def test_units_without_gradient_are_drawn_as_dead_units() -> None:
    """A PyTorch model with `F.relu` has no activation layer: its dead units come as
    the zero-gradient share of the Linear layers, drawn with the dead fractions."""
    steps = np.arange(0, 100, 10)
    run = Run("r", "s", "lossdoctor", {
        "layer/fc1/zero_grad_fraction": Series(steps, np.full(10, 0.9)),
        "layer/fc2/zero_grad_fraction": Series(steps, np.zeros(10)),
    }, meta={"layers": [{"name": "fc1", "kind": "linear"}, {"name": "fc2", "kind": "linear"}]})
    plot = pd.fraction_plot(Diagnosis(run, "unknown"))
    assert plot is not None
    assert [line.label for line in plot.lines] == ["fc1 dead (no gradient)",
                                                   "fc2 dead (no gradient)"]
    assert not any(line.dashed for line in plot.lines)


def test_regime_span_ends_with_the_loss_not_with_other_series() -> None:
    e = np.arange(10)
    run = Run("r", "s", "tensorboard", {
        TRAIN_LOSS: Series(e, np.linspace(1, 50, 10), e),
        VAL_LOSS: Series(e, np.linspace(1, 60, 10), e),
        "extra/batch_loss": Series.from_lists(np.arange(2000), np.ones(2000)),
    })
    d = Diagnosis(run, "diverging", [make_finding("diverging", epoch=0)])
    plot = pd.loss_plot(d)
    assert plot is not None
    (span,) = plot.spans
    assert (span.x0, span.x1) == (0.0, 9.0)


def test_skipped_steps_get_their_own_plot_with_the_finding_marked() -> None:
    from lossdoctor.run import SKIPPED_STEPS, TRAIN_LOSS_STEP

    skipped = [s for s in range(300) if s % 10]
    steps = np.arange(300)
    run = Run("r", "mem", "lossdoctor", {
        TRAIN_LOSS_STEP: Series(steps, np.linspace(2.3, 2.0, 300)),
        SKIPPED_STEPS: Series(np.array(skipped), np.arange(1.0, len(skipped) + 1))})
    d = diagnose(run)
    plot = pd.run_plots(d).skipped
    assert plot is not None and plot.key == "skipped"
    assert plot.lines[0].points == len(skipped)
    assert [m.code for m in plot.markers] == ["skipped-steps"]
    falling = Series(steps, np.linspace(2.3, 0.2, 300))
    healthy = Run("r", "mem", "lossdoctor", {TRAIN_LOSS_STEP: falling})
    assert pd.run_plots(diagnose(healthy)).skipped is None
