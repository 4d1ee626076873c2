"""TF2 histograms (`tf.summary.histogram`, Keras' `TensorBoard(histogram_freq=1)`): a
[k, 3] tensor of (left edge, right edge, count) rows, read into `Histogram`s and
checked against TensorBoard's own reader."""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lossdoctor.run import Histogram
from lossdoctor.sources import load
from lossdoctor.sources.tbwriter import encode_scalar_event, frame_records
from lossdoctor.sources.tensorboard import read_event_bytes, read_event_file, read_tensorboard_run

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

EPOCHS = 3


def _event_file(folder: Path) -> Path:
    (f,) = folder.glob("events.out.tfevents.*")
    return f


@pytest.fixture(scope="module")
def keras_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """A real Keras fit with histogram_freq=1: (log dir, final weights by tag)."""
    pytest.importorskip("tensorflow")
    keras = pytest.importorskip("keras")
    root = tmp_path_factory.mktemp("keras-hist")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 5)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int64") + (x[:, 2] > 1).astype("int64")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((5,)),
        keras.layers.Dense(8, activation="relu", name="hidden"),
        keras.layers.Dense(3, activation="softmax", name="out"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=EPOCHS, batch_size=32, validation_split=0.25, verbose=0,
              callbacks=[keras.callbacks.TensorBoard(str(root), histogram_freq=1)])
    weights = {f"{w.path}/histogram": np.asarray(w.numpy()) for w in model.weights}
    return root, weights


@pytest.fixture(scope="module")
def direct_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tf.summary.histogram on known data, next to scalars."""
    tf = pytest.importorskip("tensorflow")
    root = tmp_path_factory.mktemp("tf-hist")
    writer = tf.summary.create_file_writer(str(root))
    with writer.as_default():
        for step in range(2):
            tf.summary.scalar("loss", 1.0 / (step + 1), step=step)
            # Width 2 over [0, 8]: 0,1 | 2,3 | 4,5 | 6,7,8 (the top edge is closed).
            tf.summary.histogram("arange", np.arange(9.0) + 8 * step, step=step, buckets=4)
        tf.summary.histogram("equal", np.full(7, 2.5), step=0, buckets=4)
        tf.summary.histogram("f32", np.arange(4, dtype=np.float32), step=0, buckets=2)
        tf.summary.histogram("no_data", np.zeros(0), step=0)
        tf.summary.histogram("no_buckets", np.arange(3.0), step=0, buckets=0)
        tf.summary.histogram("has_nan", np.array([1.0, np.nan, 3.0]), step=0)
        tf.summary.histogram("has_inf", np.array([1.0, np.inf]), step=0)
        tf.summary.scalar("loss", 0.25, step=2)
    writer.close()
    return _event_file(root)


def _tb_tables(folder: Path) -> dict[str, list[tuple[int, np.ndarray]]]:
    """TensorBoard's own reading: (step, [k, 3] table) per histograms-plugin tag."""
    ea = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    from tensorboard.util import tensor_util

    acc = ea.EventAccumulator(str(folder), size_guidance={"tensors": 0})
    acc.Reload()
    out: dict[str, list[tuple[int, np.ndarray]]] = {}
    for tag in acc.Tags()["tensors"]:
        if acc.SummaryMetadata(tag).plugin_data.plugin_name == "histograms":
            out[tag] = [(e.step, tensor_util.make_ndarray(e.tensor_proto))
                        for e in acc.Tensors(tag)]
    return out


def _same_as_tensorboard(ours: list[Histogram], theirs: list[tuple[int, np.ndarray]]) -> None:
    assert [h.step for h in ours] == [step for step, _ in theirs]
    for h, (_, table) in zip(ours, theirs, strict=True):
        assert table.ndim == 2 and table.shape[1] == 3
        assert np.array_equal(h.bucket_limit, table[:, 1].astype(np.float64))
        assert np.array_equal(h.bucket, table[:, 2].astype(np.float64))
        if table.shape[0]:
            assert (h.min, h.max) == (float(table[0, 0]), float(table[-1, 1]))
            assert h.num == float(table[:, 2].sum())


