"""Adapters for ensembles: class probabilities (or logits) of a PyTorch or Keras model
as a numpy array. The ensemble code itself never imports a framework."""

from __future__ import annotations

from typing import Any

import numpy as np


def framework_predict(model: Any, x: Any) -> np.ndarray:
    if type(model).__module__.split(".")[0] in ("keras", "tensorflow", "tf_keras"):
        return np.asarray(model.predict(x, verbose=0))
    import torch

    was_training = model.training
    model.eval()  # dropout off, batch-norm statistics frozen, as for any evaluation
    try:
        with torch.no_grad():
            xt = x if isinstance(x, torch.Tensor) else torch.as_tensor(
                np.asarray(x, dtype=np.float32))
            return np.asarray(model(xt).detach().cpu().numpy())
    finally:
        model.train(was_training)
