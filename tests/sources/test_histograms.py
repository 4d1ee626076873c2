"""Histograms in TensorBoard event files: the pure-Python writer (read back by
TensorBoard itself) and the reader (files from PyTorch's SummaryWriter and ours)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from lossdoctor.sources.tbwriter import (
    EventFileWriter,
    HistogramFields,
    encode_histogram_event,
    encode_scalar_event,
    frame_records,
)
from lossdoctor.sources.tensorboard import read_event_bytes, read_event_file, read_tensorboard_run


def _event_file(tmp_path: Path) -> Path:
    return next(tmp_path.glob("events.out.tfevents.*"))


def test_writer_histogram_read_by_tensorboard(tmp_path: Path) -> None:
    ea_mod = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    values = np.concatenate([np.zeros(30), np.ones(70)])
    with EventFileWriter(tmp_path) as w:
        w.add_scalar("loss", 1.5, 0)
        w.add_histogram("layer/fc1/weight_hist", values, 0, bins=4)
        w.add_histogram("layer/fc1/weight_hist", np.arange(10.0), 7, bins=5)
        w.add_histogram_counts("layer/fc1/grad_hist", [0.0, 1.0, 2.0], [3, 4], 7)
    acc = ea_mod.EventAccumulator(str(tmp_path), size_guidance={"histograms": 0})
    acc.Reload()
    assert set(acc.Tags()["histograms"]) == {"layer/fc1/weight_hist", "layer/fc1/grad_hist"}
    events = acc.Histograms("layer/fc1/weight_hist")
    assert [e.step for e in events] == [0, 7]
    h0 = events[0].histogram_value
    assert (h0.min, h0.max, h0.num, h0.sum) == (0.0, 1.0, 100.0, 70.0)
    assert list(h0.bucket) == [30.0, 0.0, 0.0, 70.0]
    assert list(h0.bucket_limit) == [0.25, 0.5, 0.75, 1.0]
    h1 = events[1].histogram_value
    assert h1.num == 10 and sum(h1.bucket) == 10 and len(h1.bucket) == 5
    g = acc.Histograms("layer/fc1/grad_hist")[0].histogram_value
    assert list(g.bucket) == [3.0, 4.0] and list(g.bucket_limit) == [1.0, 2.0]
    assert acc.Scalars("loss")[0].value == 1.5


def test_writer_histogram_skips_nonfinite_and_constant(tmp_path: Path) -> None:
    with EventFileWriter(tmp_path) as w:
        w.add_histogram("h", [2.0, 2.0, np.nan, np.inf], 3, bins=3)
        w.add_histogram("empty", [np.nan], 4)
    ev = read_event_file(_event_file(tmp_path))
    (h,) = ev.histograms["h"]
    assert h.num == 2 and h.bucket.sum() == 2 and h.min == h.max == 2.0
    (e,) = ev.histograms["empty"]
    assert e.num == 0 and e.bucket.shape == (0,)


def test_reader_reads_own_histograms_and_scalars_unchanged(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    with EventFileWriter(tmp_path) as w:
        for step in range(50):
            w.add_scalar("loss", 1.0 / (step + 1), step)
            if step % 10 == 0:
                w.add_histogram("layer/fc1/weight_hist", rng.normal(size=200), step, bins=8)
    ev = read_event_file(_event_file(tmp_path))
    assert ev.warnings == []
    assert list(ev.scalars) == ["loss"] and len(ev.scalars["loss"]) == 50
    hs = ev.histograms["layer/fc1/weight_hist"]
    assert [h.step for h in hs] == [0, 10, 20, 30, 40]
    for h in hs:
        assert h.bucket.shape == h.bucket_limit.shape == (8,)
        assert h.bucket.sum() == 200 == h.num
        assert h.min <= h.bucket_limit[0] and h.bucket_limit[-1] == h.max
        edges = h.edges()
        assert edges.shape == (9,) and edges[0] == h.min and edges[-1] == h.max
    run = read_tensorboard_run(tmp_path)
    assert [h.step for h in run.histograms["layer/fc1/weight_hist"]] == [0, 10, 20, 30, 40]


def test_reader_reads_pytorch_summarywriter_histograms(tmp_path: Path) -> None:
    tb = pytest.importorskip("torch.utils.tensorboard")
    torch = pytest.importorskip("torch")
    values = torch.linspace(-1, 1, 101)
    with tb.SummaryWriter(str(tmp_path)) as sw:
        for step in (0, 5, 9):
            sw.add_scalar("train/loss", 0.5, step)
            sw.add_histogram("layer/fc1/weight_hist", values * (step + 1), step, bins=10)
            sw.add_histogram("auto", values, step)  # bins="tensorflow"
    run = read_tensorboard_run(tmp_path)
    assert run.warnings == []
    hs = run.histograms["layer/fc1/weight_hist"]
    assert [h.step for h in hs] == [0, 5, 9]
    for step, h in zip((0, 5, 9), hs, strict=True):
        assert h.num == 101 and h.bucket.sum() == 101
        assert h.min == pytest.approx(-(step + 1)) and h.max == pytest.approx(step + 1)
        assert h.bucket.shape == h.bucket_limit.shape
    auto = run.histograms["auto"]
    assert len(auto) == 3 and all(h.bucket.sum() == 101 for h in auto)
    assert np.isfinite(auto[0].edges()).all()
    assert len(run.series) >= 1


def _histo_value(tag: bytes, histo: bytes) -> bytes:
    value = b"\x0a" + bytes([len(tag)]) + tag + b"\x2a" + bytes([len(histo)]) + histo
    summary = b"\x0a" + bytes([len(value)]) + value
    return b"\x09" + struct.pack("<d", 1.0) + b"\x10\x03" + b"\x2a" + bytes([len(summary)]) \
        + summary


@pytest.mark.parametrize("histo", [
    b"\x32\x08" + struct.pack("<d", 1.0),  # a limit without a bucket
    b"\x32\x07" + b"\x00" * 7,  # packed doubles not a multiple of 8
    b"\x32\x08" + struct.pack("<d", 1.0) + b"\x3a\x08" + struct.pack("<d", -1.0),  # negative
    b"\x32\x08" + struct.pack("<d", 1.0) + b"\x3a\x08" + struct.pack("<d", np.nan),
    b"\x32\x10" + struct.pack("<2d", 2.0, 1.0) + b"\x3a\x10" + struct.pack("<2d", 1, 1),
    b"\x09\x00\x00",  # a double cut short
    b"\x38\x01",  # bucket as a varint
])
def test_malformed_histogram_is_skipped_with_warning(histo: bytes) -> None:
    good = encode_histogram_event("ok", 2, 1.0, HistogramFields(
        0.0, 1.0, 1.0, 0.5, 0.25, np.array([1.0]), np.array([1.0])))
    data = frame_records([encode_scalar_event("loss", 0.5, 1, 1.0), good,
                          _histo_value(b"bad", histo), encode_scalar_event("loss", 0.25, 3, 1.0)])
    ev = read_event_bytes(data)
    assert ev.scalars["loss"].values.tolist() == [0.5, 0.25]
    assert list(ev.histograms) == ["ok"]
    assert any("histogram" in w for w in ev.warnings)


def test_histogram_with_unpacked_repeated_doubles() -> None:
    histo = (b"\x09" + struct.pack("<d", 0.0) + b"\x11" + struct.pack("<d", 2.0)
             + b"\x19" + struct.pack("<d", 3.0)
             + b"\x31" + struct.pack("<d", 1.0) + b"\x31" + struct.pack("<d", 2.0)
             + b"\x39" + struct.pack("<d", 1.0) + b"\x39" + struct.pack("<d", 2.0))
    ev = read_event_bytes(frame_records([_histo_value(b"h", histo)]))
    (h,) = ev.histograms["h"]
    assert h.step == 3 and h.bucket.tolist() == [1.0, 2.0] and h.bucket_limit.tolist() == [1, 2]
    assert ev.warnings == []
