"""Pre-flight checks: what a careful engineer verifies before a long training job.

    report = lossdoctor.check(model, x, y)            # Keras or PyTorch
    print(report)                                     # or report.to_json()
    [f.code for f in report.findings]

Each check family lives in its own module as pure functions on numbers
(`initial_loss`, `regularization`, `overfit`, `gradients`, `outputs`, `labels`,
`inputs`, `outliers`, `init_scale`); `run_checks` drives them through a `Probe`
that an integration implements on copies of the user's model. A check that cannot
run becomes a `check-skipped` info; one that raises becomes `monitor-error` and the
others still run.
"""

from __future__ import annotations

import importlib
from typing import Any

from lossdoctor.checks._report import CheckReport
from lossdoctor.checks._run import CHECK_NAMES, CheckOptions, run_checks

__all__ = ["CHECK_NAMES", "CheckOptions", "CheckReport", "check", "framework_of", "run_checks"]


def framework_of(model: Any) -> str:
    """'torch' or 'keras' from the model's class hierarchy, importing nothing."""
    for cls in type(model).__mro__:
        root = cls.__module__.split(".")[0]
        if root == "torch":
            return "torch"
        if root in ("keras", "tf_keras") or (root == "tensorflow" and "keras" in cls.__module__):
            return "keras"
    raise TypeError(
        "lossdoctor.check needs a Keras model or a torch.nn.Module, but got "
        f"{type(model).__module__}.{type(model).__qualname__}"
    )


def check(
    model: Any,
    x: Any = None,
    y: Any = None,
    *,
    loss: Any = None,
    optimizer: Any = None,
    x_val: Any = None,
    y_val: Any = None,
    regularizer: Any = None,
    checks: tuple[str, ...] | list[str] | None = None,
    samples: int = 256,
    seed: int = 0,
    **options: Any,
) -> CheckReport:
    """Run the pre-flight checks on copies of `model`; the model, its optimizer and
    the data are left exactly as they were.

    model: a Keras model (compiled or not) or a torch.nn.Module.
    x, y: arrays/tensors, or x = a dataset/loader of (x, y) batches and y = None
        (the first `samples` samples are used). For a Keras model with several
        outputs, y is a list or dict (by output key) of arrays, and each output with
        a loss is checked on its own (its findings say which).
    loss: overrides the compiled loss (Keras) / the loss to use (PyTorch:
        an nn.Module loss or a function(output, target)).
    optimizer: read for its regularization settings (PyTorch weight_decay); the
        checks train their own copies with Adam and never step it.
    x_val, y_val: validation data, for the train/validation overlap check.
    regularizer: PyTorch only: function(model) -> penalty added to the loss.
    checks: names from CHECK_NAMES to run (default: all).
    options: fields of CheckOptions (overfit_samples, overfit_steps, ...).
    """
    framework = framework_of(model)
    from lossdoctor._imports import try_import

    if framework == "torch":
        try_import("torch", "torch")
    else:
        try_import("tensorflow", "keras")
    integration: Any = importlib.import_module(f"lossdoctor.integrations.{framework}_checks")
    opts = CheckOptions(samples=samples, seed=seed, checks=tuple(checks) if checks else None,
                        **options)
    report: CheckReport = integration.check(
        model, x, y, loss=loss, optimizer=optimizer, x_val=x_val, y_val=y_val,
        regularizer=regularizer, options=opts)
    return report

