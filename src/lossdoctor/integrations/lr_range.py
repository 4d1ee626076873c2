"""`lossdoctor.lr_range_test(model, x, y, loss=..., ...)`: dispatches to the Keras or
PyTorch implementation by the model's type, importing only the framework it uses."""

from __future__ import annotations

from typing import Any

from lossdoctor.checks import framework_of
from lossdoctor.checks.lr_range import LRRangeResult


def lr_range_test(model: Any, x: Any, y: Any = None, **kwargs: Any) -> LRRangeResult:
    """Exponentially increasing LR over a short run on a copy of `model`.

    Returns an LRRangeResult: the curve (lrs, losses, smoothed) and suggested_lr.
    Keyword arguments: loss (required for PyTorch; Keras defaults to the compiled
    loss), optimizer, start_lr=1e-6, end_lr=10, steps=100, batch_size=32,
    samples=2048, seed=0.
    """
    from lossdoctor._imports import try_import

    if framework_of(model) == "torch":
        try_import("torch", "torch")
        from lossdoctor.integrations.torch_checks import lr_range_test as torch_test

        return torch_test(model, x, y, **kwargs)
    try_import("tensorflow", "keras")
    from lossdoctor.integrations.keras_checks import lr_range_test as keras_test

    return keras_test(model, x, y, **kwargs)