# ---- a real Keras run ------------------------------------------------------------------

def test_keras_histograms_one_per_weight_per_epoch(
    keras_run: tuple[Path, dict[str, np.ndarray]],
) -> None:
    root, weights = keras_run
    (loaded,) = load(root)
    assert loaded.error is None and loaded.run is not None
    run = loaded.run
    assert run.warnings == []
    assert "train/loss" in run.series and "val/loss" in run.series  # scalars as before
    # Keras writes the histograms into its train/ folder: the split prefix applies.
    assert set(run.histograms) == {f"train/{tag}" for tag in weights}
    assert len(weights) == 4  # kernel and bias of both layers
    for tag, final in weights.items():
        hs = run.histograms[f"train/{tag}"]
        assert [h.step for h in hs] == list(range(EPOCHS))
        for h in hs:
            assert h.bucket.shape == h.bucket_limit.shape == (30,)  # TF's default
            assert h.bucket.sum() == final.size == h.num
            assert (h.bucket >= 0).all() and h.min < h.max
            edges = h.edges()
            assert edges[0] == h.min and edges[-1] == h.max
            assert (np.diff(edges) > 0).all()
        # The last histogram is of the weights as fit() left them.
        assert (hs[-1].min, hs[-1].max) == (float(final.min()), float(final.max()))


def test_keras_histograms_match_tensorboard(
    keras_run: tuple[Path, dict[str, np.ndarray]],
) -> None:
    root, weights = keras_run
    theirs = _tb_tables(root / "train")
    assert set(theirs) == set(weights)
    run = read_tensorboard_run(root)
    for tag, tables in theirs.items():
        _same_as_tensorboard(run.histograms[f"train/{tag}"], tables)
    # The train file read alone keeps its split prefix.
    alone = read_tensorboard_run(_event_file(root / "train"))
    assert set(alone.histograms) == set(run.histograms)


