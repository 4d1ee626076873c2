"""The TensorBoard event-file reader and writer, on files written by real PyTorch,
TensorFlow and Keras, and on hand-made and damaged files."""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from lossdoctor.errors import InputError
from lossdoctor.run import TRAIN_LOSS, VAL_LOSS
from lossdoctor.sources import tensorboard as tb
from lossdoctor.sources.crc32c import (
    crc32c,
    crc32c_many,
    crc32c_pure,
    crc32c_rows,
    mask,
    masked_crc32c,
    unmask,
)
from lossdoctor.sources.tbwriter import EventFileWriter, encode_scalar_event, frame_records
from lossdoctor.sources.tensorboard import (
    is_tensorboard_run_dir,
    looks_like_event_file,
    read_event_bytes,
    read_event_file,
    read_tensorboard_run,
)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def record_offsets(data: bytes) -> list[int]:
    """Start of every record, by the framing (independent of the reader)."""
    out, pos = [], 0
    while pos + 16 <= len(data):
        out.append(pos)
        pos += struct.unpack_from("<Q", data, pos)[0] + 16
    return out


def fast_taken(data: bytes, layout: object) -> int:
    """How many records the numpy fast path decodes for one layout."""
    starts = np.array(record_offsets(data), dtype=np.int64) + 12
    ends = starts + np.array([struct.unpack_from("<Q", data, s - 12)[0] for s in starts],
                             dtype=np.int64)
    return int(tb._fast_decode(data, starts, ends, tb._Tags(), layout)[0].shape[0])


def same_result(a: tb.EventScalars, b: tb.EventScalars) -> None:
    assert list(a.scalars) == list(b.scalars)
    for tag in a.scalars:
        np.testing.assert_array_equal(a.scalars[tag].steps, b.scalars[tag].steps)
        np.testing.assert_array_equal(a.scalars[tag].values, b.scalars[tag].values)
        np.testing.assert_array_equal(a.wall_times[tag], b.wall_times[tag])


def write_scalars(directory: Path, rows: list[tuple[str, float, int]]) -> Path:
    with EventFileWriter(directory) as w:
        for i, (tag, value, step) in enumerate(rows):
            w.add_scalar(tag, value, step, wall_time=1_700_000_000.0 + i)
    return w.path


def as_lists(result: tb.EventScalars) -> dict[str, tuple[list[int], list[float]]]:
    return {k: (s.steps.tolist(), s.values.tolist()) for k, s in result.scalars.items()}


# ---- CRC-32C ----------------------------------------------------------------------

@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", 0x00000000),
        (b"123456789", 0xE3069283),
        (b"\x00" * 32, 0x8A9136AA),  # RFC 3720 B.4
        (b"\xff" * 32, 0x62A8AB43),
        (bytes(range(32)), 0x46DD794E),
        (bytes(range(31, -1, -1)), 0x113FDB5C),
    ],
)
def test_crc32c_known_vectors(data: bytes, expected: int) -> None:
    assert crc32c_pure(data) == expected
    assert crc32c(data) == expected
    arr = np.frombuffer(b"xx" + data, dtype=np.uint8)
    assert int(crc32c_many(arr, np.array([2]), np.array([len(data)]))[0]) == expected


def test_crc32c_long_and_many() -> None:
    rng = np.random.default_rng(1)
    buf = rng.integers(0, 256, 60_000, dtype=np.uint8)
    raw = buf.tobytes()
    for n in (255, 256, 257, 4096, 4097, 50_000):
        assert crc32c(raw[3:3 + n]) == crc32c_pure(raw[3:3 + n])
    starts = rng.integers(0, 50_000, 300)
    lengths = rng.integers(0, 9000, 300)
    got = crc32c_many(buf, starts, lengths)
    assert got.tolist() == [crc32c_pure(raw[s:s + n]) for s, n in zip(starts, lengths, strict=True)]
    rows = buf[:800].reshape(100, 8)
    assert crc32c_rows(rows).tolist() == [crc32c_pure(r.tobytes()) for r in rows]


