"""The Keras Doctor's per-layer weight, gradient and activation histograms: written
rarely into the run folder, read back by the run-folder reader and by TensorBoard.
The twin of test_torch_histograms."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("tensorflow")

from tests.live import digits_keras as dk  # noqa: E402

from lossdoctor.integrations.keras import HISTOGRAM_BINS, Doctor  # noqa: E402
from lossdoctor.sources.rundir import read_run_dir  # noqa: E402

pytestmark = pytest.mark.slow

STEPS = 46  # one epoch of batches of 16
PROBE = 32
N_PARAMS = {"dense_0": 8 * 16 + 16, "logits": 16 * 3 + 3}
UNITS = {"dense_0": 16, "logits": 3}


def _train(run_dir: Path, **doctor: Any) -> Doctor:
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16 * STEPS, 8)).astype(np.float32)
    y = rng.integers(0, 3, size=16 * STEPS)
    model = keras.Sequential([keras.Input((8,)),
                              keras.layers.Dense(16, activation="relu", name="dense_0"),
                              keras.layers.Dense(3, name="logits")])
    model.compile(optimizer=keras.optimizers.SGD(0.05),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    doctor.setdefault("probe", (x[:PROBE], y[:PROBE]))
    doc = Doctor(run_dir, verbose=False, **doctor)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[doc])
    return doc


@pytest.fixture(scope="module")
def run_15(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Doctor]:
    # Every 15 steps: 0 and 30 are probe steps too (every 10 at the start), 15 and 45
    # are not, so the probe runs for the histograms alone there.
    run_dir = tmp_path_factory.mktemp("keras-hist") / "run"
    return run_dir, _train(run_dir, histogram_every=15)


def test_histograms_written_and_read_back(run_15: tuple[Path, Doctor]) -> None:
    run_dir, doc = run_15
    run = read_run_dir(run_dir)
    tags = {f"layer/{layer}/{kind}" for layer in N_PARAMS
            for kind in ("weight_hist", "grad_hist", "act_hist")}
    assert set(run.histograms) == tags
    for tag in tags:
        _, layer, kind = tag.split("/")
        expected = PROBE * UNITS[layer] if kind == "act_hist" else N_PARAMS[layer]
        hs = run.histograms[tag]
        assert [h.step for h in hs] == [0, 15, 30, 45]
        for h in hs:
            assert h.bucket.shape == (HISTOGRAM_BINS,)
            assert h.bucket.sum() == expected == h.num
            assert h.min < h.max and np.all(np.diff(h.edges()) > 0)
    # Weights move: the histograms at 0 and 45 differ; the in-memory run agrees.
    w = run.histograms["layer/dense_0/weight_hist"]
    assert not np.array_equal(w[0].bucket_limit, w[-1].bucket_limit)
    mem = doc.monitor.store.to_run()  # type: ignore[union-attr]
    assert set(mem.histograms) == tags
    for tag in tags:
        for a, b in zip(mem.histograms[tag], run.histograms[tag], strict=True):
            assert a.step == b.step and np.allclose(a.bucket, b.bucket)
            assert np.allclose(a.bucket_limit, b.bucket_limit)
    assert run.meta["histogram_every"] == 15
    assert not any(f.code == "monitor-error" for f in doc.report().findings)


def test_histogram_edges_span_the_weights(run_15: tuple[Path, Doctor]) -> None:
    # Step 0's weights are the initial ones: the bias starts at 0, inside [min, max];
    # the last edge is the largest weight, the first the smallest.
    run = read_run_dir(run_15[0])
    h = run.histograms["layer/logits/weight_hist"][0]
    assert h.min < 0.0 < h.max
    assert h.edges()[0] == pytest.approx(h.min) and h.edges()[-1] == pytest.approx(h.max)


def test_histograms_read_by_tensorboard(run_15: tuple[Path, Doctor]) -> None:
    ea_mod = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    acc = ea_mod.EventAccumulator(str(run_15[0]), size_guidance={"histograms": 0})
    acc.Reload()
    assert {"layer/dense_0/weight_hist", "layer/dense_0/act_hist"} <= set(
        acc.Tags()["histograms"])
    events = acc.Histograms("layer/logits/grad_hist")
    assert [ev.step for ev in events] == [0, 15, 30, 45]
    assert sum(events[0].histogram_value.bucket) == N_PARAMS["logits"]
    (first, *_) = acc.Histograms("layer/dense_0/act_hist")
    assert sum(first.histogram_value.bucket) == PROBE * UNITS["dense_0"]


def test_without_probe_weight_histograms_only(tmp_path: Path) -> None:
    doc = _train(tmp_path / "run", probe=None, histogram_every=20)
    run = read_run_dir(tmp_path / "run")
    assert set(run.histograms) == {"layer/dense_0/weight_hist", "layer/logits/weight_hist"}
    for tag, hs in run.histograms.items():
        assert [h.step for h in hs] == [0, 20, 40]
        assert all(h.num == N_PARAMS[tag.split("/")[1]] for h in hs)
    assert not any(f.code == "monitor-error" for f in doc.report().findings)


def test_histograms_disabled(tmp_path: Path) -> None:
    _train(tmp_path / "run", histogram_every=0)
    assert read_run_dir(tmp_path / "run").histograms == {}
    with pytest.raises(ValueError, match="histogram_every"):
        Doctor(tmp_path / "bad", histogram_every=-1)


@pytest.mark.parametrize("side", dk.SIDES)
def test_a_histogram_failure_is_one_finding_and_the_probe_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, side: str) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("injected")

    dk.read_on(side, monkeypatch)
    monkeypatch.setattr({"host": "lossdoctor.live.host_stats.histogram_row",
                         "device": "lossdoctor.integrations.keras_tf.histogram_rows"}[side],
                        broken)
    doc = _train(tmp_path / "run", histogram_every=15)
    errors = [f for f in doc.report().findings if f.code == "monitor-error"]
    assert [e.evidence["signal"] for e in errors] == ["histograms"]
    run = read_run_dir(tmp_path / "run")
    assert run.histograms == {}
    assert len(run.series["layer/dense_0/grad_norm"]) >= 5  # the probe went on