def test_report_draws_keras_histograms(
    keras_run: tuple[Path, dict[str, np.ndarray]], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from lossdoctor.cli import main
    from lossdoctor.report import plotdata

    root, weights = keras_run
    out = tmp_path / "report.html"
    code = main(["report", str(root), "-o", str(out)])
    assert capsys.readouterr().err == ""
    assert code in (0, 1)
    html = out.read_text(encoding="utf-8")
    assert "Histograms over time" in html
    for tag in weights:
        assert f'data-plot="hist:train/{tag}"' in html
    (loaded,) = load(root)
    assert loaded.run is not None
    for panel in plotdata.histogram_panels(loaded.run):
        assert panel.steps.tolist() == list(range(EPOCHS))
        assert np.allclose(panel.density.sum(axis=1), 1.0)


# ---- tf.summary.histogram on known data ------------------------------------------------

def test_known_buckets(direct_file: Path) -> None:
    ev = read_event_file(direct_file)
    assert ev.scalars["loss"].steps.tolist() == [0, 1, 2]
    assert ev.scalars["loss"].values.tolist() == [1.0, 0.5, 0.25]
    a0, a1 = ev.histograms["arange"]
    assert (a0.step, a1.step) == (0, 1)
    assert a0.bucket_limit.tolist() == [2.0, 4.0, 6.0, 8.0]
    assert a0.bucket.tolist() == [2.0, 2.0, 2.0, 3.0]
    assert (a0.min, a0.max, a0.num) == (0.0, 8.0, 9.0)
    assert a1.bucket_limit.tolist() == [10.0, 12.0, 14.0, 16.0]
    assert (a1.min, a1.max, a1.num) == (8.0, 16.0, 9.0)
    (f,) = ev.histograms["f32"]  # float32 data: TF buckets it as float64
    assert f.bucket_limit.tolist() == [1.5, 3.0] and f.bucket.tolist() == [2.0, 2.0]


def test_all_equal_values(direct_file: Path) -> None:
    (h,) = read_event_file(direct_file).histograms["equal"]
    # TF: every bucket at the one value, the count in the last one.
    assert h.bucket_limit.tolist() == [2.5] * 4 and h.bucket.tolist() == [0, 0, 0, 7]
    assert (h.min, h.max, h.num) == (2.5, 2.5, 7.0)
    assert h.edges().tolist() == [2.5] * 5


def test_empty_histograms(direct_file: Path) -> None:
    hs = read_event_file(direct_file).histograms
    (no_data,) = hs["no_data"]  # TF writes 30 rows of zeros
    assert no_data.num == 0 and no_data.bucket.shape == (30,) and not no_data.bucket.any()
    (no_buckets,) = hs["no_buckets"]  # shape [0, 3]
    assert no_buckets.num == 0 and no_buckets.bucket.shape == no_buckets.bucket_limit.shape == (0,)
    assert no_buckets.edges().tolist() == [0.0, 0.0]


def test_nan_or_inf_data_is_skipped_with_a_warning(direct_file: Path) -> None:
    ev = read_event_file(direct_file)
    assert "has_nan" not in ev.histograms and "has_inf" not in ev.histograms
    assert ev.warnings == [f"{direct_file}: skipped 2 malformed histogram(s)"]


def test_direct_file_matches_tensorboard(direct_file: Path) -> None:
    ev = read_event_file(direct_file)
    theirs = _tb_tables(direct_file.parent)
    assert set(theirs) - set(ev.histograms) == {"has_nan", "has_inf"}
    for tag, hs in ev.histograms.items():
        _same_as_tensorboard(hs, theirs[tag])


# ---- encodings TF may use, made with TensorBoard's protobuf classes ---------------------

def _histogram_event(tag: str, step: int, *, plugin: str | None = "histograms",
                     rows: int | None = None, **tensor: Any) -> bytes:
    from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2

    if rows is not None:
        dim = tensor_shape_pb2.TensorShapeProto.Dim
        tensor["tensor_shape"] = tensor_shape_pb2.TensorShapeProto(dim=[dim(size=rows),
                                                                        dim(size=3)])
    value = summary_pb2.Summary.Value(tag=tag, tensor=tensor_pb2.TensorProto(**tensor))
    if plugin is not None:
        value.metadata.plugin_data.plugin_name = plugin
    event = event_pb2.Event(wall_time=2.0, step=step, summary=summary_pb2.Summary(value=[value]))
    data: bytes = event.SerializeToString()
    return data


def test_repeated_field_encodings() -> None:
    pytest.importorskip("tensorboard")
    table = [0.0, 1.0, 3.0, 1.0, 2.0, 4.0]
    data = frame_records([
        _histogram_event("double_val", 1, rows=2, dtype=2, double_val=table),
        _histogram_event("float_val", 2, rows=2, dtype=1, float_val=table),
        _histogram_event("f32_content", 3, rows=2, dtype=1,
                         tensor_content=np.array(table, dtype="<f4").tobytes()),
        _histogram_event("f16_content", 4, rows=2, dtype=19,
                         tensor_content=np.array(table, dtype="<f2").tobytes()),
        _histogram_event("bf16_content", 4, rows=2, dtype=14, tensor_content=(
            np.array(table, dtype="<f4").view("<u4") >> 16).astype("<u2").tobytes()),
        _histogram_event("half_val", 5, rows=2, dtype=19,
                         half_val=np.array(table, dtype=np.float16).view(np.uint16).tolist()),
        # TensorFlow's rule: fewer values than the shape holds repeat the last one.
        _histogram_event("one_value", 6, rows=2, dtype=2, double_val=[1.0]),
        _histogram_event("no_value", 7, rows=2, dtype=2),
    ])
    ev = read_event_bytes(data)
    assert ev.warnings == []
    for tag in ("double_val", "float_val", "f32_content", "f16_content", "bf16_content",
                "half_val"):
        (h,) = ev.histograms[tag]
        assert h.bucket_limit.tolist() == [1.0, 2.0] and h.bucket.tolist() == [3.0, 4.0]
        assert (h.min, h.max, h.num) == (0.0, 2.0, 7.0)
    (one,) = ev.histograms["one_value"]
    assert one.bucket_limit.tolist() == [1.0, 1.0] and one.num == 2.0
    (none,) = ev.histograms["no_value"]
    assert none.bucket.tolist() == [0.0, 0.0] and none.num == 0.0


def test_plugin_announced_once_applies_to_later_values() -> None:
    pytest.importorskip("tensorboard")
    table = np.array([[0.0, 1.0, 5.0]])
    data = frame_records([
        _histogram_event("h", 0, rows=1, dtype=2, tensor_content=table.tobytes()),
        encode_scalar_event("loss", 0.5, 0, 1.0),
        _histogram_event("h", 1, plugin=None, rows=1, dtype=2,
                         tensor_content=(table * 2).tobytes()),
        _histogram_event("h", 2, plugin=None, rows=1, dtype=2,
                         tensor_content=(table * 3).tobytes()),
        encode_scalar_event("loss", 0.25, 1, 1.0),
    ])
    ev = read_event_bytes(data)
    assert [(h.step, h.max, h.num) for h in ev.histograms["h"]] == [
        (0, 1.0, 5.0), (1, 2.0, 10.0), (2, 3.0, 15.0)]
    assert ev.scalars["loss"].values.tolist() == [0.5, 0.25]
    assert ev.warnings == []


def test_gap_between_rows_becomes_an_empty_bucket() -> None:
    pytest.importorskip("tensorboard")
    table = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]  # [0, 1): 2 values, [3, 4]: 5 values
    (h,) = read_event_bytes(frame_records([
        _histogram_event("g", 0, rows=2, dtype=2, double_val=table)])).histograms["g"]
    assert h.bucket_limit.tolist() == [1.0, 3.0, 4.0] and h.bucket.tolist() == [2.0, 0.0, 5.0]
    assert (h.min, h.max, h.num) == (0.0, 4.0, 7.0)