def test_mask_round_trip() -> None:
    for v in (0, 1, 0xDEADBEEF, 0xFFFFFFFF):
        assert unmask(mask(v)) == v


# ---- real files ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def torch_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch_tb = pytest.importorskip("torch.utils.tensorboard")
    d = tmp_path_factory.mktemp("torch")
    w = torch_tb.SummaryWriter(str(d))
    for step in range(5):
        w.add_scalar("Loss/train", 1.0 / (step + 1), step)
        w.add_scalar("lr", 0.1, step)
        if step == 2:
            w.add_histogram("weights", np.arange(10.0), step)
            w.add_image("img", np.zeros((3, 4, 4)), step)
            w.add_text("note", "hello", step)
    w.add_scalar("Loss/train", float("nan"), 5)
    w.add_scalar("Loss/train", float("inf"), 6)
    w.add_scalar("Loss/train", 9.0, 3)  # a restarted run writes step 3 again
    w.add_scalar("big_step", 1.0, 2**40)
    w.add_scalar("new_style", 0.25, 7, new_style=True)  # a tensor summary
    w.close()
    (f,) = d.glob("events.out.tfevents.*")
    return f


def test_pytorch_summary_writer(torch_file: Path) -> None:
    head = torch_file.read_bytes()[:12]
    assert masked_crc32c(head[:8]) == struct.unpack("<I", head[8:])[0]
    r = read_event_file(torch_file, verify=True)
    assert r.warnings == []
    assert r.file_version == "brain.Event:2"
    assert list(r.scalars) == ["Loss/train", "lr", "big_step", "new_style"]
    loss = r.scalars["Loss/train"]
    assert loss.steps.dtype == np.int64 and loss.values.dtype == np.float64
    assert loss.steps.tolist() == [0, 1, 2, 3, 4, 5, 6, 3]
    np.testing.assert_allclose(loss.values[:5], [1.0, 0.5, 1 / 3, 0.25, 0.2], rtol=1e-6)
    assert math.isnan(loss.values[5]) and loss.values[6] == math.inf and loss.values[7] == 9.0
    assert r.scalars["big_step"].steps.tolist() == [2**40]
    assert as_lists(r)["new_style"] == ([7], [0.25])
    walls = r.wall_times["lr"]
    assert walls.shape == (5,) and np.all(np.diff(walls) >= 0) and walls[0] > 1e9
    data = torch_file.read_bytes()
    assert fast_taken(data, tb._SIMPLE) == 14  # every simple_value record
    assert fast_taken(data, tb._TORCH_NEW_STYLE) == 1


def test_fast_path_on_real_files(torch_file: Path, tf_files: dict[str, Path],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    files = [torch_file, *tf_files["summary"].glob("*tfevents*"),
             *tf_files["keras"].glob("*/*tfevents*")]
    assert len(files) == 4
    for f in files:
        data = f.read_bytes()
        same_result(read_event_bytes(data), _without_fast_path(monkeypatch, data))
    (summary,) = tf_files["summary"].glob("*tfevents*")
    assert fast_taken(summary.read_bytes(), tb._TF2) == 6  # tf.summary.scalar casts to float32
    (train,) = tf_files["keras"].glob("train/*tfevents*")
    assert fast_taken(train.read_bytes(), tb._TF2) == 9  # epoch_loss/accuracy/learning_rate


@pytest.fixture(scope="module")
def tf_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tf = pytest.importorskip("tensorflow")
    keras = pytest.importorskip("keras")
    root = tmp_path_factory.mktemp("tf")
    writer = tf.summary.create_file_writer(str(root / "summary"))
    with writer.as_default():
        for step in range(3):
            tf.summary.scalar("loss", 1.0 + step, step=step)
            tf.summary.scalar("lr64", tf.constant(0.5, dtype=tf.float64), step=step)
            tf.summary.histogram("hist", np.arange(6.0), step=step)
            tf.summary.image("img", np.zeros((1, 2, 2, 1), dtype=np.float32), step=step)
            tf.summary.text("txt", "hi", step=step)
    writer.close()
    rng = np.random.default_rng(0)
    x = rng.random((48, 4)).astype("float32")
    y = (x.sum(axis=1) > 2).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")]
    )
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=3, batch_size=16, validation_split=0.25, verbose=0,
              callbacks=[keras.callbacks.TensorBoard(str(root / "keras"))])
    return {"summary": root / "summary", "keras": root / "keras"}


