"""`lossdoctor.lightning.DoctorCallback`: the live doctor for PyTorch Lightning."""

from lossdoctor.integrations.lightning import DoctorCallback, epoch_metrics

__all__ = ["DoctorCallback", "epoch_metrics"]