@pytest.mark.parametrize(("rows", "values"), [
    (2, [0.0, 1.0, -1.0, 1.0, 2.0, 1.0]),  # a negative count
    (2, [0.0, 2.0, 1.0, 1.0, 1.5, 1.0]),  # right edges going down
    (1, [1.0, 0.0, 1.0]),  # right edge left of the left edge
    (1, [0.0, 1.0, np.nan]),
    (1, [0.0, np.inf, 1.0]),
    (1, [-np.inf, 0.0, 1.0]),
    (1, [0.0, 1.0, 1.0, 2.0]),  # more values than the shape holds
    (5000, [0.0]),  # a few bytes claiming a big table: not padded
])
def test_malformed_tables_are_skipped_with_a_warning(rows: int, values: list[float]) -> None:
    pytest.importorskip("tensorboard")
    ev = read_event_bytes(frame_records([
        encode_scalar_event("loss", 0.5, 0, 1.0),
        _histogram_event("bad", 1, rows=rows, dtype=2, double_val=values),
        _histogram_event("ok", 1, rows=1, dtype=2, double_val=[0.0, 1.0, 1.0]),
    ]))
    assert list(ev.histograms) == ["ok"]
    assert ev.warnings == ["<bytes>: skipped 1 malformed histogram(s)"]
    assert ev.scalars["loss"].values.tolist() == [0.5]


def test_content_of_the_wrong_length_is_malformed() -> None:
    pytest.importorskip("tensorboard")
    ev = read_event_bytes(frame_records([_histogram_event(
        "bad", 1, rows=2, dtype=2, tensor_content=struct.pack("<3d", 0.0, 1.0, 1.0))]))
    assert ev.histograms == {} and len(ev.warnings) == 1


def test_tensors_that_are_no_table_are_skipped_quietly() -> None:
    from tensorboard.compat.proto import tensor_shape_pb2

    dim = tensor_shape_pb2.TensorShapeProto.Dim
    ev = read_event_bytes(frame_records([
        _histogram_event("scalar", 1, dtype=2, double_val=[1.0]),
        _histogram_event("vector", 1, dtype=2, double_val=[1.0, 2.0, 3.0],
                         tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[dim(size=3)])),
        _histogram_event("ints", 1, rows=1, dtype=3, int_val=[0, 1, 1]),
    ]))
    assert ev.histograms == {} and ev.scalars == {} and ev.warnings == []