def test_tf2_summary_scalars_and_skips(tf_files: dict[str, Path]) -> None:
    (f,) = tf_files["summary"].glob("events.out.tfevents.*")
    r = read_event_file(f)
    assert r.warnings == []
    assert as_lists(r) == {"loss": ([0, 1, 2], [1.0, 2.0, 3.0]),
                           "lr64": ([0, 1, 2], [0.5, 0.5, 0.5])}


def test_keras_callback_run_dir(tf_files: dict[str, Path]) -> None:
    d = tf_files["keras"]
    assert is_tensorboard_run_dir(d)
    run = read_tensorboard_run(d)
    assert run.format == "tensorboard" and run.name == "keras" and run.source == str(d)
    assert run.warnings == []
    train, val = run.series[TRAIN_LOSS], run.series[VAL_LOSS]
    assert train.steps.tolist() == [0, 1, 2] and val.steps.tolist() == [0, 1, 2]
    assert np.all(np.isfinite(train.values)) and not np.array_equal(train.values, val.values)
    assert "train/accuracy" in run.series and "val/accuracy" in run.series
    # The model-config string tensor ("keras") is not a scalar.
    assert not any(k.endswith("/keras") for k in run.series)
    # One file of the run, read alone, keeps its split prefix.
    (vf,) = (d / "validation").glob("*tfevents*")
    assert VAL_LOSS in read_tensorboard_run(vf).series


# ---- tensor summaries made with protobuf (tensor_content, float_val, ...) -----------

def _tensor_event(
    tag: str, step: int, *, plugin: str | None = "scalars", **tensor: object
) -> bytes:
    from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2

    value = summary_pb2.Summary.Value(tag=tag, tensor=tensor_pb2.TensorProto(**tensor))
    if plugin is not None:
        value.metadata.plugin_data.plugin_name = plugin
    event = event_pb2.Event(wall_time=1.5, step=step, summary=summary_pb2.Summary(value=[value]))
    data: bytes = event.SerializeToString()
    return data


def test_tensor_summary_variants() -> None:
    from tensorboard.compat.proto import tensor_shape_pb2

    pytest.importorskip("tensorboard")
    dim = tensor_shape_pb2.TensorShapeProto.Dim
    vec = tensor_shape_pb2.TensorShapeProto(dim=[dim(size=3)])
    one = tensor_shape_pb2.TensorShapeProto(dim=[dim(size=1)])
    records = [
        _tensor_event("content", 1, dtype=1, tensor_content=struct.pack("<f", 0.5)),
        _tensor_event("floatval", 2, dtype=1, float_val=[1.25]),
        _tensor_event("doubleval", 3, dtype=2, double_val=[2.5]),
        _tensor_event("double_content", 4, dtype=2, tensor_content=struct.pack("<d", 0.1)),
        _tensor_event("half", 5, dtype=19, half_val=[int(np.float16(1.5).view(np.uint16))]),
        _tensor_event("shape1", 6, dtype=1, tensor_shape=one, float_val=[7.0]),
        _tensor_event("noplugin", 7, plugin=None, dtype=1, float_val=[3.0]),
        _tensor_event("vector", 8, dtype=1, tensor_shape=vec, float_val=[1, 2, 3]),
        _tensor_event("string", 9, dtype=7, string_val=[b"{}"]),
        _tensor_event("int", 10, dtype=3, int_val=[4]),
        _tensor_event("histo_plugin", 11, plugin="histograms", dtype=1, float_val=[1.0]),
        _tensor_event("empty", 12, dtype=1),
    ]
    r = read_event_bytes(frame_records(records))
    assert as_lists(r) == {
        "content": ([1], [0.5]),
        "floatval": ([2], [1.25]),
        "doubleval": ([3], [2.5]),
        "double_content": ([4], [0.1]),
        "half": ([5], [1.5]),
        "shape1": ([6], [7.0]),
        "noplugin": ([7], [3.0]),
    }
    assert r.warnings == []


