"""Live doctor for PyTorch: optimizer step hooks and forward hooks that record per-layer
signals into a lossdoctor run folder, and diagnose while training.

    doc = lossdoctor.torch.Doctor(model, optimizer, run_dir="runs/b")
    for x, y in loader:
        loss = criterion(model(x), y); loss.backward(); optimizer.step()
        doc.log(loss=loss)                      # a tensor is fine: no sync per step
    doc.log_epoch(val_loss=..., val_accuracy=...)
    doc.report(); doc.close()                   # or `with Doctor(...) as doc:`

Cost: nothing per step but keeping the loss tensor; on sampled steps (see `Schedule`)
fused `torch._foreach_norm` calls, a copy of the weights before the step, and a few
reductions per hooked activation, all left on the device. Values are read back in one
transfer per `every` steps.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

import numpy as np
import torch

from lossdoctor.diagnosis import Diagnosis
from lossdoctor.findings import Finding
from lossdoctor.live.monitor import LiveMonitor, StopTraining
from lossdoctor.live.schedule import Schedule

ACTIVATIONS = {
    "relu": "relu", "relu6": "relu", "leakyrelu": "leakyrelu", "elu": "relu", "gelu": "relu",
    "selu": "relu", "silu": "relu", "sigmoid": "sigmoid", "tanh": "tanh",
    "hardtanh": "tanh", "hardsigmoid": "sigmoid", "softsign": "tanh",
}
STATS = ("act_mean", "act_std", "dead_fraction", "saturated_fraction", "nan_count")
SATURATION = 0.99  # sigmoid outside [0.01, 0.99], |tanh| above 0.99
CHECK_INTERVAL_S = 10.0  # full diagnosis (new findings printed) at most this often
FLUSH_INTERVAL_S = 2.0  # event-file writes at most this often (and at each epoch end)

__all__ = ["Doctor", "StopTraining"]


def _first_tensor(out: Any) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, list | tuple):
        for item in out:
            if isinstance(item, torch.Tensor):
                return item
    return None


def _activation_stats(x: torch.Tensor, kind: str) -> torch.Tensor:
    """[mean, std, dead share, saturated share, non-finite flag] of one output, on its
    device, from a sum and a sum of squares (a separate isfinite pass or torch.std
    costs several times more on CPU). A unit (feature or channel, dim 1) is dead when
    it is <= 0 for every sample and position of the batch. The flag is 1 when the
    output held NaN/Inf (or overflowed float32 when squared)."""
    x = x.detach()
    if x.dtype != torch.float32:
        x = x.float()
    n = max(x.numel(), 1)
    sums = torch.stack([x.sum(), (x * x).sum()]) / n
    mean = sums[0]
    std = (sums[1] - mean * mean).clamp_min(0).sqrt()
    bad = (~torch.isfinite(sums)).any().float()
    nan = torch.full((), math.nan, device=x.device)
    dead = nan
    if kind == "relu" and x.dim() >= 2:
        dims = [d for d in range(x.dim()) if d != 1]
        dead = (x.amax(dim=dims) <= 0).float().mean()
    sat = nan
    if kind == "sigmoid":
        sat = ((x - 0.5).abs() > SATURATION - 0.5).float().mean()
    elif kind == "tanh":
        sat = (x.abs() > SATURATION).float().mean()
    return torch.stack([mean, std, dead, sat, bad])


class Doctor:
    """Records per-layer signals of `model` trained by `optimizer` into `run_dir`.

    every / dense_steps / dense_every: per-layer readings every `every` steps, every
        `dense_every` steps during the first `dense_steps` (see `Schedule`).
    on_finding: called with each finding the first time it appears.
    stop_on_critical: when a critical finding appears, `should_stop` becomes True and
        the next `log()` / `log_epoch()` raises `StopTraining` (never inside a hook).
    verbose: print one line per new finding to stderr (tqdm.write when tqdm is loaded).
    check_interval_s: diagnose (and print new findings) at most this often, at a
        read-back or an epoch end; always at `close()`. nan-origin and monitor-error
        are printed at once.
    flush_interval_s: write to the event file at most this often (and at every epoch
        end, `flush()` and `close()`): what a `kill -9` can lose.
    hparams: extra hyperparameters to store in run.json.

    Limits: activation statistics come from leaf modules (an `nn.ReLU`, not
    `F.relu` inside `forward`); the weights are copied before the step on sampled
    steps (memory: one model's parameters); nan-origin names the exact layer and step
    when the step went bad on a sampled step, otherwise the first layer seen bad on
    the next (then fully read) step, with `exact_step: no` in its evidence.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        run_dir: str | os.PathLike[str],
        *,
        every: int = 10,
        dense_steps: int = 100,
        dense_every: int = 5,
        check_interval_s: float = CHECK_INTERVAL_S,
        flush_interval_s: float = FLUSH_INTERVAL_S,
        hparams: Mapping[str, Any] | None = None,
        on_finding: Callable[[Finding], None] | None = None,
        stop_on_critical: bool = False,
        verbose: bool = True,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.schedule = Schedule(every, dense_steps, dense_every)
        self._in_opt = {id(p) for g in optimizer.param_groups for p in g["params"]}
        # Layers in depth order (registration order): those with weights in the
        # optimizer get weight/update/grad signals; those and activations get
        # activation statistics.
        self._param_layers: list[str] = []
        self._params: list[torch.nn.Parameter] = []
        self._param_layer: list[int] = []
        self._hooked: list[tuple[str, torch.nn.Module, str]] = []
        layers_meta: list[dict[str, Any]] = []
        for name, module in model.named_modules():
            own = [p for p in module.parameters(recurse=False) if id(p) in self._in_opt]
            cls = type(module).__name__
            kind = ACTIVATIONS.get(cls.lower(), "")
            leaf = not any(True for _ in module.children())
            if not own and not (leaf and kind):
                continue
            name = name or cls
            if own:
                for p in own:
                    self._params.append(p)
                    self._param_layer.append(len(self._param_layers))
                self._param_layers.append(name)
            if leaf:
                self._hooked.append((name, module, kind))
            layers_meta.append({"name": name, "type": cls, "kind": kind or cls.lower(),
                                "params": sum(p.numel() for p in own)})
        meta = {
            "framework": "torch",
            "framework_version": torch.__version__,
            "model": {"class": type(model).__name__,
                      "params": sum(p.numel() for p in model.parameters()),
                      "summary": str(model)[:20000]},
            "layers": layers_meta,
            "hparams": {"optimizer": type(optimizer).__name__,
                        **_group_hparams(optimizer), **dict(hparams or {})},
        }
        self.monitor = LiveMonitor(run_dir, framework="torch", schedule=self.schedule,
                                   meta=meta, on_finding=on_finding,
                                   stop_on_critical=stop_on_critical, verbose=verbose)
        self.run_dir = self.monitor.store.run_dir
        self._step = 0  # steps logged by log()
        self._opt_step = 0  # optimizer steps taken
        self._epoch = 0
        self._epoch_losses_from = 0  # index into the epoch's step losses
        self._sampling = self.schedule.sampled(0)
        self._hunt = False  # read every step after a non-finite loss until its origin is seen
        self._acts: dict[int, torch.Tensor] = {}
        self._forward_order: list[int] = []
        self._grad_norms: torch.Tensor | None = None
        self._before: list[torch.Tensor] | None = None
        self._rows: list[tuple[int, torch.Tensor]] = []
        self._losses: list[tuple[int, torch.Tensor | float]] = []
        self._host_losses: list[tuple[int, float]] = []
        self._host_rows: list[tuple[list[int], np.ndarray]] = []
        self._host_lr: list[tuple[int, float | None]] = []
        self._epoch_loss_sum = 0.0
        self._epoch_loss_n = 0
        self._first_bad_loss: int | None = None
        self._last_check = time.monotonic()
        self._last_flush = time.monotonic()
        self.check_interval_s = check_interval_s
        self.flush_interval_s = flush_interval_s
        self._handles: list[Any] = []
        # Forward hooks exist only during sampled steps: a module with any hook leaves
        # PyTorch's fast call path, which costs on every step.
        self._fwd_handles: list[Any] = []
        self._set_forward_hooks(self._sampling)
        self._handles.append(optimizer.register_step_pre_hook(self._pre_step))
        self._handles.append(optimizer.register_step_post_hook(self._post_step))

    # --- hooks (each wrapped: a failure is one monitor-error, never a crash) --------------
    def _set_forward_hooks(self, on: bool) -> None:
        if on and not self._fwd_handles:
            with self.monitor.guard("hooks"):
                for i, (_, module, kind) in enumerate(self._hooked):
                    self._fwd_handles.append(
                        module.register_forward_hook(self._forward_hook(i, kind)))
        elif not on and self._fwd_handles:
            for h in self._fwd_handles:
                h.remove()
            self._fwd_handles = []

    def _forward_hook(self, index: int, kind: str) -> Callable[..., None]:
        def hook(module: torch.nn.Module, inputs: Any, output: Any) -> None:
            if not (self._sampling or self._hunt) or not module.training or index in self._acts:
                return
            with self.monitor.guard("activations"), torch.no_grad():
                x = _first_tensor(output)
                if x is not None:
                    self._acts[index] = _activation_stats(x, kind)
                    self._forward_order.append(index)

        return hook

    def _pre_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if not (self._sampling or self._hunt) or not self._params:
            return
        with self.monitor.guard("gradients"), torch.no_grad():
            grads = [p.grad if p.grad is not None else torch.zeros((), device=p.device)
                     for p in self._params]
            self._grad_norms = torch.stack(
                [n.float() for n in torch._foreach_norm(grads)])
        with self.monitor.guard("weights"), torch.no_grad():
            self._before = list(torch._foreach_mul([p.detach() for p in self._params], 1.0))

    def _post_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        step = self._opt_step
        try:
            if (self._sampling or self._hunt) and self._before is not None:
                with self.monitor.guard("updates"), torch.no_grad():
                    after = [p.detach() for p in self._params]
                    diffs = torch._foreach_sub(after, self._before)
                    w = torch.stack([n.float() for n in torch._foreach_norm(self._before)])
                    u = torch.stack([n.float() for n in torch._foreach_norm(diffs)])
                    g = self._grad_norms if self._grad_norms is not None else w * math.nan
                    nan_row = torch.full((len(STATS),), math.nan, device=w.device)
                    acts = [self._acts.get(i, nan_row).to(w.device)
                            for i in range(len(self._hooked))]
                    order = torch.full((len(self._hooked),), -1.0, device=w.device)
                    if self._forward_order:
                        order[torch.tensor(self._forward_order, device=w.device)] = \
                            torch.arange(len(self._forward_order), device=w.device,
                                         dtype=torch.float32)
                    self._rows.append((step, torch.cat([w, u, g, *acts, order])))
        finally:
            self._before = None
            self._grad_norms = None
            self._acts = {}
            self._forward_order = []
            self._opt_step += 1
            self._sampling = self.schedule.sampled(self._opt_step)
            self._set_forward_hooks(self._sampling or self._hunt)

    # --- user calls ---------------------------------------------------------------------
    def log(self, loss: torch.Tensor | float | None = None, **scalars: float) -> None:
        """Record this step's loss (a tensor is kept as is and read back later) and any
        other per-step scalars (`train/<name>_step`). Call once per optimizer step."""
        step = self._step
        with self.monitor.guard("log"):
            if loss is not None:
                value = loss.detach().reshape(()) if isinstance(loss, torch.Tensor) \
                    else float(loss)
                self._losses.append((step, value))
            for name, v in scalars.items():
                self.monitor.scalar(f"train/{name}_step", _to_float(v), step)
        self._step += 1
        if self.schedule.sync_due(step) or self._hunt:
            self._sync()
        self.monitor.raise_if_stopping()

    def log_epoch(self, **metrics: float | torch.Tensor) -> None:
        """Record end-of-epoch metrics: `val_loss`, `val_accuracy`, `train_accuracy`,
        `train_loss` (by default the mean of the epoch's step losses), any other name
        as `epoch/<name>`."""
        self._sync()
        step = max(self._step - 1, 0)
        with self.monitor.guard("log_epoch"):
            given = {_epoch_tag(k): _to_float(v) for k, v in metrics.items()}
            if "epoch/train_loss" not in given and self._epoch_loss_n:
                given["epoch/train_loss"] = self._epoch_loss_sum / self._epoch_loss_n
            for tag, value in given.items():
                self.monitor.scalar(tag, value, step)
            self.monitor.scalar("epoch", float(self._epoch), step)
        self.flush()
        self._epoch_loss_sum, self._epoch_loss_n = 0.0, 0
        self._epoch += 1
        if time.monotonic() - self._last_check >= self.check_interval_s:
            self._check()
        self.monitor.raise_if_stopping()

    def flush(self) -> None:
        """Read back what is on the device and write everything to disk now."""
        self._sync()
        self._drain()
        self._last_flush = time.monotonic()
        self.monitor.flush()

    @property
    def should_stop(self) -> bool:
        return self.monitor.should_stop

    def report(self) -> Diagnosis:
        """The diagnosis of everything recorded so far (what `lossdoctor diagnose
        RUN_DIR` says once the run is closed)."""
        if not self.monitor.closed:
            self._sync()
            self._drain()
        return self.monitor.report()

    def close(self) -> None:
        if self.monitor.closed:
            return
        self._sync()
        self._drain()
        self._set_forward_hooks(False)
        for h in self._handles:
            h.remove()
        self._handles = []
        self._check()
        self.monitor.close()

    def __enter__(self) -> Doctor:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # --- reading back -------------------------------------------------------------------
    def _check(self) -> None:
        self._drain()
        self._last_check = time.monotonic()
        self.monitor.check()

    def _sync(self) -> None:
        """Move everything kept on the device to the host in one transfer. Values wait
        on the host until the next flush, where each series is written in one batch."""
        losses, rows = self._losses, self._rows
        self._losses, self._rows = [], []
        if losses or rows:
            with self.monitor.guard("sync"):
                tensors = [v.float().reshape(1) for _, v in losses
                           if isinstance(v, torch.Tensor)]
                parts = tensors + [r for _, r in rows]
                if len({t.device for t in parts}) > 1:
                    parts = [t.cpu() for t in parts]
                host = torch.cat(parts).cpu().numpy().astype(np.float64) if parts \
                    else np.zeros(0)
                it = iter(host[: len(tensors)].tolist())
                values = [next(it) if isinstance(v, torch.Tensor) else v for _, v in losses]
                self._take_losses([st for st, _ in losses], values)
                if rows:
                    width = (len(host) - len(tensors)) // len(rows)
                    table = host[len(tensors):].reshape(len(rows), width)
                    steps = [st for st, _ in rows]
                    self._host_rows.append((steps, table))
                    if not self.monitor.has_live_finding("nan-origin"):
                        self._find_nan_origin(steps, table)
                self._host_lr.append((losses[-1][0] if losses else rows[-1][0],
                                      self._current_lr()))
        now = time.monotonic()
        if now - self._last_flush >= self.flush_interval_s:
            self._last_flush = now
            self._drain()
            self.monitor.flush()
        if now - self._last_check >= self.check_interval_s:
            self._drain()
            self._check()

    def _drain(self) -> None:
        """Write the values waiting on the host into the store."""
        losses, rows, lrs = self._host_losses, self._host_rows, self._host_lr
        self._host_losses, self._host_rows, self._host_lr = [], [], []
        with self.monitor.guard("write"):
            store = self.monitor.store
            if losses:
                store.add_scalars("train/loss_step", [st for st, _ in losses],
                                  np.array([v for _, v in losses]))
            good = [(st, v) for st, v in lrs if v is not None]
            if good:
                store.add_scalars("lr", [st for st, _ in good],
                                  np.array([v for _, v in good], dtype=np.float64))
            if rows:
                self._write_rows([st for steps, _ in rows for st in steps],
                                 np.concatenate([t for _, t in rows]))

    def _take_losses(self, steps: list[int], values: list[float]) -> None:
        for st, v in zip(steps, values, strict=True):
            self._host_losses.append((st, v))
            if math.isfinite(v):
                self._epoch_loss_sum += v
            else:
                self._epoch_loss_sum = math.nan
            self._epoch_loss_n += 1
            if not math.isfinite(v) and self._first_bad_loss is None:
                self._first_bad_loss = st
                if not self.monitor.has_live_finding("nan-origin"):
                    self._hunt = True  # read the next step in full to find the origin
                    self._set_forward_hooks(True)

    def _current_lr(self) -> float | None:
        lr = self.optimizer.param_groups[0].get("lr")
        if isinstance(lr, torch.Tensor):
            lr = float(lr)
        return float(lr) if isinstance(lr, int | float) else None

    def _split(self, table: np.ndarray) -> tuple[np.ndarray, ...]:
        """(layer weight norms, update norms, grad norms, activation stats, forward
        order) of a read-back table; parameter norms are combined per layer."""
        n_p, n_l, n_a = len(self._params), len(self._param_layers), len(self._hooked)
        rows = table.shape[0]
        w, u, g = table[:, :n_p], table[:, n_p:2 * n_p], table[:, 2 * n_p:3 * n_p]
        acts = table[:, 3 * n_p:3 * n_p + n_a * len(STATS)].reshape(rows, n_a, len(STATS))
        order = table[:, 3 * n_p + n_a * len(STATS):]
        idx = np.asarray(self._param_layer, dtype=np.int64)

        def per_layer(norms: np.ndarray) -> np.ndarray:
            sq = np.zeros((rows, n_l))
            np.add.at(sq.T, idx, (norms ** 2).T)
            return np.sqrt(sq)

        return per_layer(w), per_layer(u), per_layer(g), acts, order

    def _write_rows(self, steps: list[int], table: np.ndarray) -> None:
        lw, lu, lg, acts, _ = self._split(table)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = lu / lw
        for j, name in enumerate(self._param_layers):
            for tag, col in (("weight_norm", lw), ("update_norm", lu), ("update_ratio", ratio),
                             ("grad_norm", lg)):
                self.monitor.store.add_scalars(f"layer/{name}/{tag}", steps, col[:, j])
        for k, (name, _, kind) in enumerate(self._hooked):
            for c, stat in enumerate(STATS):
                if stat == "dead_fraction" and kind != "relu":
                    continue
                if stat == "saturated_fraction" and kind not in ("sigmoid", "tanh"):
                    continue
                col = acts[:, k, c]
                seen = ~np.isnan(acts[:, k, 4])  # the layer ran on that step
                if seen.any():
                    self.monitor.store.add_scalars(
                        f"layer/{name}/{stat}", [s for s, ok in zip(steps, seen, strict=True)
                                                  if ok], col[seen])

    def _find_nan_origin(self, steps: list[int], table: np.ndarray) -> None:
        _, _, grads, acts, order = self._split(table)
        for r, step in enumerate(steps):
            bad_fwd = [(order[r, k], k) for k in range(acts.shape[1])
                       if order[r, k] >= 0 and acts[r, k, 4] > 0]
            origin: tuple[str, str] | None = None
            if bad_fwd:
                origin = (self._hooked[min(bad_fwd)[1]][0], "forward output")
            else:
                # Backward runs from the output: the last layer with a bad gradient is
                # where it started.
                bad = [j for j in range(grads.shape[1]) if not math.isfinite(grads[r, j])]
                if bad:
                    origin = (self._param_layers[max(bad)], "gradient")
            if origin is None:
                continue
            first_bad = self._first_bad_loss
            exact = first_bad is None or first_bad >= step
            evidence: dict[str, Any] = {"where": origin[1], "observed_at_step": step,
                                        "exact_step": "yes" if exact else "no"}
            if first_bad is not None:
                evidence["loss_nonfinite_from_step"] = first_bad
            self.monitor.live_finding(
                "nan-origin", step=step, epoch=self._epoch, layer=origin[0], evidence=evidence,
                title=f"NaN/Inf first appeared in the {origin[1]} of {origin[0]} "
                f"(step {step})")
            self._hunt = False
            return


def _epoch_tag(name: str) -> str:
    if name in ("loss", "accuracy", "acc"):
        return f"epoch/train_{name}"
    return f"epoch/{name}"


def _to_float(value: Any) -> float:
    if isinstance(value, torch.Tensor):
        return float(value.detach().float().cpu())
    return float(value)


def _group_hparams(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    group = optimizer.param_groups[0] if optimizer.param_groups else {}
    out: dict[str, Any] = {}
    for k, v in group.items():
        if k == "params":
            continue
        if isinstance(v, torch.Tensor):
            v = v.tolist()
        if isinstance(v, bool | int | float | str) or v is None:
            out[k] = v
        elif isinstance(v, tuple | list):
            out[k] = [x if isinstance(x, int | float) else str(x) for x in v]
    return out
