"""The PyTorch Doctor's per-layer weight and gradient histograms: written rarely into
the run folder, read back by the run-folder reader and by TensorBoard."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tests.live.digits_torch import DEVICE  # noqa: E402

from lossdoctor.integrations.torch import HISTOGRAM_BINS, Doctor  # noqa: E402
from lossdoctor.sources.rundir import read_run_dir  # noqa: E402


def _train(run_dir: Path, steps: int, **kwargs: object) -> Doctor:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(),
                                torch.nn.Linear(16, 3)).to(DEVICE)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(64, 8).to(DEVICE), torch.randint(0, 3, (64,)).to(DEVICE)
    doc = Doctor(model, opt, run_dir, verbose=False, **kwargs)  # type: ignore[arg-type]
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        doc.log(loss=loss)
    doc.close()
    return doc


def test_histograms_written_and_read_back(tmp_path: Path) -> None:
    doc = _train(tmp_path / "run", 45, histogram_every=20)
    run = read_run_dir(tmp_path / "run")
    tags = {"layer/0/weight_hist", "layer/0/grad_hist", "layer/2/weight_hist",
            "layer/2/grad_hist", "layer/0/act_hist", "layer/1/act_hist", "layer/2/act_hist"}
    assert set(run.histograms) == tags
    # Weights and gradients: one count per parameter; activations: batch x units.
    counts = {"0/weight_hist": 8 * 16 + 16, "2/weight_hist": 16 * 3 + 3,
              "0/grad_hist": 8 * 16 + 16, "2/grad_hist": 16 * 3 + 3,
              "0/act_hist": 64 * 16, "1/act_hist": 64 * 16, "2/act_hist": 64 * 3}
    for tag in tags:
        hs = run.histograms[tag]
        assert [h.step for h in hs] == [0, 20, 40]
        for h in hs:
            assert h.bucket.shape == (HISTOGRAM_BINS,)
            assert h.bucket.sum() == counts[tag.removeprefix("layer/")] == h.num
            assert h.min < h.max and np.all(np.diff(h.edges()) > 0)
    # ReLU outputs: nothing below 0, and the zeros (about half) in the first bin.
    for h in run.histograms["layer/1/act_hist"]:
        assert h.min == 0.0 and h.bucket[0] >= 0.2 * h.num
    # Weights move: the histograms at 0 and 40 differ; the in-memory run agrees.
    w = run.histograms["layer/0/weight_hist"]
    assert not np.array_equal(w[0].bucket_limit, w[-1].bucket_limit)
    mem = doc.monitor.store.to_run()
    assert set(mem.histograms) == tags
    for tag in tags:
        for a, b in zip(mem.histograms[tag], run.histograms[tag], strict=True):
            assert a.step == b.step and np.allclose(a.bucket, b.bucket)
            assert np.allclose(a.bucket_limit, b.bucket_limit)
    assert not any(f.code == "monitor-error" for f in doc.report().findings)


def test_histograms_read_by_tensorboard(tmp_path: Path) -> None:
    ea_mod = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    _train(tmp_path / "run", 5)
    acc = ea_mod.EventAccumulator(str(tmp_path / "run"), size_guidance={"histograms": 0})
    acc.Reload()
    assert "layer/0/weight_hist" in acc.Tags()["histograms"]
    (ev,) = acc.Histograms("layer/2/grad_hist")
    assert ev.step == 0 and sum(ev.histogram_value.bucket) == 16 * 3 + 3


def test_histograms_disabled(tmp_path: Path) -> None:
    _train(tmp_path / "run", 5, histogram_every=0)
    assert read_run_dir(tmp_path / "run").histograms == {}
    with pytest.raises(ValueError):
        _train(tmp_path / "bad", 1, histogram_every=-1)
