"""Sigmoid and tanh applied as functions in `forward` (`torch.sigmoid(self.fc(x))`,
`x.tanh()`): no module runs them, so no forward hook sees their outputs, and a
saturated unit still passes a (tiny) gradient, so the zero-gradient counts that find
`F.relu`'s dead units cannot see them either.

`FunctionCalls` watches the torch functions called during a forward pass through a
`TorchFunctionMode`, which the Doctor pushes only for the forward passes of the steps
that read activations (it adds about a microsecond to every torch call while it is
on). A call is kept when its input is the output of a watched layer in this pass, or a
view of one (the Doctor says which with `saw_output`), so it can be named after that
layer: `sigmoid(fc1)`, also for a gate computed beside another layer (`h = self.a(x);
k = self.b(x); torch.sigmoid(h) * k`) or a chunk of one (`i, o =
self.gates(x).chunk(2, 1); torch.sigmoid(i)`: a hand-written LSTM cell, a GLU). An
`nn.Sigmoid` module calls `torch.sigmoid` too; its forward hook takes the call back
(`covered`), as the module's own reading measures that output."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

# The calls watched, by the kind of unit they make. Tensor methods are what
# `F.sigmoid` and `F.tanh` call.
SATURATING_CALLS: dict[Any, str] = {
    torch.sigmoid: "sigmoid", torch.Tensor.sigmoid: "sigmoid",
    torch.sigmoid_: "sigmoid", torch.Tensor.sigmoid_: "sigmoid",
    torch.special.expit: "sigmoid",
    torch.tanh: "tanh", torch.Tensor.tanh: "tanh",
    torch.tanh_: "tanh", torch.Tensor.tanh_: "tanh",
}


class _Mode(TorchFunctionMode):
    def __init__(self, calls: FunctionCalls) -> None:
        super().__init__()
        self._calls = calls

    def __torch_function__(self, func: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        try:  # nothing of the watch may reach the user's forward pass
            kind = SATURATING_CALLS.get(func)
            if kind is not None and args:
                self._calls.called(kind, args[0], out)
        except Exception as exc:
            self._calls.error = exc
        return out


class FunctionCalls:
    """The saturating calls of one forward pass on watched layers' outputs, between
    `enter()` and `leave()`, measured at once by `measure(output, kind)`.

    Memory: the watched outputs are held weakly, and a call's measurement rather than
    its result, so a model that recomputes activations to save memory (checkpointing)
    does not keep more of them alive on the steps that read."""

    def __init__(self, measure: Callable[[torch.Tensor, str], Any]) -> None:
        self._mode = _Mode(self)
        self._measure = measure
        self._on = False
        self.error: Exception | None = None  # raised while watching, for the Doctor to report
        # The watched outputs of this pass: id -> (the output, weakly; layer index).
        self._outputs: dict[int, tuple[weakref.ref[torch.Tensor], int]] = {}
        # The latest call, until an activation module may claim it (`covered`):
        # (its result, weakly; layer index, kind, measurement).
        self._pending: tuple[weakref.ref[torch.Tensor], int, str, Any] | None = None
        self._kept: list[tuple[int, str, Any]] = []

    @property
    def on(self) -> bool:
        return self._on

    def enter(self) -> None:
        if not self._on:
            self._mode.__enter__()  # type: ignore[no-untyped-call]
            self._on = True

    def leave(self) -> list[tuple[int, str, Any]]:
        """Stop watching; (layer index, kind, measurement) of each call kept, in call
        order."""
        if self._on:
            self._on = False
            # Popped only when it is on top: a mode the user's forward pushed and left
            # on would be popped instead of this one.
            if torch.overrides._get_current_function_mode() is self._mode:  # type: ignore[no-untyped-call]
                self._mode.__exit__(None, None, None)
        self._keep_pending()
        kept, self._kept = self._kept, []
        self._outputs.clear()
        return kept

    def saw_output(self, x: torch.Tensor, index: int) -> None:
        """`x` is the output of watched layer `index` in this pass."""
        if self._on:
            self._keep_pending()
            self._outputs[id(x)] = (weakref.ref(x), index)

    def covered(self, x: torch.Tensor) -> None:
        """`x` is the output of an activation module: the call that made it is that
        module's (its own reading measures it), not a function in `forward`."""
        if self._pending is not None and self._pending[0]() is x:
            self._pending = None

    def _layer_of(self, x: Any) -> int | None:
        """The watched layer whose output `x` is, or a view of (a chunk, a slice)."""
        for t in (x, getattr(x, "_base", None)):
            entry = self._outputs.get(id(t)) if t is not None else None
            if entry is not None and entry[0]() is t:  # not a freed tensor's reused id
                return entry[1]
        return None

    def called(self, kind: str, x: Any, out: Any) -> None:
        if not isinstance(out, torch.Tensor):
            return
        index = self._layer_of(x)
        if index is None:
            return
        self._keep_pending()
        self._pending = (weakref.ref(out), index, kind, self._measure(out, kind))

    def _keep_pending(self) -> None:
        if self._pending is not None:
            _, index, kind, measured = self._pending
            self._kept.append((index, kind, measured))
            self._pending = None