def test_plugin_announced_once_applies_to_later_values() -> None:
    records = [
        _tensor_event("pic", 1, plugin="images", dtype=1, float_val=[1.0]),
        _tensor_event("pic", 2, plugin=None, dtype=1, float_val=[2.0]),
    ]
    assert read_event_bytes(frame_records(records)).scalars == {}


def test_simple_value_with_histogram_and_other_events() -> None:
    from tensorboard.compat.proto import event_pb2, summary_pb2

    histo = summary_pb2.HistogramProto(min=0, max=1, num=2)
    ev = event_pb2.Event(step=3, summary=summary_pb2.Summary(value=[
        summary_pb2.Summary.Value(tag="h", histo=histo),
        summary_pb2.Summary.Value(tag="a", simple_value=1.0),
        summary_pb2.Summary.Value(tag="b", simple_value=2.0),
    ]))
    graph = event_pb2.Event(wall_time=2.0, graph_def=b"\x0a\x03abc")
    log = event_pb2.Event(wall_time=3.0, step=4, log_message=event_pb2.LogMessage(message="x"))
    r = read_event_bytes(frame_records(
        [ev.SerializeToString(), graph.SerializeToString(), log.SerializeToString()]))
    assert as_lists(r) == {"a": ([3], [1.0]), "b": ([3], [2.0])}
    assert r.wall_times["a"].tolist() == [0.0]


# ---- the fast path agrees with the general decoder -----------------------------------

def _without_fast_path(monkeypatch: pytest.MonkeyPatch, data: bytes) -> tb.EventScalars:
    empty = np.zeros(0, dtype=np.int64)

    def nothing(*args: object) -> tuple[np.ndarray, ...]:
        return empty, empty, empty, np.zeros(0), np.zeros(0)

    with monkeypatch.context() as m:
        m.setattr(tb, "_fast_decode", nothing)
        return read_event_bytes(data)


def test_fast_path_matches_general_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    tags = ["loss", "a", "val/acc", "grad_norm/" + "x" * 300, "é✓", "m" * 9]
    steps = [0, 1, 127, 128, 16_383, 16_384, 2**35, 2**49 - 1, 2**49, 2**62, -1, -(2**40)]
    values = [0.0, -0.0, 1.5, float("nan"), float("inf"), -float("inf"), 3e38, 1e-45]
    records, i = [], 0
    for step in steps:
        for tag in tags:
            records.append(encode_scalar_event(tag, values[i % len(values)], step, 1e9 + i))
            i += 1
    data = frame_records(records)
    fast = read_event_bytes(data)
    same_result(fast, _without_fast_path(monkeypatch, data))
    assert list(fast.scalars) == tags
    assert fast.scalars["loss"].steps.tolist() == steps


def test_tf2_fast_path_mixed_with_other_records(monkeypatch: pytest.MonkeyPatch) -> None:
    from tensorboard.compat.proto import tensor_shape_pb2

    scalar = tensor_shape_pb2.TensorShapeProto()  # set, so it is written (as TF does)
    records = []
    for step in range(0, 3000, 3):
        records.append(_tensor_event("epoch_loss", step, dtype=1, tensor_shape=scalar,
                                     tensor_content=struct.pack("<f", step / 7)))
        records.append(encode_scalar_event("torch_style", -step / 3, step, 5.0))
        if step % 100 == 0:
            records.append(_tensor_event("other", step, dtype=1,
                                         tensor_content=struct.pack("<f", 1.0)))
            records.append(_tensor_event("fv", step, dtype=1, float_val=[2.0]))
            records.append(_tensor_event("epoch_loss", step + 1, dtype=2,
                                         tensor_content=struct.pack("<d", 0.1)))
    data = frame_records(records)
    assert fast_taken(data, tb._TF2) == 1000
    assert fast_taken(data, tb._TF2_NO_SHAPE) == 10  # "other": no shape
    assert fast_taken(data, tb._TORCH_NEW_STYLE) == 10  # "fv": packed float_val
    fast = read_event_bytes(data)
    same_result(fast, _without_fast_path(monkeypatch, data))
    assert fast.scalars["epoch_loss"].steps.tolist()[:4] == [0, 1, 3, 6]
    assert len(fast.scalars["torch_style"]) == 1000


