"""The live doctor as a PyTorch Lightning callback.

    trainer = Trainer(callbacks=[lossdoctor.lightning.DoctorCallback("runs/c")])

It wraps `lossdoctor.torch.Doctor`: the LightningModule is the model, the trainer's
first optimizer is watched, each optimizer step's loss is logged without a host sync
(with `accumulate_grad_batches=k`, the mean of its k batches' losses, undoing
Lightning's division by k), and once per epoch the metrics Lightning collected
(`val_loss`, `val_acc`, ...) are logged under the roles lossdoctor knows.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from lossdoctor.diagnosis import Diagnosis
from lossdoctor.integrations.torch import Doctor, StopTraining
from lossdoctor.sources.names import classify

try:  # the unified package first, the older standalone one otherwise
    import lightning.pytorch as pl
except ImportError:  # pragma: no cover - depends on what the user installed
    import pytorch_lightning as pl  # type: ignore[no-redef]


def epoch_metrics(metrics: Mapping[str, Any]) -> dict[str, float | torch.Tensor]:
    """Lightning's callback metrics under the names Doctor.log_epoch knows:
    `val_loss`, `val_accuracy`, `train_accuracy`; other scalars keep their names."""
    out: dict[str, float | torch.Tensor] = {}
    for name, value in metrics.items():
        if isinstance(value, torch.Tensor) and value.numel() != 1:
            continue
        if not isinstance(value, torch.Tensor | int | float):
            continue
        split, kind, step_level = classify(name)
        if step_level:
            continue  # per-step values were logged step by step already
        if kind == "loss" and split in ("val", "test"):
            out.setdefault("val_loss", value)
        elif kind == "accuracy" and split in ("val", "test"):
            out.setdefault("val_accuracy", value)
        elif kind == "accuracy":
            out.setdefault("train_accuracy", value)
        elif kind is None:
            out[name.replace("/", "_")] = value
    return out


class DoctorCallback(pl.Callback):
    """Records per-layer signals and diagnoses while a Lightning Trainer fits.

    Options are those of `lossdoctor.torch.Doctor` (`every`, `dense_steps`,
    `on_finding`, `verbose`, ...). With `stop_on_critical=True` the trainer is asked
    to stop (`trainer.should_stop`) at the first critical finding; nothing is raised
    inside Lightning's loop. A later `fit` with the same callback goes on recording
    into the same run (`Doctor.resume`)."""

    def __init__(self, run_dir: str | os.PathLike[str], **doctor_options: Any) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.doctor_options = doctor_options
        self.doctor: Doctor | None = None
        self._pending: list[torch.Tensor | float] = []  # losses since the last step
        self._steps_seen = 0  # trainer.global_step at the last log

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self._pending, self._steps_seen = [], trainer.global_step
        optimizers = trainer.optimizers
        if not optimizers:
            return  # manual optimization without configure_optimizers: nothing to watch
        if self.doctor is not None and self.doctor.monitor.closed:
            # A later fit with this callback (training in stages): the same run.
            self.doctor.resume(optimizers[0])
            return
        self.doctor = Doctor(pl_module, optimizers[0], self.run_dir, **self.doctor_options)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.doctor is None:
            return
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, torch.Tensor | float):
            k = trainer.accumulate_grad_batches
            # With accumulation Lightning hands on the loss divided by k (what it
            # backpropagates): the batch's own loss is k times that.
            self._pending.append(loss * k if k > 1 and pl_module.automatic_optimization
                                 else loss)
        if trainer.global_step == self._steps_seen:
            return  # accumulating: one log per optimizer step, as the Doctor counts
        self._steps_seen = trainer.global_step
        pending, self._pending = self._pending, []
        mean: torch.Tensor | float | None = None
        if len(pending) == 1:
            mean = pending[0]
        elif pending:  # stays on the device: no sync
            mean = torch.stack([torch.as_tensor(v) for v in pending]).mean()
        try:
            self.doctor.log(loss=mean)
        except StopTraining:
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        # Lightning validates before this hook, so the epoch's val metrics are here.
        if self.doctor is None:
            return
        try:
            self.doctor.log_epoch(**epoch_metrics(trainer.callback_metrics))
        except StopTraining:
            trainer.should_stop = True

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        if self.doctor is not None:
            self.doctor.close()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        if self.doctor is not None:
            self.doctor.close()  # keep what was recorded up to the failure

    def report(self) -> Diagnosis:
        if self.doctor is None:
            raise RuntimeError("the callback has not seen a fit with an optimizer yet")
        return self.doctor.report()
