"""Live doctor for PyTorch: optimizer step hooks and forward hooks that record per-layer
signals into a lossdoctor run folder, and diagnose while training.

    doc = lossdoctor.torch.Doctor(model, optimizer, run_dir="runs/b")
    for x, y in loader:
        loss = criterion(model(x), y); loss.backward(); optimizer.step()
        doc.log(loss=loss)                      # a tensor is fine: no sync per step
    doc.log_epoch(val_loss=..., val_accuracy=...)
    doc.report(); doc.close()                   # or `with Doctor(...) as doc:`

Cost: nothing per step but keeping the loss tensor; on sampled steps (see `Schedule`)
fused `torch._foreach_norm` calls, a copy of the weights before the step, and two or
three reductions per hooked activation (a per-channel var_mean and a few small ops
more per BatchNorm layer that uses frozen running statistics), all left on the device
and stacked into one tensor per step.
Values are read back in one transfer per `every` steps and finished on the host.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, NamedTuple

import numpy as np
import torch

from lossdoctor.diagnosis import Diagnosis
from lossdoctor.findings import Finding
from lossdoctor.integrations.torch_functional import FunctionCalls
from lossdoctor.live.at_exit import close_at_exit
from lossdoctor.live.budget import OverheadBudget, ReadingPlan
from lossdoctor.live.host_stats import SATURATION
from lossdoctor.live.layer_order import in_call_order
from lossdoctor.live.monitor import HISTOGRAM_BINS, LiveMonitor, StopTraining
from lossdoctor.live.pacing import CHECK_INTERVAL_S, FLUSH_INTERVAL_S, Pacer
from lossdoctor.live.schedule import Schedule
from lossdoctor.run import SKIPPED_STEPS

ACTIVATIONS = {
    "relu": "relu", "relu6": "relu", "leakyrelu": "leakyrelu", "elu": "relu", "gelu": "relu",
    "selu": "relu", "silu": "relu", "sigmoid": "sigmoid", "tanh": "tanh",
    "hardtanh": "tanh", "hardsigmoid": "sigmoid", "softsign": "tanh",
}
STATS = ("act_mean", "act_std", "dead_fraction", "saturated_fraction", "nan_count")

__all__ = ["Doctor", "StopTraining"]


class _Layout(NamedTuple):
    """Where a sampled step's values sit in its stacked tensor (see `_host_table`)."""

    # (hooked index, elements, units, 0-d values, per-unit maxima follow), in run order
    acts: list[tuple[int, int, int, int, bool]]
    bns: list[tuple[int, bool, bool]]  # (BatchNorm index, shift measured, frozen)
    # The `Doctor._unit_layers` (indices) whose zero-gradient unit counts follow the
    # activations' per-unit maxima, one count each.
    zeros: tuple[int, ...] = ()


class _Transfer:
    """A tensor on its way to the host. On a CUDA device the copy is non-blocking,
    into pinned memory, and done once its event has passed, so the host never waits
    for the queued steps (waiting would leave the GPU idle while the host then works
    on the values); elsewhere it is copied at once."""

    def __init__(self, t: torch.Tensor) -> None:
        self.event: Any = None
        if t.device.type == "cuda":
            self.host = t.to("cpu", non_blocking=True)
            self.event = torch.cuda.Event()  # type: ignore[no-untyped-call]
            # On the stream the copy went to: the tensor's GPU, not the current one.
            self.event.record(torch.cuda.current_stream(t.device))
        else:
            self.host = t.cpu()

    def ready(self) -> bool:
        return self.event is None or bool(self.event.query())

    def wait(self) -> None:
        if self.event is not None:
            self.event.synchronize()


def _joined(scalars: list[torch.Tensor], vectors: list[torch.Tensor]) -> torch.Tensor:
    """0-d values stacked, then 1-d ones, as one float32 tensor (raises when they are
    on different devices: checking each one's device costs more than the stack)."""
    flat = torch.stack(scalars).float()
    return torch.cat([flat, *vectors]) if vectors else flat


def _gradient_values(p: torch.Tensor) -> torch.Tensor:
    """`p`'s gradient as a dense tensor of its values: a sparse one (an
    `Embedding(sparse=True)`) by its coalesced values, which have the same norm and
    histogram as the rows it touched; a zero scalar when `p` has none."""
    g = p.grad
    if g is None:
        return torch.zeros((), device=p.device)
    return g.coalesce().values() if g.is_sparse else g


def _first_tensor(out: Any) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, list | tuple):
        for item in out:
            if isinstance(item, torch.Tensor):
                return item
    return None


def _activation_stats(x: torch.Tensor, kind: str) -> tuple[list[torch.Tensor], int, int]:
    """Device reductions of one output, finished on the host by `Doctor._fill_rows`: its sum
    and sum of squares (one `dot`; torch.std or an isfinite pass cost several times
    more on CPU); for ReLUs each unit's maximum (a 1-D tensor, compared on the host),
    for sigmoid/tanh the number of saturated outputs. Returns (tensors, element count,
    unit count). A unit (feature or channel, dim 1) is dead when it is <= 0 for every
    sample and position of the batch. NaN/Inf in the output (or float32 overflow when
    squared) shows as a non-finite sum."""
    x = x.detach()
    if x.dtype != torch.float32:
        x = x.float()
    v = x.reshape(-1)
    out = [v.sum(), torch.dot(v, v)]
    units = x.shape[1] if x.dim() >= 2 else 0
    if kind == "relu" and units:
        out.append(x.amax(dim=[d for d in range(x.dim()) if d != 1]))
    elif kind == "sigmoid":
        out.append(((v - 0.5).abs_() > SATURATION - 0.5).sum())
    elif kind == "tanh":
        out.append((v.abs() > SATURATION).sum())
    return out, v.numel(), units


def _row_width(norms: int, lay: _Layout) -> int:
    """How many values one sampled step with layout `lay` read back."""
    return (norms + sum(k for _, _, _, k, _ in lay.acts) + sum(s for _, s, _ in lay.bns)
            + len(lay.zeros) + sum(units for _, _, units, _, vec in lay.acts if vec))


# Layers whose weight has one row per output unit (feature or channel): a unit whose row
# and bias get exactly zero gradient from a whole batch is inactive on all of it.
UNIT_LAYERS = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
# Weights stored in these lose updates below their precision (`Doctor._read_rounding`).
LOW_PRECISION = (torch.bfloat16, torch.float16)


def _zero_grad_units(parts: list[torch.Tensor], layer_ids: torch.Tensor) -> torch.Tensor:
    """How many units of each layer got no gradient at all from the step's batch (a
    1-d tensor): a ReLU after the layer, in a module or as `F.relu` in `forward`, that
    is off for every sample passes none back. `parts` holds one value per unit and
    layer: the bias gradient, or without a bias the count of nonzero gradients in the
    unit's weights (the bias alone decides where there is one: a unit whose inputs are
    all zero, the layer before it dead, still gets a bias gradient). `layer_ids` says
    which layer each value belongs to. A few kernels for all layers together (one per
    layer cost 40 us each on a CPU)."""
    silent = (torch.cat(parts) == 0).float()
    return torch.zeros(len(parts), device=silent.device).index_add_(0, layer_ids, silent)


def _bin_on_device(x: torch.Tensor) -> torch.Tensor:
    """[start, width, counts of `HISTOGRAM_BINS` equal bins] of `x`'s finite values
    over their [min, max], computed where `x` lives (no read-back)."""
    x = x.detach().reshape(-1).float()
    finite = torch.isfinite(x)
    lo = torch.where(finite, x, math.inf).min()
    hi = torch.where(finite, x, -math.inf).max()
    span = torch.where(hi > lo, hi - lo, torch.ones_like(lo))
    y = torch.where(finite, (x - lo) / span, -1.0)  # outside [0, 1]: left out
    counts = torch.histc(y, bins=HISTOGRAM_BINS, min=0.0, max=1.0)
    return torch.cat([torch.stack([lo, span]), counts])


