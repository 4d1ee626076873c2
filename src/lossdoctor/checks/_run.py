"""Drives every check through a Probe; framework-neutral."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from lossdoctor.checks import (
    gradients,
    init_scale,
    initial_loss,
    inputs,
    labels,
    outliers,
    outputs,
    overfit,
    regularization,
)
from lossdoctor.checks._data import take_sample
from lossdoctor.checks._metrics import accuracy, is_classification, n_classes
from lossdoctor.checks._probe import CheckSkipped, Probe
from lossdoctor.checks._report import CheckReport
from lossdoctor.findings import Finding, make_finding

INITIAL_BATCH = 32


@dataclass(frozen=True)
class CheckOptions:
    samples: int = 256  # size of the sample every check works on
    seed: int = 0
    checks: tuple[str, ...] | None = None  # names from CHECK_NAMES; None = all
    overfit_samples: int = 32  # 16-64: a batch any working network memorizes
    overfit_steps: int = 150
    overfit_lr: float = 1e-2  # Adam; high enough to memorize fast, low enough to be safe
    shuffle_steps: int = 40  # each of the two copies in the shuffled-labels check
    shuffle_lr: float = 3e-3
    grad_samples: int = 4
    grad_entries: int = 48


@dataclass
class Context:
    probe: Probe
    x: np.ndarray
    y: np.ndarray
    x_all: np.ndarray | None
    x_val: np.ndarray | None
    options: CheckOptions
    rng: np.random.Generator
    notes: list[str] = field(default_factory=list)
    cache: dict[str, Any] = field(default_factory=dict)
    # Set when the data make training checks meaningless (NaN inputs, bad labels).
    blocked: str | None = None

    def initial_losses(self) -> np.ndarray:
        if "losses" not in self.cache:
            self.cache["losses"] = np.asarray(self.probe.sample_losses(self.x, self.y),
                                              dtype=np.float64)
        result: np.ndarray = self.cache["losses"]
        return result

    def outputs(self) -> np.ndarray:
        if "outputs" not in self.cache:
            self.cache["outputs"] = np.asarray(self.probe.outputs(self.x), dtype=np.float64)
        result: np.ndarray = self.cache["outputs"]
        return result

    def need_loss(self) -> None:
        if self.probe.loss is None:
            raise CheckSkipped("no loss was given and the model has none compiled; pass "
                               "loss=...")

    def need_trainable_data(self) -> None:
        if self.blocked:
            raise CheckSkipped(self.blocked)


def _inputs(ctx: Context) -> list[Finding]:
    found: list[Finding] = []
    nonfinite = inputs.nonfinite_finding(ctx.x)
    if nonfinite is not None:
        found.append(nonfinite)
        ctx.blocked = "the inputs hold NaN/Inf (see input-problem); training on them " \
                      "says nothing about the model"
    if ctx.probe.takes_indices and np.issubdtype(np.asarray(ctx.x).dtype, np.integer):
        ctx.notes.append("Integer inputs into a model with an embedding layer are read as "
                         "indices (token ids, categories): their scale is not checked.")
    elif (scale := inputs.scale_finding(ctx.x)) is not None:
        found.append(scale)
    if ctx.x_val is not None and ctx.x_all is not None:
        overlap = inputs.overlap_finding(ctx.x_all, ctx.x_val)
        if overlap is not None:
            found.append(overlap)
    elif ctx.x_val is None:
        ctx.notes.append("No validation data given (x_val=...): the train/validation "
                         "overlap check did not run.")
    return found


def _labels(ctx: Context) -> list[Finding]:
    ctx.need_loss()
    assert ctx.probe.loss is not None
    found = labels.static_findings(ctx.y, ctx.probe.loss, n_classes(ctx.outputs()))
    if any(f.severity.rank >= 2 for f in found):
        ctx.blocked = "the labels do not fit the loss (see label-problem)"
    return found


def _outputs(ctx: Context) -> list[Finding]:
    ctx.need_loss()
    assert ctx.probe.loss is not None
    out = ctx.outputs()
    f = outputs.verdict(outputs.describe_outputs(out), ctx.probe.loss, out)
    return [f] if f else []


def _initial_loss(ctx: Context) -> list[Finding]:
    ctx.need_loss()
    ctx.need_trainable_data()
    loss = ctx.probe.loss
    assert loss is not None
    expected = initial_loss.expected_initial_loss(loss, n_classes(ctx.outputs()), ctx.y)
    if expected is None:
        raise CheckSkipped(f"no expected initial value is known for {loss.name}")
    # One batch through the loss as configured, so a summed reduction shows.
    n = min(len(ctx.x), INITIAL_BATCH)
    value = float(ctx.probe.batch_loss(ctx.x[:n], ctx.y[:n]))
    f = initial_loss.verdict(value, expected[0], expected[1], loss)
    if f is not None:
        f = replace(f, evidence={**f.evidence, "batch_size": n})
    return [f] if f else []


def _outliers(ctx: Context) -> list[Finding]:
    ctx.need_loss()
    ctx.need_trainable_data()
    f = outliers.verdict(ctx.initial_losses(), when="with the model's current weights",
                         labels=ctx.y)
    return [f] if f else []


def _regularization(ctx: Context) -> list[Finding]:
    ctx.need_loss()
    ctx.need_trainable_data()
    probe = ctx.probe.regularization(ctx.x, ctx.y)
    ctx.notes.extend(probe.notes)
    if not probe.declared:
        raise CheckSkipped("the model declares no regularization (no regularizers, no "
                           "weight decay, no regularizer=...), so there is nothing to "
                           "compare")
    f = regularization.verdict(probe)
    return [f] if f else []


def _initialization(ctx: Context) -> list[Finding]:
    scales = ctx.probe.activation_scales(ctx.x[: min(len(ctx.x), 128)])
    if len(scales) < init_scale.MIN_LAYERS:
        raise CheckSkipped(f"the model has {len(scales)} weighted layers; the scale "
                           f"trend needs at least {init_scale.MIN_LAYERS}")
    f = init_scale.verdict(scales)
    return [f] if f else []


def _gradients(ctx: Context) -> list[Finding]:
    ctx.need_loss()
    ctx.need_trainable_data()
    n = min(len(ctx.x), ctx.options.grad_samples)
    problem = ctx.probe.gradient_problem(ctx.x[:n], ctx.y[:n])
    if problem.dtype != "float64":
        ctx.notes.append(f"The gradient check ran in {problem.dtype}: a float64 copy of "
                         "this model could not be made, so its tolerance is looser.")
    results = gradients.run_gradient_check(problem, max_entries=ctx.options.grad_entries,
                                           seed=ctx.options.seed)
    if not results:
        raise CheckSkipped("the model has no trainable parameters to check")
    f = gradients.verdict(results, problem.dtype)
    return [f] if f else []


def _overfit(ctx: Context) -> list[Finding]:
    ctx.need_loss()
    ctx.need_trainable_data()
    o = ctx.options
    n = min(len(ctx.x), o.overfit_samples)
    x, y = ctx.x[:n], ctx.y[:n]
    loss = ctx.probe.loss
    classification = is_classification(loss)
    start = float(np.mean(ctx.probe.sample_losses(x, y)))
    stop = overfit.success_threshold(start, classification)
    trace = ctx.probe.train(x, y, steps=o.overfit_steps, lr=o.overfit_lr, stop_below=stop)
    acc = accuracy(trace.outputs, y, loss) if trace.outputs is not None else None
    if classification and acc is None and trace.error is None:
        acc = 0.0
    chance = None
    if loss is not None:
        expected = initial_loss.expected_initial_loss(loss, n_classes(ctx.outputs()), y)
        chance = expected[0] if expected and loss.kind != "mse" else None
    f = overfit.verdict(trace, samples=n, steps=o.overfit_steps, lr=o.overfit_lr,
                        accuracy=acc, chance=chance)
    return [f] if f else []


def _shuffled_labels(ctx: Context) -> list[Finding]:
    ctx.need_loss()
    ctx.need_trainable_data()
    o = ctx.options
    n = len(ctx.x)
    if n < 64:
        raise CheckSkipped(f"needs at least 64 samples, got {n}")
    half = n // 2
    xt, yt, xe, ye = ctx.x[:half], ctx.y[:half], ctx.x[half:], ctx.y[half:]
    start = float(np.mean(ctx.probe.sample_losses(xe, ye)))
    perm = ctx.rng.permutation(half)
    real = ctx.probe.train(xt, yt, steps=o.shuffle_steps, lr=o.shuffle_lr,
                           eval_x=xe, eval_y=ye)
    shuffled = ctx.probe.train(xt, yt[perm], steps=o.shuffle_steps, lr=o.shuffle_lr,
                               eval_x=xe, eval_y=ye)
    if real.error or shuffled.error or real.eval_losses is None or shuffled.eval_losses is None:
        raise CheckSkipped("the model cannot be trained (see cannot-overfit-small-batch)")
    real_loss = float(np.mean(real.eval_losses))
    shuffled_loss = float(np.mean(shuffled.eval_losses))
    if not math.isfinite(real_loss):
        raise CheckSkipped("training on the given labels produced NaN")
    f = labels.unrelated_verdict(start, real_loss, shuffled_loss, train_samples=half,
                                 steps=o.shuffle_steps)
    return [f] if f else []


# Order matters: data checks first, so training checks can stand down on bad data.
CHECKS: dict[str, Callable[[Context], list[Finding]]] = {
    "inputs": _inputs,
    "labels": _labels,
    "outputs": _outputs,
    "initial-loss": _initial_loss,
    "outliers": _outliers,
    "regularization": _regularization,
    "initialization": _initialization,
    "gradients": _gradients,
    "overfit": _overfit,
    "shuffled-labels": _shuffled_labels,
}
CHECK_NAMES: tuple[str, ...] = tuple(CHECKS)


def run_checks(
    probe: Probe,
    x: Any,
    y: Any,
    *,
    x_val: Any = None,
    options: CheckOptions | None = None,
) -> CheckReport:
    """Every selected check on a sample of (x, y); the probe owns the model copies."""
    o = options or CheckOptions()
    if o.checks is not None:
        unknown = sorted(set(o.checks) - set(CHECKS))
        if unknown:
            raise ValueError(f"unknown check(s) {', '.join(unknown)}; choose from "
                             f"{', '.join(CHECK_NAMES)}")
    rng = np.random.default_rng(o.seed)
    xs, ys, x_all = take_sample(x, y, o.samples, rng)
    xv = None
    if x_val is not None:
        from lossdoctor.checks._data import to_numpy

        xv = to_numpy(x_val)
    ctx = Context(probe, xs, ys, x_all, xv, o, rng)
    report = CheckReport(probe.framework, probe.model_name, len(xs))
    for name, fn in CHECKS.items():
        if o.checks is not None and name not in o.checks:
            continue
        t0 = time.perf_counter()
        try:
            found = fn(ctx)
        except CheckSkipped as skip:
            report.findings.append(make_finding(
                "check-skipped",
                title=f"Check '{name}' did not run: {skip}",
                evidence={"check": name, "reason": str(skip)},
            ))
            continue
        except Exception as exc:  # one broken check must not hide the others
            report.findings.append(make_finding(
                "monitor-error",
                title=f"Check '{name}' failed with {type(exc).__name__}",
                evidence={"check": name, "error": f"{type(exc).__name__}: {exc}"},
                explanation="lossdoctor could not complete this check on this model; "
                "the other checks are unaffected. The error may itself point at a "
                "problem (shapes, dtypes) in the model or data.",
            ))
            continue
        finally:
            report.seconds[name] = time.perf_counter() - t0
        if found:
            report.findings.extend(found)
        else:
            report.passed.append(name)
    report.notes.extend(ctx.notes)
    report.sort()
    return report
