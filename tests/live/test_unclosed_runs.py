"""Runs whose doctor was never closed: a PyTorch script without `with` or `close()`, a
Keras `fit` that raised (Keras then skips `on_train_end`). Both are shorter than one
event-file write interval, so before the exit handler nothing but the file header
reached the disk. And a run killed before its first write says so, instead of "no
loss series"."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lossdoctor.cli import main
from lossdoctor.sources.rundir import read_run_dir

pytestmark = pytest.mark.slow

TORCH_UNCLOSED = """
import torch
from lossdoctor.torch import Doctor
from tests.live import digits_torch as dt
torch.manual_seed(0)
model = dt.mlp()
opt = torch.optim.SGD(model.parameters(), lr=0.05)
doc = Doctor(model, opt, RUN, verbose=False)
x, y = dt.digits()
for epoch in range(2):
    for i in range(0, len(x) - 63, 64):
        loss = torch.nn.functional.cross_entropy(model(x[i:i + 64]), y[i:i + 64])
        opt.zero_grad(); loss.backward(); opt.step()
        doc.log(loss=loss)
    doc.log_epoch()
# no doc.close(): the script just ends
"""

KERAS_RAISES = """
import keras
from lossdoctor.keras import Doctor
from tests.live import digits_keras as dk
x, y = dk.digits()
model = dk.mlp()
model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
class Fails(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if batch == 20:
            raise RuntimeError("the user's own callback failed")
model.fit(x, y, batch_size=64, epochs=3, verbose=0, callbacks=[Doctor(RUN, verbose=False), Fails()])
"""

KILLED_AT_ONCE = """
import os, torch
from lossdoctor.torch import Doctor
model = torch.nn.Linear(3, 2)
doc = Doctor(model, torch.optim.SGD(model.parameters(), lr=0.1), RUN, verbose=False)
doc.log(loss=1.0)
os.kill(os.getpid(), 9)
"""


def run_script(source: str, run_dir: Path) -> subprocess.CompletedProcess[str]:
    code = f"RUN = {str(run_dir)!r}\n" + textwrap.dedent(source)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2], timeout=300)


def test_an_unclosed_pytorch_doctor_is_closed_at_exit(tmp_path: Path):
    done = run_script(TORCH_UNCLOSED, tmp_path / "run")
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "closed"
    steps = read_run_dir(tmp_path / "run").get("train/loss_step")
    assert steps is not None and len(steps) == 2 * (1797 // 64)
    assert main(["diagnose", str(tmp_path / "run")]) == 0


def test_a_keras_fit_that_raised_keeps_its_steps(tmp_path: Path):
    pytest.importorskip("keras")
    pytest.importorskip("tensorflow")
    done = run_script(KERAS_RAISES, tmp_path / "run")
    assert done.returncode != 0 and "the user's own callback failed" in done.stderr
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "closed"
    # No epoch ended, so the step losses are the training loss: batches 0-20 (the
    # Doctor comes first in the callback list).
    steps = read_run_dir(tmp_path / "run").get("train/loss")
    assert steps is not None and steps.steps.tolist() == list(range(21))


def test_a_run_killed_before_its_first_write_says_so(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]):
    run_script(KILLED_AT_ONCE, tmp_path / "run")
    assert main(["diagnose", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "recorded nothing here yet (run.json status: running)" in err
