"""The Lightning callback: a real Trainer fit on digits under the live doctor."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pl = pytest.importorskip("lightning.pytorch")
import torch  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from lossdoctor.diagnosis import diagnose  # noqa: E402
from lossdoctor.lightning import DoctorCallback, epoch_metrics  # noqa: E402
from lossdoctor.sources.rundir import read_run_dir  # noqa: E402


class DigitsNet(pl.LightningModule):
    def __init__(self, lr: float, bias: float | None = None) -> None:
        super().__init__()
        self.lr = lr
        self.net = torch.nn.Sequential(
            torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)
        )
        if bias is not None:
            torch.nn.init.constant_(self.net[0].bias, bias)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss, on_step=True, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        out = self.net(x)
        self.log("val_loss", torch.nn.functional.cross_entropy(out, y))
        self.log("val_acc", (out.argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def loaders() -> tuple[DataLoader, DataLoader]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x - x.mean(0)) / (x.std(0) + 1e-8)
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    train = TensorDataset(xt[:1400], yt[:1400])
    val = TensorDataset(xt[1400:], yt[1400:])
    gen = torch.Generator().manual_seed(0)
    return DataLoader(train, batch_size=64, shuffle=True, generator=gen), DataLoader(val, 256)


def fit(run_dir: Path, module: pl.LightningModule, epochs: int = 3) -> DoctorCallback:
    torch.manual_seed(0)
    callback = DoctorCallback(run_dir, verbose=False)
    trainer = pl.Trainer(max_epochs=epochs, callbacks=[callback], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", devices=1)
    train, val = loaders()
    trainer.fit(module, train, val)
    return callback


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DoctorCallback]:
    run_dir = tmp_path_factory.mktemp("lightning") / "healthy"
    torch.manual_seed(0)
    return run_dir, fit(run_dir, DigitsNet(lr=0.1))


def test_a_healthy_fit_is_recorded_and_quiet(healthy):
    run_dir, callback = healthy
    run = read_run_dir(run_dir)
    assert len(run.series["train/loss_step"]) >= 3 * 21
    assert len(run.series["val/loss"]) == 3 and len(run.series["val/accuracy"]) == 3
    assert any(key.startswith("layer/") for key in run.series)
    d = callback.report()
    assert d.regime in {"still-learning", "converged"}
    layer_codes = {f.code for f in d.findings} & {
        "update-ratio-high", "update-ratio-low", "dead-units", "vanishing-gradients",
        "exploding-gradients", "saturated-activations", "poor-initialization", "nan-origin"}
    assert not layer_codes, d.codes()
    assert [f.code for f in diagnose(run).findings] == d.codes()


def test_dead_units_are_found_under_lightning(tmp_path: Path):
    callback = fit(tmp_path / "dead", DigitsNet(lr=0.1, bias=-8.0), epochs=2)
    assert "dead-units" in callback.report().codes()


def test_the_run_folder_reads_from_the_command_line(healthy):
    run_dir, _ = healthy
    out = subprocess.run([sys.executable, "-m", "lossdoctor", "diagnose", str(run_dir)],
                         capture_output=True, text=True, check=False)
    assert out.returncode in (0, 1) and "(lossdoctor;" in out.stdout


def test_epoch_metrics_use_lossdoctor_roles():
    metrics = {"val_loss": 0.5, "val_acc": torch.tensor(0.9), "train_loss_step": 1.0,
               "train_acc_epoch": 0.95, "lr-SGD": 0.1, "f1": 0.4}
    assert epoch_metrics(metrics) == {
        "val_loss": 0.5, "val_accuracy": metrics["val_acc"], "train_accuracy": 0.95, "f1": 0.4,
    }


def test_a_second_fit_with_the_same_callback_goes_on_in_the_same_run(tmp_path: Path):
    # Training in stages: a second Trainer (or trainer.fit again) with the callback
    # used before. Its first Doctor was closed by the first fit's end.
    torch.manual_seed(0)
    callback = DoctorCallback(tmp_path / "run", verbose=False)
    module = DigitsNet(lr=0.1)
    train, val = loaders()
    for epochs in (2, 4):
        trainer = pl.Trainer(max_epochs=epochs, callbacks=[callback], logger=False,
                             enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, accelerator="cpu", devices=1)
        trainer.fit(module, train, val)
    assert "monitor-error" not in callback.report().codes()
    run = read_run_dir(tmp_path / "run")
    steps = run.series["train/loss_step"].steps
    assert len(steps) == (2 + 4) * 22 and (steps == range(len(steps))).all()
    assert len(run.series["val/loss"]) == 6
    weights = run.series["layer/net.0/weight_norm"].steps
    # Read in both fits, and densely again from the second one's start (every 5 steps).
    assert weights.min() < 2 * 22
    assert {44, 49, 54, 59, 64} <= set(weights.tolist())
    assert len(list((tmp_path / "run").glob("events.out.tfevents.*"))) == 2
    assert any("resumed at step 44" in w for w in run.warnings)


class LossRecordingNet(DigitsNet):
    """DigitsNet that keeps each training batch's own loss."""

    def __init__(self, lr: float) -> None:
        super().__init__(lr)
        self.batch_losses: list[float] = []

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.batch_losses.append(float(loss.detach()))
        return loss


def test_accumulated_batches_are_logged_once_per_optimizer_step(tmp_path: Path):
    # With accumulate_grad_batches=4 Lightning hands on_train_batch_end each batch's
    # loss divided by 4. Before, all of those were logged: a loss curve 4 times too low,
    # 4 log() calls per optimizer step, and a note telling the user to call log() once
    # per step, which a Lightning user cannot do.
    torch.manual_seed(0)
    module = LossRecordingNet(lr=0.1)
    callback = DoctorCallback(tmp_path / "run", verbose=False)
    trainer = pl.Trainer(max_epochs=2, callbacks=[callback], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", devices=1,
                         accumulate_grad_batches=4)
    train, val = loaders()
    trainer.fit(module, train, val)
    run = read_run_dir(tmp_path / "run")
    losses = run.series["train/loss_step"]
    assert len(losses) == trainer.global_step == 2 * 6  # 22 batches: 5 steps of 4, 1 of 2
    per_epoch = module.batch_losses[:22]
    expected = [sum(per_epoch[i:i + 4]) / len(per_epoch[i:i + 4]) for i in range(0, 22, 4)]
    assert losses.values[:6] == pytest.approx(expected, rel=1e-5)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["notes"] == []


def test_steps_a_float16_scaler_skips_are_counted_under_lightning(tmp_path: Path):
    # Lightning advances global_step on a step its GradScaler skipped, and the callback
    # logs it; the Doctor tells it by the non-finite gradients the step left. A scaler
    # that grows 1024-fold after every update overflows again at once.
    from lightning.pytorch.plugins import MixedPrecision

    torch.manual_seed(0)
    callback = DoctorCallback(tmp_path / "run", verbose=False)
    scaler = torch.amp.GradScaler("cpu", growth_factor=1024.0, growth_interval=1)
    trainer = pl.Trainer(max_epochs=2, callbacks=[callback], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", devices=1,
                         plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)])
    train, val = loaders()
    trainer.fit(DigitsNet(lr=0.1), train, val)
    run = read_run_dir(tmp_path / "run")
    skips = run.get("train/skipped_steps")
    assert skips is not None and skips.values[-1] > 0.5 * trainer.global_step
    assert "skipped-steps" in diagnose(run).codes()
    assert json.loads((tmp_path / "run" / "run.json").read_text())["notes"] == []
