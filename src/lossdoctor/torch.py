"""`lossdoctor.torch.Doctor`: the live doctor for PyTorch (needs `lossdoctor[torch]`)."""

from lossdoctor.integrations.torch import Doctor, StopTraining

__all__ = ["Doctor", "StopTraining"]
