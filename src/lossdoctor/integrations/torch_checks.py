"""PyTorch side of the pre-flight checks and of the LR range test.

Every method works on a deep copy of the user's module (`copy.deepcopy`), so the
user's weights, buffers, train/eval flag and optimizer state stay as they were.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from lossdoctor.checks._data import take_sample, to_numpy
from lossdoctor.checks._probe import LossInfo, RegularizationProbe, TrainTrace
from lossdoctor.checks._report import CheckReport
from lossdoctor.checks._run import CheckOptions, run_checks
from lossdoctor.checks.lr_range import LRRangeResult, Smoother, lr_sequence, suggest

_KNOWN: dict[str, tuple[str, str, str]] = {
    # name: (kind, expects, target)
    "CrossEntropyLoss": ("softmax-ce", "logits", "either"),
    "cross_entropy": ("softmax-ce", "logits", "either"),
    "NLLLoss": ("nll", "log-probabilities", "sparse"),
    "nll_loss": ("nll", "log-probabilities", "sparse"),
    "BCEWithLogitsLoss": ("binary-ce", "logits", "binary"),
    "binary_cross_entropy_with_logits": ("binary-ce", "logits", "binary"),
    "BCELoss": ("binary-ce", "probabilities", "binary"),
    "binary_cross_entropy": ("binary-ce", "probabilities", "binary"),
    "MSELoss": ("mse", "any", "any"),
    "mse_loss": ("mse", "any", "any"),
}


def loss_info(loss: Any) -> LossInfo:
    name = type(loss).__name__ if isinstance(loss, nn.Module) else getattr(
        loss, "__name__", type(loss).__name__)
    kind, expects, target = _KNOWN.get(name, ("other", "any", "any"))
    setting = f"nn.{name}" if isinstance(loss, nn.Module) else f"F.{name}"
    return LossInfo(name, kind, expects, target, setting)  # type: ignore[arg-type]


def _device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for p in model.parameters():
        if p.is_floating_point():
            return p.device, p.dtype
    return torch.device("cpu"), torch.float32


class TorchProbe:
    framework = "torch"

    def __init__(self, model: nn.Module, loss: Any, optimizer: Any, regularizer: Any) -> None:
        self._original = model
        # The checks run on copies of the module itself: compiled, each copy's first
        # call would compile again, and dynamo would trace the checks' hooks.
        module = getattr(model, "_orig_mod", model)  # torch.compile(model)
        # The template never trains; each training run starts from a copy of it.
        self._template = copy.deepcopy(module).eval()
        for m in self._template.modules():
            if getattr(m, "_compiled_call_impl", None) is not None:  # module.compile()
                m._compiled_call_impl = None
        self.model_name = type(module).__name__
        self.takes_indices = any(isinstance(m, nn.Embedding | nn.EmbeddingBag)
                                 for m in module.modules())
        self.n_parameters = sum(p.numel() for p in model.parameters())
        self._loss_fn = loss
        self.loss = loss_info(loss) if loss is not None else None
        self._optimizer = optimizer
        self._regularizer = regularizer
        self._device, self._dtype = _device_dtype(model)

    # -- tensors ---------------------------------------------------------------
    def _x(self, x: np.ndarray, dtype: torch.dtype | None = None) -> torch.Tensor:
        arr = np.asarray(x)
        if self.takes_indices and np.issubdtype(arr.dtype, np.integer):
            return torch.as_tensor(arr, device=self._device).long()  # embedding indices
        return torch.as_tensor(arr, device=self._device).to(dtype or self._dtype)

    def _y(self, y: np.ndarray, dtype: torch.dtype | None = None) -> torch.Tensor:
        arr = np.asarray(y)
        kind = self.loss.kind if self.loss else "other"
        if kind in ("softmax-ce", "nll") and np.issubdtype(arr.dtype, np.integer):
            return torch.as_tensor(arr, device=self._device).long().reshape(len(arr))
        if kind in ("softmax-ce", "nll") and arr.ndim == 1:
            return torch.as_tensor(arr, device=self._device).long()
        if np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_:
            return torch.as_tensor(arr.astype(np.float64), device=self._device).to(
                dtype or self._dtype)
        return torch.as_tensor(arr, device=self._device).to(dtype or self._dtype)

    def _fit_target(self, out: torch.Tensor, yt: torch.Tensor) -> torch.Tensor:
        # (N,) targets against an (N, 1) output: reshape for binary losses rather than
        # let them fail; label-problem has already judged the encoding.
        kind = self.loss.kind if self.loss else "other"
        if kind == "binary-ce" and yt.shape != out.shape and yt.numel() == out.numel():
            return yt.reshape(out.shape)
        return yt

    # -- losses ----------------------------------------------------------------
    def _per_sample(self, out: torch.Tensor, yt: torch.Tensor) -> torch.Tensor:
        fn = self._loss_fn
        yt = self._fit_target(out, yt)
        if isinstance(fn, nn.Module) and hasattr(fn, "reduction"):
            unreduced = copy.copy(fn)
            setattr(unreduced, "reduction", "none")  # noqa: B010 - typed as Tensor|Module
            values = unreduced(out, yt)
        elif getattr(fn, "__name__", "") in _KNOWN:
            values = fn(out, yt, reduction="none")
        else:  # an unknown loss: one call per sample
            values = torch.stack([fn(out[i : i + 1], yt[i : i + 1]).reshape(())
                                  for i in range(len(out))])
        result: torch.Tensor = values.reshape(len(out), -1).mean(dim=1)
        return result

    def _mean_loss(self, out: torch.Tensor, yt: torch.Tensor) -> torch.Tensor:
        return self._per_sample(out, yt).mean()

    def outputs(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return to_numpy(self._template(self._x(x))).astype(np.float64)

    def sample_losses(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = self._template(self._x(x))
            return to_numpy(self._per_sample(out, self._y(y))).astype(np.float64)

    def batch_loss(self, x: np.ndarray, y: np.ndarray) -> float:
        with torch.no_grad():
            out = self._template(self._x(x))
            value = self._loss_fn(out, self._fit_target(out, self._y(y)))
            return float(value.double().mean())  # a "none" reduction: its mean

    # -- regularization ----------------------------------------------------------
    def regularization(self, x: np.ndarray, y: np.ndarray) -> RegularizationProbe:
        declared: list[str] = []
        notes: list[str] = []
        with torch.no_grad():
            loss_off = float(self._mean_loss(self._template(self._x(x)), self._y(y)))
        probe = RegularizationProbe(declared, loss_off=loss_off, notes=notes)
        if self._regularizer is not None:
            declared.append(f"regularizer={getattr(self._regularizer, '__name__', 'callable')}")
            with torch.no_grad():
                penalty = self._regularizer(self._template)
            probe.loss_on = loss_off + float(penalty)
        opt = self._optimizer
        decays = [g.get("weight_decay", 0.0) for g in opt.param_groups] if opt else []
        if any(d > 0 for d in decays):
            declared.append(f"{type(opt).__name__}(weight_decay={max(decays):g})")
            notes.append("PyTorch applies weight_decay inside optimizer.step(), so it never "
                         "shows in the loss value; lossdoctor checked it instead with one "
                         "zero-gradient step of a copy of the optimizer on a copy of the "
                         "model (the weights must shrink).")
            probe.decay_active = self._decay_shrinks(opt)
        return probe

    def _decay_shrinks(self, opt: torch.optim.Optimizer) -> bool:
        params = list(self._original.parameters())
        index = {id(p): i for i, p in enumerate(params)}
        work = copy.deepcopy(self._original)
        copies = list(work.parameters())
        groups = []
        for g in opt.param_groups:
            if g.get("weight_decay", 0.0) <= 0:
                continue
            mine = [copies[index[id(p)]] for p in g["params"] if id(p) in index]
            if mine:
                groups.append({**{k: v for k, v in g.items() if k != "params"},
                               "params": mine})
        if not groups:
            return False
        opt_class: Any = type(opt)
        fresh = opt_class(groups)
        decayed = [p for g in groups for p in g["params"]]
        before = sum(float(p.detach().double().norm()) ** 2 for p in decayed)
        for p in decayed:
            p.grad = torch.zeros_like(p)
        fresh.step()
        after = sum(float(p.detach().double().norm()) ** 2 for p in decayed)
        return after < before

    # -- training -----------------------------------------------------------------
    def train(
        self,
        x: np.ndarray,
        y: np.ndarray,
        *,
        steps: int,
        lr: float,
        eval_x: np.ndarray | None = None,
        eval_y: np.ndarray | None = None,
        stop_below: float | None = None,
    ) -> TrainTrace:
        model = copy.deepcopy(self._template).eval()  # eval: dropout off (no regularization)
        params = [p for p in model.parameters() if p.requires_grad]
        trace = TrainTrace(losses=[], trainable=sum(p.numel() for p in params))
        if not params:
            trace.error = "no parameter has requires_grad=True (the model is frozen)"
            return trace
        opt = torch.optim.Adam(params, lr=lr)
        xt, yt = self._x(x), self._y(y)
        out = model(xt)
        for step in range(steps + 1):
            loss = self._mean_loss(out, yt)
            value = float(loss.detach())
            trace.losses.append(value)
            done = step == steps or not math.isfinite(value)
            if done or (stop_below is not None and value <= stop_below):
                break
            if not loss.requires_grad:
                trace.error = ("the loss does not depend on any parameter through the "
                               "autograd graph (it was detached or computed without grad)")
                return trace
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            if all(p.grad is None for p in params):
                trace.error = "backward() reached none of the trainable parameters"
                return trace
            opt.step()
            out = model(xt)
        trace.outputs = to_numpy(out).astype(np.float64)
        if eval_x is not None and eval_y is not None:
            with torch.no_grad():
                trace.eval_losses = to_numpy(
                    self._per_sample(model(self._x(eval_x)), self._y(eval_y))
                ).astype(np.float64)
        return trace

    # -- gradient check --------------------------------------------------------------
    def gradient_problem(self, x: np.ndarray, y: np.ndarray) -> _TorchGradProblem:
        return _TorchGradProblem(self, x, y)

    # -- initialization ------------------------------------------------------------------
    def activation_scales(self, x: np.ndarray) -> list[tuple[str, float]]:
        model = self._template
        scales: list[tuple[str, float]] = []
        hooks = []

        def hook_for(name: str) -> Callable[..., None]:
            def hook(_m: nn.Module, _i: Any, out: Any) -> None:
                if isinstance(out, torch.Tensor):
                    scales.append((name, float(out.detach().double().std())))

            return hook

        for name, module in model.named_modules():
            weight = getattr(module, "weight", None)
            own = list(module.parameters(recurse=False))
            if own and isinstance(weight, torch.Tensor) and weight.dim() >= 2:
                hooks.append(module.register_forward_hook(hook_for(name)))
        try:
            with torch.no_grad():
                model(self._x(x))
        finally:
            for h in hooks:
                h.remove()
        return scales


class _TorchGradProblem:
    def __init__(self, probe: TorchProbe, x: np.ndarray, y: np.ndarray) -> None:
        self._probe = probe
        self.model = copy.deepcopy(probe._template).double().eval()
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        self.names: Sequence[str] = [n for n, _ in named]
        self._params = [p for _, p in named]
        self.shapes: Sequence[tuple[int, ...]] = [tuple(p.shape) for p in self._params]
        self.dtype: str = "float64"
        self._x = probe._x(x, torch.float64)
        self._yt = probe._y(y, torch.float64)

    def _loss(self) -> torch.Tensor:
        return self._probe._mean_loss(self.model(self._x), self._yt)

    def analytic(self) -> list[np.ndarray]:
        for p in self._params:
            p.grad = None
        loss = self._loss()
        if loss.requires_grad:
            loss.backward()  # type: ignore[no-untyped-call]
        return [to_numpy(p.grad) if p.grad is not None else np.zeros(p.shape)
                for p in self._params]

    def value(self, param: int, flat_index: int) -> float:
        return float(self._params[param].detach().reshape(-1)[flat_index])

    def loss_at(self, param: int, flat_index: int, value: float) -> float:
        flat = self._params[param].data.view(-1)
        old = float(flat[flat_index])
        with torch.no_grad():
            flat[flat_index] = value
            try:
                return float(self._loss())
            finally:
                flat[flat_index] = old


def check(model: nn.Module, x: Any, y: Any, *, loss: Any, optimizer: Any, x_val: Any,
          y_val: Any, regularizer: Any, options: CheckOptions) -> CheckReport:
    del y_val  # only validation inputs are needed (overlap check)
    probe = TorchProbe(model, loss, optimizer, regularizer)
    report = run_checks(probe, x, y, x_val=x_val, options=options)
    if loss is None:
        report.notes.append("PyTorch modules carry no loss: pass loss=nn.CrossEntropyLoss() "
                            "(or yours) to run the loss-based checks.")
    return report


# -- LR range test ----------------------------------------------------------------------
def _batches(x: np.ndarray, y: np.ndarray, batch_size: int,
             rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    while True:
        order = rng.permutation(len(x))
        for i in range(0, len(x) - batch_size + 1, batch_size):
            idx = order[i : i + batch_size]
            yield x[idx], y[idx]


def lr_range_test(
    model: nn.Module,
    x: Any,
    y: Any = None,
    *,
    loss: Any,
    optimizer: Any = None,
    start_lr: float = 1e-6,
    end_lr: float = 10.0,
    steps: int = 100,
    batch_size: int = 32,
    samples: int = 2048,
    seed: int = 0,
) -> LRRangeResult:
    """Train a copy of `model` while the LR grows from start_lr to end_lr; the model and
    `optimizer` are untouched (a fresh optimizer of the same class is used, Adam when
    none is given)."""
    if loss is None:
        raise ValueError("lr_range_test needs loss=... for a PyTorch model")
    rng = np.random.default_rng(seed)
    xs, ys, _ = take_sample(x, y, samples, rng)
    probe = TorchProbe(model, loss, None, None)
    work = copy.deepcopy(model).train()
    params = [p for p in work.parameters() if p.requires_grad]
    if optimizer is not None:
        hyper = {k: v for k, v in optimizer.param_groups[0].items() if k != "params"}
        opt = type(optimizer)([{**hyper, "params": params}])
    else:
        opt = torch.optim.Adam(params)
    lrs = lr_sequence(start_lr, end_lr, steps)
    smoother = Smoother()
    losses: list[float] = []
    smoothed: list[float] = []
    stopped = False
    batches = _batches(xs, ys, min(batch_size, len(xs)), rng)
    for lr in lrs:
        for g in opt.param_groups:
            g["lr"] = float(lr)
        bx, by = next(batches)
        out = work(probe._x(bx))
        value = probe._mean_loss(out, probe._y(by))
        opt.zero_grad(set_to_none=True)
        value.backward()  # type: ignore[no-untyped-call]
        opt.step()
        losses.append(float(value.detach()))
        s, stop = smoother.add(losses[-1])
        smoothed.append(s)
        if stop:
            stopped = True
            break
    return suggest([float(v) for v in lrs[: len(losses)]], losses, smoothed, stopped)