def _bn_uses_running_stats(module: torch.nn.Module) -> bool | None:
    """For a BatchNorm layer: whether its running statistics are frozen (it normalizes
    with them, in eval mode, or they never move, momentum 0); None when it keeps none."""
    rm = getattr(module, "running_mean", None)
    if not isinstance(rm, torch.Tensor):
        return None
    return not module.training or getattr(module, "momentum", None) == 0


def _bn_shift(x: torch.Tensor, module: torch.nn.Module) -> torch.Tensor:
    """Mean over channels of |z| + |ln s|, where z is the batch mean minus the running
    mean in running standard deviations and s the batch std over the running std: 0
    when the batch matches the statistics the layer normalizes with."""
    x = x.detach().float()
    dims = [d for d in range(x.dim()) if d != 1]
    var, mean = torch.var_mean(x, dim=dims, correction=0)
    rm: torch.Tensor = getattr(module, "running_mean")  # noqa: B009 - typed as Module
    rv: torch.Tensor = getattr(module, "running_var")  # noqa: B009
    rm = rm.detach().float()
    rv = rv.detach().float() + float(getattr(module, "eps", 1e-5))
    z = (mean - rm).abs_().div_(rv.sqrt())
    return z.add_(var.clamp_min(1e-12).div_(rv).log_().abs_().mul_(0.5)).mean()