def test_periodic_hop_handles_changing_cycles(tmp_path: Path) -> None:
    # Cycles that change length (steps cross varint sizes, tags come and go) must not
    # confuse the speculative hop: every record is found.
    rows = []
    for step in range(0, 40_000, 7):
        rows.append(("loss", 1.0, step))
        if step % 3 == 0:
            rows.append(("acc", 0.5, step))
        if 10_000 < step < 12_000:
            rows.append(("extra_tag_with_a_longer_name", 2.0, step))
    f = write_scalars(tmp_path, rows)
    r = read_event_file(f)
    assert r.records == len(rows) + 1
    assert sum(len(s) for s in r.scalars.values()) == len(rows)
    assert r.scalars["loss"].steps.tolist() == list(range(0, 40_000, 7))


# ---- damaged and odd input ------------------------------------------------------------

ROWS = [("loss", 1.0 / (i + 1), i) for i in range(20)] + [("lr", 0.1, i) for i in range(5)]


@pytest.fixture
def good_file(tmp_path: Path) -> Path:
    return write_scalars(tmp_path / "run", ROWS)


def test_truncated_last_record(good_file: Path, tmp_path: Path) -> None:
    data = good_file.read_bytes()
    offsets = record_offsets(data)
    for cut in (len(data) - 1, offsets[-1] + 5, offsets[-1] + 14, offsets[10] + 30):
        r = read_event_bytes(data[:cut], path="cut")
        whole = sum(1 for o in offsets if o < cut and
                    o + 16 + struct.unpack_from("<Q", data, o)[0] <= cut)
        assert r.records == whole
        assert len(r.warnings) == 1 and "truncated" in r.warnings[0]
        assert sum(len(s) for s in r.scalars.values()) == whole - 1  # minus file_version
    # A file still being written: only part of the first record so far.
    f = tmp_path / "partial.tfevents"
    f.write_bytes(data[:14])
    r = read_event_file(f)
    assert r.scalars == {} and "truncated" in r.warnings[0]


def test_corrupt_header_in_the_middle(good_file: Path) -> None:
    data = bytearray(good_file.read_bytes())
    offsets = record_offsets(bytes(data))
    data[offsets[7]] ^= 0x01  # the length field of record 7
    r = read_event_bytes(bytes(data), path="bad")
    assert r.records == 7
    assert len(r.warnings) == 1 and f"byte {offsets[7]}" in r.warnings[0]
    assert r.scalars["loss"].steps.tolist() == list(range(6))
    with pytest.raises(InputError, match=f"byte offset {offsets[7]}"):
        read_event_bytes(bytes(data), path="bad", verify=True)


def test_corrupt_first_header_is_not_an_event_file(good_file: Path) -> None:
    data = bytearray(good_file.read_bytes())
    data[9] ^= 0xFF
    with pytest.raises(InputError, match="not a TensorBoard event file"):
        read_event_bytes(bytes(data), path="x")


def test_verify_reports_data_crc_mismatch(good_file: Path) -> None:
    data = bytearray(good_file.read_bytes())
    offsets = record_offsets(bytes(data))
    end = offsets[5] + 12 + struct.unpack_from("<Q", data, offsets[5])[0]
    data[end - 2] ^= 0x40  # a byte of the float value in record 5
    read_event_bytes(bytes(data))  # without verify: read as is
    with pytest.raises(InputError, match=f"data CRC mismatch .* byte offset {offsets[5]}"):
        read_event_bytes(bytes(data), path="f", verify=True)
    assert read_event_bytes(good_file.read_bytes(), verify=True).warnings == []


def test_undecodable_record_is_skipped_with_warning(good_file: Path) -> None:
    data = bytearray(good_file.read_bytes())
    offsets = record_offsets(bytes(data))
    data[offsets[3] + 12] = 0x07  # field 0 / wire type 7: not protobuf
    r = read_event_bytes(bytes(data))
    assert len(r.warnings) == 1 and "skipped 1 record" in r.warnings[0]
    assert "data CRC mismatch" in r.warnings[0]
    assert len(r.scalars["loss"]) == 19