class Doctor:
    """Records per-layer signals of `model` trained by `optimizer` into `run_dir`.

    every / dense_steps / dense_every: weight, update and gradient norms every
        `dense_every` (5) steps during the first `dense_steps` (100), then every
        `every` (10) steps or more (see `max_overhead`); values are read back from the
        device once per such period.
    max_overhead: the share of training time the Doctor may take (default 0.01). It
        times its own work and the steps, and after the dense start lengthens the
        period between readings when they cost more than that (a small model on a
        CPU), up to `max_every` (default 10 x `every`); None keeps it at `every`.
        See `lossdoctor.live.budget`. The period in use is in run.json.
    activation_every: activation statistics (forward hooks) on every
        `activation_every`-th reading (default 2: every 10th step at the start, then
        every 20th or so). They are most of a reading's cost (about 0.07 ms per
        hooked layer on a 2-core CPU); 1 measures them at every reading.
    on_finding: called with each finding the first time it appears.
    stop_on_critical: when a critical finding appears, `should_stop` becomes True and
        the next `log()` / `log_epoch()` raises `StopTraining` (never inside a hook).
    verbose: print one line per new finding to stderr (tqdm.write when tqdm is loaded).
    check_interval_s: diagnose (and print new findings) at most this often, at a
        read-back or an epoch end; always at `close()`. nan-origin and monitor-error
        are printed at once.
    flush_interval_s: write to the event file at most this often (checked at every
        read-back and epoch end; and at `flush()` and `close()`): what a `kill -9` can
        lose. Both intervals grow when one diagnosis or write takes more than 0.5% of
        them (`lossdoctor.live.pacing`).
    hparams: extra hyperparameters to store in run.json.
    histogram_every: per-layer weight, gradient and activation histograms
        (`layer/<name>/weight_hist`, `grad_hist`, `act_hist`: 30 equal bins over the
        finite values' [min, max], binned on the device with `torch.histc`, read back
        in one transfer) on step 0 and every `histogram_every` (200) optimizer steps,
        as many times more as the budget spaces readings out; 0 disables them.
        Weights are taken before the step, like the weight norms; activations are the
        outputs of the hooked layers on that step's batch.

    Linear and Conv layers also record `zero_grad_fraction` with the activations: the
    share of their units (output features or channels) whose weights and bias got
    exactly zero gradient from the step's batch. A ReLU that is off for every sample
    passes no gradient back, so this finds dead units where the ReLU is no module
    (`F.relu` in `forward`) and no forward hook can see its output.

    BatchNorm layers (watched even when their weights are not trained) also record
    `bn_frozen` (1 while they normalize with, or never update, their running
    statistics: eval mode or momentum 0 in a training step) and, while frozen,
    `bn_shift` (see `_bn_shift`), for the frozen-batchnorm rule.

    Sigmoid and tanh called as functions in `forward` on a watched layer's output
    (`torch.sigmoid(self.fc1(x))`, `x.tanh()`, `F.sigmoid`) are read as a layer of their
    own, `sigmoid(fc1)`, next to `fc1` in run.json: mean, std and saturated fraction of
    their outputs (see `torch_functional`), on the steps that read activations.

    Limits: other activation statistics come from leaf modules (an `nn.ReLU`, not
    `F.relu` inside `forward`: those dead units show through `zero_grad_fraction`;
    a sigmoid of anything but a watched layer's output, such as a slice of it in a
    hand-written LSTM cell, is not read); the weights are copied
    before the step on sampled steps (memory: one model's parameters); nan-origin
    names the exact layer and step when the step went bad on a sampled step,
    otherwise the first layer seen bad on the next (then fully read) step, with
    `exact_step: no` in its evidence.
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
        max_overhead: float | None = 0.01,
        max_every: int | None = None,
        activation_every: int = 2,
        histogram_every: int = 200,
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
        if activation_every < 1:
            raise ValueError(f"activation_every >= 1 must hold, but got {activation_every}")
        self.activation_every = activation_every
        if histogram_every < 0:
            raise ValueError(f"histogram_every >= 0 must hold, but got {histogram_every}")
        self.histogram_every = histogram_every
        self._budget = OverheadBudget(max_overhead, every, max_every)
        self._reading_plan = ReadingPlan(self.schedule, self._budget)
        # torch.compile(model) and (Distributed)DataParallel wrap the module: layers are
        # named as in the module itself, so runs compare across set-ups.
        self._inner = getattr(model, "_orig_mod", model)
        if isinstance(self._inner, torch.nn.DataParallel
                      | torch.nn.parallel.DistributedDataParallel):
            self._inner = self._inner.module
        # Dynamo traces forward hooks into the compiled graph, and one added or removed
        # forces a recompile (or fails to trace: seen with torch 2.13 on a plain
        # Sequential); the optimizer's hooks run outside it and stay.
        self._no_forward_hooks = _compiled(model)
        layers_meta = self._collect_layers()
        meta = {
            "framework": "torch",
            "framework_version": torch.__version__,
            "model": {"class": type(model).__name__,
                      "params": sum(p.numel() for p in model.parameters()),
                      "summary": str(model)[:20000]},
            "layers": layers_meta,
            "activation_every": activation_every,
            "overhead": self._budget.to_dict(),
            "histogram_every": histogram_every,
            "hparams": {"optimizer": type(optimizer).__name__,
                        **_group_hparams(optimizer), **dict(hparams or {})},
            "notes": [],
        }
        self.monitor = LiveMonitor(run_dir, framework="torch", schedule=self.schedule,
                                   meta=meta, on_finding=on_finding,
                                   stop_on_critical=stop_on_critical, verbose=verbose)
        if self._no_forward_hooks:
            self.monitor.note("activations", "the model is compiled (torch.compile): "
                              "activation, BatchNorm and activation-histogram signals "
                              "skipped (forward hooks would change the compiled graph); "
                              "weights, updates and gradients are read")
        self.run_dir = self.monitor.store.run_dir
        self._readings = 0  # sampled steps so far
        self._next_hist = 0  # the next step with histograms
        self._cost = 0.0  # seconds spent in the Doctor since the last log()
        self._waited = 0.0  # of which waiting for an accelerator (see `_receive`)
        # Read-backs under way, in step order: each with what finishes its values.
        self._transfers: deque[tuple[_Transfer | None, Callable[[np.ndarray], None]]] = deque()
        self._last_log: float | None = None
        self._since_sync = 0  # steps logged since the last read-back
        self._did_read = ""  # what the step since the last log() read: "act", "read"
        self._worked = False  # the previous step read or read back (see `OverheadBudget`)
        self._edge = False  # an epoch ended since the last log()
        self._step = 0  # steps logged by log()
        self._opt_step = 0  # optimizer steps taken, and steps skipped (`_skipped`)
        self._opt_step_at_log = 0  # ... when log() was last called
        self._skip_checks = 3  # log() calls without a step whose gradients may still be
        # read to tell a skipped step (see `_skipped`); finite ones use them up
        self._skips = 0  # steps skipped so far
        self._epoch = 0
        self._hunt = False  # read every step after a non-finite loss until its origin is seen
        # What this step reads (set by `_plan`): layer norms, activations, histograms.
        self._sampling = self._acting = self._hist_due = False
        # This step's activation reductions, in forward order (dict order): hooked index
        # -> (0-d tensors, element count, unit count); BatchNorm: bn index -> shift.
        self._acts: dict[int, tuple[list[torch.Tensor], int, int]] = {}
        self._bn_vals: dict[int, tuple[torch.Tensor | None, bool]] = {}
        self._act_hists: dict[int, torch.Tensor] = {}  # hooked index -> `_bin_on_device`
        # Hooked layers seen by a forward hook this step, in the order they were called.
        self._seen: dict[int, None] = {}
        self._norms: list[torch.Tensor] = []  # gradient then weight norms, this step
        # This step's `_zero_grad_units` and the unit layers they count (see `_Layout`).
        self._zeros: tuple[torch.Tensor, tuple[int, ...]] | None = None
        self._unit_ids: dict[tuple[tuple[int, ...], torch.device], torch.Tensor] = {}
        self._before: list[torch.Tensor] | None = None
        self._snapshot: list[torch.Tensor] | None = None  # buffers behind `_before`
        # Sampled steps waiting on the device: (step, all values as one tensor, layout).
        self._rows: list[tuple[int, torch.Tensor, _Layout]] = []
        self._losses: list[tuple[int, torch.Tensor | float]] = []
        self._host_losses: list[tuple[list[int], np.ndarray]] = []  # read-back chunks
        # Read-back rows in step order: (steps, raw values, their layouts), or (steps,
        # finished table, None) for rows finished at once (see `_sync`).
        self._host_rows: list[tuple[list[int], np.ndarray, list[_Layout] | None]] = []
        self._host_lr: list[tuple[int, float | None]] = []
        self._epoch_loss_sum = 0.0
        self._epoch_loss_n = 0
        self._first_bad_loss: int | None = None
        self._counts_noted = False  # log() calls and optimizer steps parted (a note)
        self._writes, self._checks = Pacer(flush_interval_s), Pacer(check_interval_s)
        # Only the post-step hook stays on every step (it counts them); the pre-step
        # and forward hooks are there only on steps that read, since each costs on
        # every step it is there (a module with any hook leaves PyTorch's fast call
        # path; a hook call right after the step's kernels costs microseconds).
        self._post_handle: Any = None
        self._pre_handle: Any = None
        self._fwd_handles: list[Any] = []
        self._hook_fns: list[Callable[..., None]] = []
        self._functional = FunctionCalls(_activation_stats)  # sigmoid/tanh in forward
        self._reads = False  # the coming step reads something (set by `_plan`)
        self._next_event = 0  # the first optimizer step from which one may read
        self._hook_optimizer(True)
        close_at_exit(self)  # a script that never closes it keeps its last steps


    # --- hooks (each guarded: a failure is one monitor-error, never a crash) -------------
    # Plain try/except rather than `monitor.guard`: a context manager costs microseconds
    # per call, and these run once per layer per sampled step.
    def _opt_param_count(self) -> int:
        return sum(len(g["params"]) for g in self.optimizer.param_groups)

    def _collect_layers(self) -> list[dict[str, Any]]:
        """The layers to watch, in registration order (put in call order by the first
        forward pass that reads them: `_settle_order`): those with weights in the
        optimizer get weight/update/grad signals; those and activations get activation
        statistics. Returns run.json's `layers`."""
        self._order_settled = False
        self._n_opt_params = self._opt_param_count()
        in_opt = {id(p) for g in self.optimizer.param_groups for p in g["params"]}
        self._param_layers: list[str] = []
        self._params: list[torch.Tensor] = []  # the trained parameters
        self._param_layer: list[int] = []
        # Leaf modules, then the functional activations found on them (module None;
        # see `_functional_layer`).
        self._hooked: list[tuple[str, torch.nn.Module | None, str]] = []
        self._functional_index: dict[tuple[int, str], int] = {}  # (leaf, kind) -> hooked
        self._bns: list[tuple[str, torch.nn.Module]] = []
        self._bn_of: dict[int, int] = {}  # index into _hooked -> index into _bns
        # (layer index, weight's index in _params, bias's or None, units)
        self._unit_layers: list[tuple[int, int, int | None, int]] = []
        layers_meta: list[dict[str, Any]] = []
        for name, module in self._inner.named_modules():
            own = [p for p in module.parameters(recurse=False) if id(p) in in_opt]
            cls = type(module).__name__
            kind = ACTIVATIONS.get(cls.lower(), "")
            leaf = not any(True for _ in module.children())
            # BatchNorm is watched even when its weights are not trained (fine-tuning).
            bn = isinstance(module, torch.nn.modules.batchnorm._BatchNorm)
            if not own and not (leaf and (kind or bn)):
                continue
            name = name or cls
            if own:
                index = {id(p): len(self._params) + i for i, p in enumerate(own)}
                weight, bias = getattr(module, "weight", None), getattr(module, "bias", None)
                if isinstance(module, UNIT_LAYERS) and weight is not None \
                        and id(weight) in index:
                    self._unit_layers.append((len(self._param_layers), index[id(weight)],
                                              index.get(id(bias)), weight.shape[0]))
                for p in own:
                    self._params.append(p)
                    self._param_layer.append(len(self._param_layers))
                self._param_layers.append(name)
            if leaf and not self._no_forward_hooks:
                if bn:
                    self._bn_of[len(self._hooked)] = len(self._bns)
                    self._bns.append((name, module))
                self._hooked.append((name, module, kind))
            entry = {"name": name, "type": cls, "kind": kind or cls.lower(),
                     "params": sum(p.numel() for p in own)}
            if own:  # the weights' own precision (autocast keeps them float32)
                entry["dtype"] = str(own[0].dtype).removeprefix("torch.")
                if not any(p.requires_grad for p in own):
                    entry["frozen"] = True  # in the optimizer, but gets no gradient
            layers_meta.append(entry)
        return layers_meta

    def _settle_order(self) -> None:
        """run.json's layers in the order this step's forward pass called them (depth
        order for the layer rules), once per layout."""
        self._order_settled = True
        try:
            meta = self.monitor.store.meta
            ordered = in_call_order(meta["layers"], [self._hooked[i][0] for i in self._seen])
            if ordered != meta["layers"]:
                meta["layers"] = ordered
                self.monitor.store.write_meta()
        except Exception as exc:
            self.monitor.monitor_error("layers", exc)

    def _relayout(self) -> None:
        """The optimizer was given more (or fewer) parameters since the layers were
        collected (`add_param_group`: gradual unfreezing, Lightning's BaseFinetuning):
        what is read so far is written with the old layout, then the layers are
        collected again. This step's activations, taken with the old layout, are
        dropped."""
        self._sync(wait=True)
        self._drain()
        self._set_forward_hooks(False)
        self._hook_fns = []
        self._functional.leave()
        self._acts, self._bn_vals, self._act_hists, self._seen = {}, {}, {}, {}
        self._snapshot = self._before = None
        watched = set(self._param_layers)
        self.monitor.store.meta["layers"] = self._collect_layers()
        added = [n for n in self._param_layers if n not in watched]
        self.monitor.note("layers", f"the optimizer's parameters changed at step "
                          f"{self._opt_step}: {len(self._param_layers)} layers watched from "
                          "then on" + (f" (new: {', '.join(added[:8])}"
                                       f"{', ...' if len(added) > 8 else ''})" if added else ""))

    def _hook_optimizer(self, on: bool) -> None:
        """Attach the hooks (and plan the coming step) or take them all off."""
        if on and self._post_handle is None:
            self._post_handle = self.optimizer.register_step_post_hook(self._post_step)
            self._plan(self._opt_step)
        elif not on:
            if self._post_handle is not None:
                self._post_handle.remove()
                self._post_handle = None
            self._set_pre_hook(False)
            self._set_forward_hooks(False)

    def _set_pre_hook(self, on: bool) -> None:
        if on and self._pre_handle is None:
            self._pre_handle = self.optimizer.register_step_pre_hook(self._pre_step)
        elif not on and self._pre_handle is not None:
            self._pre_handle.remove()
            self._pre_handle = None

    def _set_forward_hooks(self, on: bool) -> None:
        if on and not self._fwd_handles:
            with self.monitor.guard("hooks"):
                modules = [(i, m, kind) for i, (_, m, kind) in enumerate(self._hooked)
                           if m is not None]
                if not self._hook_fns:  # made once: registration is on every sampled step
                    self._hook_fns = [self._forward_hook(i, kind) for i, _, kind in modules]
                for (_, module, _), fn in zip(modules, self._hook_fns, strict=True):
                    self._fwd_handles.append(module.register_forward_hook(fn))
                if modules:  # the functional activations, over the whole forward pass
                    self._fwd_handles.append(
                        self._inner.register_forward_pre_hook(self._enter_forward))
                    self._fwd_handles.append(self._inner.register_forward_hook(
                        self._leave_forward, always_call=True))
        elif not on and self._fwd_handles:
            for h in self._fwd_handles:
                h.remove()
            self._fwd_handles = []

    def _forward_hook(self, index: int, kind: str) -> Callable[..., None]:
        bn = self._bn_of.get(index)

        def hook(module: torch.nn.Module, inputs: Any, output: Any) -> None:
            # The model's mode, not the layer's: a BatchNorm put in eval mode for
            # fine-tuning still runs in a training step.
            if not self.model.training:
                return
            x = _first_tensor(output)
            if self._functional.on and x is not None:
                if kind:  # an nn.Sigmoid's own torch.sigmoid call is its reading
                    self._functional.covered(x)
                else:
                    self._functional.saw_output(x, index)
            if index in self._seen:
                return  # a module called twice in one step: its first call counts
            start = time.perf_counter()
            self._seen[index] = None
            if self._functional.on:  # the function watch need not see the Doctor's own ops
                with torch._C.DisableTorchFunction():
                    measure(module, inputs, x)
            else:
                measure(module, inputs, x)
            self._cost += time.perf_counter() - start

        def measure(module: torch.nn.Module, inputs: Any, x: torch.Tensor | None) -> None:
            if x is not None and self._hist_due:
                try:
                    self._act_hists[index] = _bin_on_device(x.detach())
                except Exception as exc:
                    self.monitor.monitor_error("histograms", exc)
            if self._acting or self._hunt:
                try:
                    if x is not None:
                        self._acts[index] = _activation_stats(x, kind)
                except Exception as exc:
                    self.monitor.monitor_error("activations", exc)
                if bn is not None:
                    try:
                        frozen = _bn_uses_running_stats(module)
                        x = _first_tensor(inputs)
                        if frozen is not None and x is not None and x.dim() >= 2:
                            self._bn_vals[bn] = (_bn_shift(x, module) if frozen else None,
                                                 frozen)
                    except Exception as exc:
                        self.monitor.monitor_error("batchnorm", exc)

        return hook

    def _enter_forward(self, module: torch.nn.Module, args: Any) -> None:
        if self.model.training and (self._acting or self._hunt):
            try:
                self._functional.enter()
            except Exception as exc:
                self.monitor.monitor_error("functional activations", exc)

    def _leave_forward(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        """The statistics of the saturating functions called on watched layers'
        outputs in this forward pass (`torch_functional`)."""
        if not self._functional.on:
            return
        start = time.perf_counter()
        try:
            calls = self._functional.leave()
            error, self._functional.error = self._functional.error, None
            if error is not None:
                self.monitor.monitor_error("functional activations", error)
            for leaf, kind, measured in calls:
                index = self._functional_layer(leaf, kind)
                if index not in self._acts:  # a second call in one step: the first counts
                    self._acts[index] = measured
        except Exception as exc:
            self.monitor.monitor_error("functional activations", exc)
        finally:
            self._cost += time.perf_counter() - start

    def _functional_layer(self, leaf: int, kind: str) -> int:
        """The index in `_hooked` of `kind` applied as a function to leaf `leaf`'s
        output, named `kind(leaf name)`; new ones go into run.json after that leaf."""
        index = self._functional_index.get((leaf, kind))
        if index is not None:
            return index
        self._drain()  # rows finished so far keep the table width they were made with
        leaf_name = self._hooked[leaf][0]
        name = f"{kind}({leaf_name})"
        index = len(self._hooked)
        self._hooked.append((name, None, kind))
        self._functional_index[(leaf, kind)] = index
        layers = self.monitor.store.meta["layers"]
        at = next((k + 1 for k, x in enumerate(layers) if x.get("name") == leaf_name),
                  len(layers))
        layers.insert(at, {"name": name, "type": "function", "kind": kind, "params": 0})
        self.monitor.store.write_meta()
        return index

    def _write_histograms(self, step: int) -> None:
        """Weight and gradient histograms per layer and the activation histograms the
        forward hooks binned on this step: each binned on the device over the
        tensor's finite [min, max], then one read-back for all of them."""
        n_l = len(self._param_layers)
        per_layer: list[list[torch.Tensor]] = [[] for _ in range(n_l)]
        grads_of: list[list[torch.Tensor]] = [[] for _ in range(n_l)]
        for p, j in zip(self._params, self._param_layer, strict=True):
            per_layer[j].append(p.detach().reshape(-1))
            if p.grad is not None:
                grads_of[j].append(_gradient_values(p).detach().reshape(-1))
        parts: list[torch.Tensor] = []
        tags: list[str] = []
        with torch.no_grad():
            for j, name in enumerate(self._param_layers):
                for kind, tensors in (("weight_hist", per_layer[j]), ("grad_hist", grads_of[j])):
                    if tensors:
                        parts.append(_bin_on_device(torch.cat(tensors)))
                        tags.append(f"layer/{name}/{kind}")
            for i, binned in sorted(self._act_hists.items()):
                parts.append(binned)
                tags.append(f"layer/{self._hooked[i][0]}/act_hist")
            if not parts:
                return
            dev = parts[0].device
            binned = torch.stack([t.to(dev) for t in parts]).double()

        def finish(host: np.ndarray) -> None:
            for tag, row in zip(tags, host, strict=True):
                self.monitor.histogram_row(tag, row, step)

        self._transfers.append((_Transfer(binned), finish))

    def _pre_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        # Attached only for the steps that read (`_plan`).
        start = time.perf_counter()
        try:
            if self._opt_param_count() != self._n_opt_params:
                with self.monitor.guard("layers"):
                    self._relayout()
            self._read_before_step()
        finally:
            self._cost += time.perf_counter() - start

    def _read_before_step(self) -> None:
        if self._hist_due:
            # As readings are spaced out by the budget, so are histograms.
            self._next_hist = self._opt_step + self.histogram_every * self._reading_plan.stretch
            try:
                self._write_histograms(self._opt_step)
            except Exception as exc:
                self.monitor.monitor_error("histograms", exc)
        if not (self._sampling or self._hunt) or not self._params:
            return
        try:
            # The parameters themselves (no_grad: nothing is recorded): a detach per
            # parameter costs about a microsecond each, per reading, on the host.
            with torch.no_grad():
                weights = self._params
                grads = [_gradient_values(p) for p in weights]
                # Gradient and weight norms in one fused call.
                self._norms = list(torch._foreach_norm(grads + weights))
                self._before = self._snapshot_of(weights)
        except Exception as exc:
            self.monitor.monitor_error("gradients", exc)
        if self._acting and self._unit_layers:  # with the activations: dead units show in both
            try:
                with torch.no_grad():
                    self._count_silent_units()
            except Exception as exc:
                self.monitor.monitor_error("zero-gradient units", exc)

    def _count_silent_units(self) -> None:
        """`_zero_grad_units` of the unit layers whose weights have a gradient now (one
        the loss did not reach this step has none: left out, not counted as dead)."""
        params, parts, counted = self._params, [], []
        for u, (_, w, b, units) in enumerate(self._unit_layers):
            weight_grad = params[w].grad
            if weight_grad is None:
                continue
            bias_grad = None if b is None else params[b].grad
            parts.append(bias_grad.reshape(-1) if bias_grad is not None else
                         torch.count_nonzero(weight_grad.reshape(units, -1), dim=1))
            counted.append(u)
        if not parts:
            return
        device = parts[0].device  # one device for the counts: a model may span several
        parts = [p if p.device == device else p.to(device) for p in parts]
        key = (tuple(counted), device)
        ids = self._unit_ids.get(key)
        if ids is None:  # which layer each unit belongs to, made once per layer set
            sizes = torch.tensor([p.numel() for p in parts])
            ids = torch.repeat_interleave(torch.arange(len(parts)), sizes).to(device)
            self._unit_ids[key] = ids
        self._zeros = (_zero_grad_units(parts, ids), key[0])

    def _read_rounding(self, step: int, changes: list[torch.Tensor]) -> None:
        """For weights stored in bfloat16/float16: per layer, the share of the weights
        with a gradient that the step left exactly as they were (`rounded_fraction`):
        an update below a weight's precision rounds back to it. `changes`: each
        weight's before - after. Other dtypes cost one look at each weight's dtype."""
        params = self._params
        low = [i for i, p in enumerate(params) if p.dtype in LOW_PRECISION]
        if not low:
            return
        kept, moved, layers = [], [], []
        for i in low:
            g = params[i].grad
            if g is None or g.is_sparse:
                continue
            has_grad = g != 0
            kept.append(torch.count_nonzero(has_grad & (changes[i] == 0)))
            moved.append(torch.count_nonzero(has_grad))
            layers.append(self._param_layer[i])
        if not kept:
            return

        def finish(host: np.ndarray) -> None:
            n = len(layers)
            share: dict[int, list[float]] = {}
            for j, k, m in zip(layers, host[:n], host[n:], strict=True):
                share.setdefault(j, [0.0, 0.0])
                share[j][0] += float(k)
                share[j][1] += float(m)
            for j, (k, m) in share.items():
                if m > 0:
                    self.monitor.store.add_scalars(
                        f"layer/{self._param_layers[j]}/rounded_fraction", [step],
                        np.array([k / m]))

        counts = torch.stack([*kept, *moved]).double()
        self._transfers.append((_Transfer(counts), finish))

    def _snapshot_of(self, weights: list[torch.Tensor]) -> list[torch.Tensor]:
        """The weights copied into buffers kept between readings: allocating and
        freeing a model-sized copy each time costs page faults, in the step that
        frees it and the one after. New buffers when the model moved to another
        device or dtype (checked on its first weight: models move whole) or a weight
        changed shape (the copy fails)."""
        held, first = self._snapshot, weights[0]
        if held is not None and held[0].device == first.device \
                and held[0].dtype == first.dtype:
            try:
                torch._foreach_copy_(held, weights)
                return held
            except RuntimeError:
                pass
        self._snapshot = held = list(torch._foreach_mul(weights, 1.0))
        return held

    def _post_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self._opt_step + 1 < self._next_event:
            # Nothing was read and the next step reads nothing: the usual case, kept to
            # a counter (its microsecond lands in the step's time, not the Doctor's).
            self._opt_step += 1
            return
        start = time.perf_counter()
        try:
            if self._reads or self._fwd_handles:
                self._read_after_step()
        finally:
            self._opt_step += 1
            self._plan(self._opt_step)
            self._cost += time.perf_counter() - start

    def _plan(self, step: int) -> None:
        """What `step` reads, with the pre-step hook only if it reads and forward hooks
        only if it reads activations; and the first step after it that may read."""
        self._sampling = self._reading_plan.due(step)
        self._acting = self._sampling and self._readings % self.activation_every == 0
        self._hist_due = bool(self.histogram_every) and step >= self._next_hist
        self._reads = self._sampling or self._hunt or self._hist_due
        if self._acting or self._hunt or self._hist_due or self._fwd_handles:
            self._set_forward_hooks(self._acting or self._hunt or self._hist_due)
        self._set_pre_hook(self._reads)
        if self._reads:
            self._next_event = step + 1  # planned again once this step is taken
        else:
            nxt = self._reading_plan.next_due(step)
            self._next_event = min(nxt, self._next_hist) if self.histogram_every else nxt

    def _read_after_step(self) -> None:
        step = self._opt_step
        try:
            if (self._sampling or self._hunt) and self._before is not None:
                with torch.no_grad():
                    before, n_p = self._before, len(self._params)
                    torch._foreach_sub_(before, self._params)
                    u = torch._foreach_norm(before)  # |before - after| = |update|
                    g, w = self._norms[:n_p], self._norms[n_p:]
                    # 0-d values first (one stack), then the 1-d per-unit maxima.
                    scalars = [*w, *u, *g]
                    vectors = []
                    acts = []
                    for i, (vals, n, c) in self._acts.items():
                        vec = len(vals) > 2 and vals[2].dim() == 1
                        scalars += vals[:2] if vec else vals
                        if vec:
                            vectors.append(vals[2])
                        acts.append((i, n, c, 2 if vec else len(vals), vec))
                    bns = []
                    for b, (shift, frozen) in self._bn_vals.items():
                        bns.append((b, shift is not None, frozen))
                        if shift is not None:
                            scalars.append(shift)
                    counted: tuple[int, ...] = ()
                    if self._zeros is not None:  # after the per-unit maxima
                        vectors.append(self._zeros[0])
                        counted = self._zeros[1]
                    # One tensor for the whole step: a handful of kernels, not dozens.
                    try:
                        flat = _joined(scalars, vectors)
                    except RuntimeError:  # on several devices (a model split over GPUs)
                        dev = w[0].device
                        flat = _joined([t.to(dev) for t in scalars],
                                       [t.to(dev) for t in vectors])
                    self._rows.append((step, flat, _Layout(acts, bns, counted)))
                    self._read_rounding(step, before)
        except Exception as exc:
            self.monitor.monitor_error("updates", exc)
        finally:
            if self._sampling:
                self._did_read = "act" if self._acting else "read"
                self._readings += 1
                self._reading_plan.taken(step)
            self._before = None
            self._norms = []
            self._zeros = None
            self._acts = {}
            self._bn_vals = {}
            self._act_hists = {}
            if self._seen and not self._order_settled:
                self._settle_order()
            self._seen = {}

    # --- user calls ---------------------------------------------------------------------
    def log(self, loss: torch.Tensor | float | None = None, **scalars: float) -> None:
        """Record this step's loss (a tensor is kept as is and read back later) and any
        other per-step scalars (`train/<name>_step`). Call once per optimizer step."""
        start = time.perf_counter()
        step = self._step
        if loss is not None:
            try:  # the whole per-step cost: one detach and an append
                self._losses.append((step, loss.detach() if isinstance(loss, torch.Tensor)
                                     else float(loss)))
            except Exception as exc:
                self.monitor.monitor_error("log", exc)
        if scalars:
            with self.monitor.guard("log"):
                for name, v in scalars.items():
                    self.monitor.scalar(f"train/{name}_step", _to_float(v), step)
        if self._opt_step == self._opt_step_at_log and self._skip_checks:
            with self.monitor.guard("skipped steps"):
                self._skipped(step)
        self._opt_step_at_log = self._opt_step
        self._step = step + 1
        self._since_sync += 1
        synced = self._since_sync >= self._reading_plan.period or self._hunt
        if synced:
            self._sync(wait=self._hunt)
        # The Doctor's own time on this step, for `max_overhead`.
        now = time.perf_counter()
        cost = max(self._cost + (now - start) - self._waited, 0.0)
        self._waited = 0.0
        work = self._did_read or ("sync" if synced else "")
        if self._last_log is None:  # the first step: its training time is unknown,
            self._budget.step(cost, cost, "edge")  # its own cost still counts
        else:
            kind = ("edge" if self._edge else work or ("after" if self._worked else "plain"))
            self._budget.step(now - self._last_log, cost, kind)
        self._last_log, self._cost, self._did_read = now, 0.0, ""
        self._worked, self._edge = bool(work), False
        if self.monitor.should_stop:
            self.monitor.raise_if_stopping()

    def _skipped(self, step: int) -> None:
        """No optimizer step since the last log(). When the gradients left behind hold
        Inf/NaN, the step was skipped for them (a GradScaler on overflow, a loop's own
        guard): it counts as a step without an update, so per-layer signals stay at the
        steps of log(), and `SKIPPED_STEPS` counts it. Finite gradients are gradient
        accumulation logged per micro-batch: after a few the check stops, since each
        costs a read-back."""
        grads = [_gradient_values(p) for p in self._params if p.grad is not None]
        if not grads:
            return  # zeroed after the step: nothing tells a skip from an accumulation
        with torch.no_grad():
            norms = torch._foreach_norm(grads)
            device = norms[0].device
            finite = bool(torch.isfinite(torch.stack([n.to(device) for n in norms])).all())
        if finite:
            self._skip_checks -= 1
            return
        self._opt_step += 1
        self._skips += 1
        # Activations a reading step's forward hooks took belong to no update.
        self._acts, self._bn_vals, self._act_hists = {}, {}, {}
        self.monitor.scalar(SKIPPED_STEPS, float(self._skips), step)
        self._plan(self._opt_step)

    def log_epoch(self, **metrics: float | torch.Tensor) -> None:
        """Record end-of-epoch metrics: `val_loss`, `val_accuracy`, `train_accuracy`,
        `train_loss` (by default the mean of the epoch's step losses), any other name
        as `epoch/<name>`."""
        start = time.perf_counter()
        try:
            self._end_epoch(metrics)
        finally:
            self._cost += time.perf_counter() - start  # charged to the next step
            self._edge = True
    def _end_epoch(self, metrics: Mapping[str, float | torch.Tensor]) -> None:
        step = max(self._step - 1, 0)
        given: dict[str, float] = {}
        with self.monitor.guard("log_epoch"):
            given = {_epoch_tag(k): _to_float(v) for k, v in metrics.items()}
            for tag, value in given.items():
                self.monitor.scalar(tag, value, step)
            self.monitor.scalar("epoch", float(self._epoch), step)
        own_loss = "epoch/train_loss" in given
        # The epoch's mean training loss once all its step losses are on the host: on
        # a GPU they arrive later (waiting for them would idle the GPU while the host
        # works), so it is queued behind them. Epoch values are written with the next
        # timed flush: epochs of a fraction of a second would otherwise pay a file
        # write each (about 2 ms).
        self._sync(then=lambda: self._epoch_loss(step, write=not own_loss))
        self._epoch += 1
        self._check_step_counts()
        with self.monitor.guard("layers"):
            self._mark_frozen()
        self.monitor.raise_if_stopping()

    def _mark_frozen(self) -> None:
        """run.json's `frozen` on the watched layers none of whose weights require a
        gradient now (frozen, or unfrozen, during training while in the optimizer),
        so that no-gradient leaves them be. A loop over the parameters per epoch."""
        trainable = {self._param_layers[j] for p, j in zip(self._params, self._param_layer,
                                                            strict=True) if p.requires_grad}
        names, changed = set(self._param_layers), False
        for entry in self.monitor.store.meta["layers"]:
            name = entry.get("name")
            if name not in names or bool(entry.get("frozen")) == (name not in trainable):
                continue
            changed = True
            if name in trainable:
                entry.pop("frozen", None)
            else:
                entry["frozen"] = True
        if changed:
            self.monitor.store.write_meta()

    def _check_step_counts(self) -> None:
        """Per-layer signals are indexed by optimizer step and losses by `log()` call:
        say so once when the two counts part (gradient accumulation logging every
        micro-batch, or a loop that logs only some steps)."""
        logs, steps = self._step, self._opt_step
        if self._counts_noted or steps == 0 or abs(logs - steps) <= max(2, 0.1 * steps):
            return
        self._counts_noted = True
        self.monitor.note("steps", f"log() was called {logs} times for {steps} optimizer "
                          "steps: per-layer signals are at optimizer steps, losses at log() "
                          "calls, so their steps do not line up; call log() once per "
                          "optimizer step (with gradient accumulation, after the step). "
                          "A step skipped for non-finite gradients (a GradScaler's) counts "
                          "as one when log() still sees its gradients (zero them before "
                          "backward, not right after the step)", level="warning")

    def _epoch_loss(self, step: int, write: bool) -> None:
        if write and self._epoch_loss_n:
            self.monitor.scalar("epoch/train_loss", self._epoch_loss_sum / self._epoch_loss_n,
                                step)
        self._epoch_loss_sum, self._epoch_loss_n = 0.0, 0

    def flush(self) -> None:
        """Read back what is on the device and write everything to disk now."""
        self._sync(wait=True)
        self._writes.run(self._write)

    @property
    def should_stop(self) -> bool:
        return self.monitor.should_stop

    def report(self) -> Diagnosis:
        """The diagnosis of everything recorded so far (what `lossdoctor diagnose
        RUN_DIR` says once the run is closed)."""
        if not self.monitor.closed:
            self._sync(wait=True)
            self._drain()
        return self.monitor.report()

    def close(self) -> None:
        if self.monitor.closed:
            return
        self._sync(wait=True)
        self._drain()
        self._hook_optimizer(False)
        self._check_step_counts()
        with self.monitor.guard("write"):
            self.monitor.store.meta["overhead"] = self._budget.to_dict()
            self.monitor.store.write_meta()
        self._check()
        self.monitor.close()

    def resume(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Go on recording into this run after `close()`: a later stage of training
        (a second Lightning `fit`), perhaps with a new optimizer. Steps and epochs
        count on; the layers are collected again for the optimizer's parameters and
        read densely again from here; a note in run.json says where it resumed, and a
        new event file is written beside the first."""
        if not self.monitor.closed:
            return
        self.monitor.reopen()
        with self.monitor.guard("setup"):
            if optimizer is not None:
                self.optimizer = optimizer
            self._snapshot = self._before = None
            self._hook_fns = []
            self.monitor.store.meta["layers"] = self._collect_layers()
            self.monitor.note("resume", f"resumed at step {self._step} (epoch "
                              f"{self._epoch}), optimizer {type(self.optimizer).__name__}: "
                              "layers collected again")
        self._last_log = None  # the time before the first step is not a step's
        # A new stage starts densely, as the first did, histograms included.
        self._next_hist = self._opt_step
        self._reading_plan.restart(self._opt_step)
        self._hook_optimizer(True)

    def __enter__(self) -> Doctor:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # --- reading back -------------------------------------------------------------------
    def _write(self) -> None:
        self._drain()
        self.monitor.flush()

    def _check(self) -> None:
        self._drain()
        self.monitor.check()

    def _sync(self, wait: bool = False, then: Callable[[], None] | None = None) -> None:
        """Start moving the values kept on the device to the host (one transfer, see
        `_Transfer`), then take in the transfers that have arrived (all, with `wait`);
        `then` runs once this transfer has been taken in.
        The raw rows wait on the host until the next flush, where they are finished in
        one vectorized pass and each series is written in one batch; a row with a
        non-finite value is finished at once, to find where a NaN began."""
        losses, rows = self._losses, self._rows
        self._losses, self._rows, self._since_sync = [], [], 0
        if losses or rows:
            with self.monitor.guard("sync"):
                losses, stacked = self._stack_losses(losses)
                n_t = 0 if stacked is None else len(stacked)  # losses logged as tensors
                parts = [r for _, r, _ in rows]
                if stacked is not None:
                    parts.insert(0, stacked)
                if len({t.device for t in parts}) > 1:
                    parts = [t.cpu() for t in parts]
                lr = (losses[-1][0] if losses else rows[-1][0], self._current_lr())

                def finish(host: np.ndarray) -> None:
                    values = host[:n_t]
                    if n_t < len(losses):  # some were logged as numbers
                        it = iter(values.tolist())
                        values = np.array([next(it) if isinstance(v, torch.Tensor) else v
                                           for _, v in losses], dtype=np.float64)
                    self._take_losses([st for st, _ in losses], values)
                    if rows:
                        self._take_rows([st for st, _, _ in rows], host[n_t:],
                                        [lay for _, _, lay in rows])
                    self._host_lr.append(lr)

                if parts:
                    self._transfers.append((_Transfer(torch.cat(parts).float()), finish))
                else:
                    finish(np.zeros(0))
        if then is not None:
            self._transfers.append((None, lambda _: then()))
        self._receive(wait)
        if self._writes.due():
            self._writes.run(self._write)
        if self._checks.due():
            self._checks.run(self._check)

    def _stack_losses(self, losses: list[tuple[int, torch.Tensor | float]]
                      ) -> tuple[list[tuple[int, torch.Tensor | float]], torch.Tensor | None]:
        """The logged loss tensors as one 1-D tensor on one device (one stack: a reshape
        per loss costs more than the copy). A loss that is not one value is left out
        (one monitor-error), not the others logged with it."""
        tensors = [v for _, v in losses if isinstance(v, torch.Tensor)]
        if not tensors:
            return losses, None
        try:
            stacked = torch.stack(tensors).reshape(-1)
            if stacked.numel() == len(tensors):
                return losses, stacked
        except RuntimeError:  # on different devices, or of different shapes
            pass
        kept = [(st, v) for st, v in losses if not isinstance(v, torch.Tensor) or v.numel() == 1]
        if len(kept) < len(losses):
            self.monitor.monitor_error("log", ValueError(
                "a logged loss has more than one element; it was left out"))
        ones = [v.reshape(1).cpu().float() for _, v in kept if isinstance(v, torch.Tensor)]
        return kept, torch.cat(ones) if ones else None

    def _receive(self, wait: bool) -> None:
        """Finish the transfers that have arrived, in order (all of them with `wait`;
        the time spent waiting is training the host would have waited for anyway, so
        it is kept out of the Doctor's cost, `_waited`)."""
        while self._transfers:
            transfer, finish = self._transfers[0]  # None: a step after the ones before it
            try:
                if transfer is not None and not transfer.ready():
                    if not wait:
                        return
                    start = time.perf_counter()
                    transfer.wait()
                    self._waited += time.perf_counter() - start
                host = (np.zeros(0) if transfer is None
                        else transfer.host.numpy().astype(np.float64))
            except Exception as exc:  # dropped: not tried again at every step
                self._transfers.popleft()
                self.monitor.monitor_error("sync", exc)
                continue
            self._transfers.popleft()
            with self.monitor.guard("sync"):
                finish(host)

    def _take_rows(self, steps: list[int], raw: np.ndarray, layouts: list[_Layout]) -> None:
        if np.isfinite(raw).all() or self.monitor.has_live_finding("nan-origin"):
            self._host_rows.append((steps, raw, layouts))
        else:
            table = self._host_table(raw, layouts)
            self._host_rows.append((steps, table, None))
            self._find_nan_origin(steps, table)

    def _host_table(self, flat: np.ndarray, layouts: list[_Layout]) -> np.ndarray:
        """The read-back values of sampled steps as a fixed-width table, one row per
        step: weight, update and grad norms per parameter, `STATS` per hooked layer
        (NaN where the layer did not run), its forward position (-1: did not run),
        then bn_shift and bn_frozen per BatchNorm layer, then the share of units with no
        gradient per unit layer (`_unit_layers`; NaN on steps without activations).
        Steps with the same layout (readings with and without activations alternate)
        are finished together, column-wise."""
        n_p, n_a, n_b, n_s = len(self._params), len(self._hooked), len(self._bns), len(STATS)
        a0 = 3 * n_p
        o0 = a0 + n_a * n_s
        b0 = o0 + n_a
        table = np.full((len(layouts), b0 + 2 * n_b + len(self._unit_layers)), math.nan)
        table[:, o0:b0] = -1.0
        kinds: list[_Layout] = []  # the distinct layouts (a few): compared, not hashed
        rows_of: list[list[int]] = []
        starts = np.zeros(len(layouts), dtype=np.int64)
        pos = 0
        for r, lay in enumerate(layouts):
            if lay not in kinds:
                kinds.append(lay)
                rows_of.append([])
            rows_of[kinds.index(lay)].append(r)
            starts[r] = pos
            pos += _row_width(a0, lay)
        for lay, rows in zip(kinds, rows_of, strict=True):
            block = flat[starts[rows][:, None] + np.arange(_row_width(a0, lay))]
            part = table[rows]
            self._fill_rows(part, block, lay, a0, o0, b0)
            table[rows] = part
        return table

    def _fill_rows(self, out: np.ndarray, block: np.ndarray, lay: _Layout, a0: int,
                   o0: int, b0: int) -> None:
        """`_host_table` rows (`out`) from raw rows (`block`) that share one layout."""
        n_b, n_s = len(self._bns), len(STATS)
        out[:, :a0] = block[:, :a0]
        col = a0
        firsts = []
        for _, _, _, k, _ in lay.acts:
            firsts.append(col)
            col += k
        for b, has_shift, frozen in lay.bns:
            if has_shift:
                out[:, b0 + b] = block[:, col]
                col += 1
            out[:, b0 + n_b + b] = 1.0 if frozen else 0.0
        for order, ((i, n, units, k, vec), c0) in enumerate(zip(lay.acts, firsts, strict=True)):
            s1, s2 = block[:, c0], block[:, c0 + 1]
            n = max(n, 1)
            with np.errstate(invalid="ignore", over="ignore"):
                bad = ~(np.isfinite(s1) & np.isfinite(s2))
                mean = s1 / n
                std = np.where(bad, math.nan, np.sqrt(np.maximum(s2 / n - mean * mean, 0.0)))
            dead = sat = np.full(len(block), math.nan)
            if vec:
                dead = np.mean(block[:, col:col + units] <= 0, axis=1)
                col += units
            elif k > 2:
                sat = block[:, c0 + 2] / n
            stats = out[:, a0 + i * n_s:a0 + (i + 1) * n_s]
            stats[:, 0], stats[:, 1], stats[:, 2], stats[:, 3] = mean, std, dead, sat
            stats[:, 4] = bad
            out[:, o0 + i] = order
        if lay.zeros:  # after the per-unit maxima
            counted = list(lay.zeros)
            sizes = np.array([self._unit_layers[u][3] for u in counted])
            out[:, b0 + 2 * n_b + np.array(counted)] = block[:, col:col + len(counted)] / sizes

    def _drain(self) -> None:
        """Write the values waiting on the host into the store."""
        losses, pending, lrs = self._host_losses, self._host_rows, self._host_lr
        self._host_losses, self._host_rows, self._host_lr = [], [], []
        with self.monitor.guard("write"):
            rows = self._finish(pending)
            store = self.monitor.store
            if losses:
                store.add_scalars("train/loss_step", [st for steps, _ in losses for st in steps],
                                  np.concatenate([v for _, v in losses]))
            good = [(st, v) for st, v in lrs if v is not None]
            if good:
                store.add_scalars("lr", [st for st, _ in good],
                                  np.array([v for _, v in good], dtype=np.float64))
            if rows:
                self._write_rows([st for steps, _ in rows for st in steps],
                                 np.concatenate([t for _, t in rows]))

    def _finish(self, pending: list[tuple[list[int], np.ndarray, list[_Layout] | None]]
                ) -> list[tuple[list[int], np.ndarray]]:
        """Finished tables of `_host_rows`, in step order; runs of raw rows are
        finished together."""
        out: list[tuple[list[int], np.ndarray]] = []
        steps: list[int] = []
        raws: list[np.ndarray] = []
        layouts: list[_Layout] = []
        for st, values, lays in [*pending, ([], np.zeros(0), None)]:
            if lays is not None:
                steps += st
                raws.append(values)
                layouts += lays
                continue
            if steps:
                out.append((steps, self._host_table(np.concatenate(raws), layouts)))
                steps, raws, layouts = [], [], []
            if st:
                out.append((st, values))
        return out

    def _take_losses(self, steps: list[int], values: np.ndarray) -> None:
        if not steps:
            return
        self._host_losses.append((steps, values))
        self._epoch_loss_n += len(steps)
        finite = np.isfinite(values)
        if finite.all():
            self._epoch_loss_sum += float(values.sum())
            return
        self._epoch_loss_sum = math.nan
        if self._first_bad_loss is None:
            self._first_bad_loss = steps[int(np.argmin(finite))]
            if not self.monitor.has_live_finding("nan-origin"):
                self._hunt = True  # read the next step in full to find the origin
                self._plan(self._opt_step)

    def _current_lr(self) -> float | None:
        lr = self.optimizer.param_groups[0].get("lr")
        if isinstance(lr, torch.Tensor):
            lr = float(lr)
        return float(lr) if isinstance(lr, int | float) else None

    def _split(self, table: np.ndarray) -> tuple[np.ndarray, ...]:
        """(layer weight norms, update norms, grad norms, activation stats, forward
        order, bn_shift, bn_frozen, zero-gradient unit shares) of a `_host_table`;
        parameter norms are combined per layer."""
        n_p, n_l, n_a, n_b = (len(self._params), len(self._param_layers), len(self._hooked),
                              len(self._bns))
        rows = table.shape[0]
        w, u, g = table[:, :n_p], table[:, n_p:2 * n_p], table[:, 2 * n_p:3 * n_p]
        a1 = 3 * n_p + n_a * len(STATS)
        acts = table[:, 3 * n_p:a1].reshape(rows, n_a, len(STATS))
        order = table[:, a1:a1 + n_a]
        b1 = a1 + n_a
        shift, frozen = table[:, b1:b1 + n_b], table[:, b1 + n_b:b1 + 2 * n_b]
        zeros = table[:, b1 + 2 * n_b:]
        idx = np.asarray(self._param_layer, dtype=np.int64)

        def per_layer(norms: np.ndarray) -> np.ndarray:
            sq = np.zeros((rows, n_l))
            np.add.at(sq.T, idx, (norms ** 2).T)
            return np.sqrt(sq)

        return per_layer(w), per_layer(u), per_layer(g), acts, order, shift, frozen, zeros

    def _write_rows(self, steps: list[int], table: np.ndarray) -> None:
        lw, lu, lg, acts, _, shift, frozen, zeros = self._split(table)
        store = self.monitor.store
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = lu / lw
        for j, name in enumerate(self._param_layers):
            for tag, col in (("weight_norm", lw), ("update_norm", lu), ("update_ratio", ratio),
                             ("grad_norm", lg)):
                store.add_scalars(f"layer/{name}/{tag}", steps, col[:, j])
        for k, (name, _, kind) in enumerate(self._hooked):
            seen = ~np.isnan(acts[:, k, 4])  # the layer ran on that step
            if not seen.any():
                continue
            seen_steps = [s for s, ok in zip(steps, seen, strict=True) if ok]
            for c, stat in enumerate(STATS):
                if stat == "dead_fraction" and kind != "relu":
                    continue
                if stat == "saturated_fraction" and kind not in ("sigmoid", "tanh"):
                    continue
                store.add_scalars(f"layer/{name}/{stat}", seen_steps, acts[seen, k, c])
        columns = [(name, tag, col, b) for b, (name, _) in enumerate(self._bns)
                   for tag, col in (("bn_frozen", frozen), ("bn_shift", shift))]
        columns += [(self._param_layers[j], "zero_grad_fraction", zeros, u)
                    for u, (j, *_) in enumerate(self._unit_layers)]
        for name, tag, col, c in columns:
            ok = ~np.isnan(col[:, c])
            if ok.any():
                store.add_scalars(f"layer/{name}/{tag}",
                                  [s for s, y in zip(steps, ok, strict=True) if y], col[ok, c])

    def _find_nan_origin(self, steps: list[int], table: np.ndarray) -> None:
        _, _, grads, acts, order, _, _, _ = self._split(table)
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


def _compiled(model: torch.nn.Module) -> bool:
    """Whether the model's forward runs compiled: `torch.compile(model)` (a wrapper
    holding `_orig_mod`) or `model.compile()` on it or on a submodule."""
    if hasattr(model, "_orig_mod"):
        return True
    return any(getattr(m, "_compiled_call_impl", None) is not None for m in model.modules())


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