def test_empty_file(tmp_path: Path) -> None:
    f = tmp_path / "events.out.tfevents.1"
    f.write_bytes(b"")
    with pytest.raises(InputError, match="empty file") as info:
        read_event_file(f)
    assert info.value.path == str(f)


def test_not_an_event_file(tmp_path: Path) -> None:
    f = tmp_path / "log.csv"
    f.write_text("step,loss\n0,1.0\n1,0.5\n" * 10)
    assert not looks_like_event_file(f.read_bytes()[:12])
    with pytest.raises(InputError, match="not a TensorBoard event file"):
        read_event_file(f)
    with pytest.raises(InputError, match="not a TensorBoard event file"):
        read_event_bytes(b"abc")
    with pytest.raises(InputError):
        read_event_file(tmp_path / "missing")


def test_sniffing(good_file: Path) -> None:
    assert looks_like_event_file(good_file.read_bytes()[:12])
    assert not looks_like_event_file(b"\x00" * 11)


def test_huge_length_field() -> None:
    body = frame_records([encode_scalar_event("loss", 1.0, 1, 0.0)])
    for length in (2**63, 2**64 - 1, 10**12):
        head = struct.pack("<Q", length)
        forged = body + head + struct.pack("<I", masked_crc32c(head)) + b"\x00" * 20
        r = read_event_bytes(forged)
        assert as_lists(r) == {"loss": ([1], [1.0])} and "truncated" in r.warnings[0]
        bad = body + head + b"\x00" * 24  # same, with a wrong length CRC
        r = read_event_bytes(bad)
        assert as_lists(r) == {"loss": ([1], [1.0])} and "corrupt" in r.warnings[0]


def test_non_utf8_tag() -> None:
    ev = b"\x09" + struct.pack("<d", 1.0) + b"\x10\x02"
    value = b"\x0a\x03a\xff\xfe" + b"\x15" + struct.pack("<f", 4.0)
    ev += b"\x2a" + bytes([len(value) + 2]) + b"\x0a" + bytes([len(value)]) + value
    r = read_event_bytes(frame_records([ev, ev]))
    assert as_lists(r) == {"a\ufffd\ufffd": ([2, 2], [4.0, 4.0])}


def test_file_version_only(tmp_path: Path) -> None:
    with EventFileWriter(tmp_path) as w:
        pass
    r = read_event_file(w.path)
    assert r.scalars == {} and r.file_version == "brain.Event:2" and r.warnings == []
    with pytest.raises(InputError, match="no scalar series"):
        read_tensorboard_run(tmp_path)


# ---- run directories ------------------------------------------------------------------

def test_run_dir_merges_files_and_splits(tmp_path: Path) -> None:
    run = tmp_path / "myrun"
    (run / "train").mkdir(parents=True)
    (run / "validation").mkdir()
    (run / "train" / "events.out.tfevents.2.b").write_bytes(frame_records(
        [encode_scalar_event("epoch_loss", 0.5, 2, 0.0)]))
    (run / "train" / "events.out.tfevents.1.a").write_bytes(frame_records(
        [encode_scalar_event("epoch_loss", v, s, 0.0) for s, v in ((0, 0.75), (1, 0.625))]))
    (run / "validation" / "renamed.bin").write_bytes(frame_records(  # found by content
        [encode_scalar_event("epoch_loss", 1.0, 0, 0.0)]))
    (run / "notes.txt").write_text("not an event file")
    (run / "events.out.tfevents.3.c").write_bytes(frame_records(
        [encode_scalar_event("epoch_learning_rate", 0.01, 0, 0.0)]))
    assert is_tensorboard_run_dir(run) and not is_tensorboard_run_dir(tmp_path)
    r = read_tensorboard_run(run)
    assert r.name == "myrun" and r.format == "tensorboard"
    assert r.series[TRAIN_LOSS].steps.tolist() == [0, 1, 2]
    assert r.series[TRAIN_LOSS].values.tolist() == [0.75, 0.625, 0.5]
    assert r.series[VAL_LOSS].values.tolist() == [1.0]
    assert "lr" in r.series
    r = read_tensorboard_run(run, train_loss="validation/epoch_loss")
    assert r.series[TRAIN_LOSS].values.tolist() == [1.0]
    with pytest.raises(InputError, match="no series named"):
        read_tensorboard_run(run, val_loss="nope")


def test_run_dir_problems(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no TensorBoard event files"):
        read_tensorboard_run(tmp_path)
    with pytest.raises(InputError, match="no such file"):
        read_tensorboard_run(tmp_path / "absent")
    bad = tmp_path / "events.out.tfevents.9"
    bad.write_bytes(b"")
    with pytest.raises(InputError, match="empty file"):
        read_tensorboard_run(tmp_path)
    write_scalars(tmp_path, [("loss", 1.0, 0)])
    r = read_tensorboard_run(tmp_path)  # the empty file becomes a warning
    assert r.series[TRAIN_LOSS].values.tolist() == [1.0]
    assert any("empty file" in w for w in r.warnings)
    with pytest.raises(InputError, match="empty file"):
        read_tensorboard_run(tmp_path, verify=True)


def test_run_without_loss_series_is_returned(tmp_path: Path) -> None:
    write_scalars(tmp_path, [("throughput", 10.0, 0)])
    r = read_tensorboard_run(tmp_path)
    assert TRAIN_LOSS not in r.series and "extra/throughput" in r.series


# ---- the writer -------------------------------------------------------------------------

def test_writer_round_trip_with_event_accumulator(tmp_path: Path) -> None:
    ea_mod = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    rows = [("loss", 2.0 - 0.1 * i, i) for i in range(30)]
    rows += [("ü/ß", 1e40, -3), ("lr", float("nan"), 2**40), ("loss", 5.0, 3)]
    f = write_scalars(tmp_path, rows)
    assert f.name.startswith("events.out.tfevents.")
    acc = ea_mod.EventAccumulator(str(tmp_path), size_guidance={"scalars": 0})
    acc.Reload()
    assert sorted(acc.Tags()["scalars"]) == sorted({"loss", "ü/ß", "lr"})
    got = {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}
    ours = read_event_file(f, verify=True)
    for tag, events in got.items():
        steps, values = ours.scalars[tag].steps.tolist(), ours.scalars[tag].values.tolist()
        assert [s for s, _ in events] == steps
        np.testing.assert_array_equal([v for _, v in events], values)
    assert got["ü/ß"] == [(-3, math.inf)]
    assert ours.scalars["loss"].steps.tolist() == [*range(30), 3]
    assert ours.wall_times["loss"][0] == 1_700_000_000.0


def test_writer_never_overwrites_and_flushes(tmp_path: Path) -> None:
    a = EventFileWriter(tmp_path)
    b = EventFileWriter(tmp_path)
    assert a.path != b.path
    a.add_scalar("loss", 1.0, 0)
    a.flush()
    assert as_lists(read_event_file(a.path)) == {"loss": ([0], [1.0])}
    a.close()
    b.close()
    a.close()  # closing twice is harmless
    with pytest.raises(ValueError, match="closed"):
        a.add_scalar("loss", 1.0, 1)


@pytest.mark.parametrize("records", [10, 100, 3000])
@pytest.mark.parametrize("cut", [1, 7, 20])
def test_truncated_last_record_after_a_long_regular_stretch(tmp_path, records, cut):
    # Regression: with many same-sized records the vectorized framing path owned the
    # last (cut) record, and dropping it crashed instead of giving the prefix.
    with EventFileWriter(tmp_path) as writer:
        for step in range(records):
            writer.add_scalar("train/loss", 1.0 / (step + 1), step)
        path = Path(writer.path)
    data = path.read_bytes()
    path.write_bytes(data[:-cut])
    result = read_event_file(path)
    steps = result.scalars["train/loss"].steps
    assert steps.tolist() == list(range(records - 1))
    assert any("truncat" in w.lower() for w in result.warnings)
