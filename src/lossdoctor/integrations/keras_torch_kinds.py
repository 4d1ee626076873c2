"""Keras on its torch backend: what a custom layer outputs, read off the torch function
that made its output in the probe's forward pass (`keras.ops.sigmoid(...)` in a
layer's `call` is `torch.nn.functional.sigmoid` there). The TensorFlow backend reads
the same from the traced graph (`keras_tf.traced_kinds`); eager torch tensors do not
say which op made them, so the calls are watched while the probe runs forward, on the
probe's first pass only (kinds do not change)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from lossdoctor.integrations.torch_functional import SATURATING_CALLS

F = torch.nn.functional
# The functions Keras' torch backend calls for its activations (and their tensor
# methods and in-place forms), by the kind of unit they make: the kinds
# `keras_tf.OP_KINDS` gives the same activations' ops. Sigmoid and tanh are the
# PyTorch Doctor's own watch list.
KIND_OF_CALL: dict[Any, str] = {
    **SATURATING_CALLS,
    F.relu: "relu", F.relu_: "relu", torch.relu: "relu", torch.relu_: "relu",
    torch.Tensor.relu: "relu", torch.Tensor.relu_: "relu", F.relu6: "relu",
    F.leaky_relu: "leakyrelu", F.leaky_relu_: "leakyrelu", F.softsign: "tanh",
}


class _Watch(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.made: list[tuple[torch.Tensor, str]] = []  # each result, held while watched

    def __torch_function__(self, func: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        kind = KIND_OF_CALL.get(func)
        if kind is not None and isinstance(out, torch.Tensor):
            self.made.append((out, kind))
        return out


@contextlib.contextmanager
def watched_calls() -> Iterator[list[tuple[torch.Tensor, str]]]:
    """(result, kind) of each activation call made inside the block."""
    watch = _Watch()
    with watch:
        yield watch.made


def kinds_made(outputs: list[Any], undecided: list[int],
               made: list[tuple[torch.Tensor, str]]) -> dict[int, str]:
    """index -> kind of the `undecided` outputs that an activation call made. An
    output that is an earlier output itself (Dropout at inference hands its input on)
    is that layer's units and is not read twice."""
    kinds = {}
    for k in undecided:
        out = outputs[k]
        if any(out is earlier for earlier in outputs[:k]):
            continue
        kind = next((kind for result, kind in made if result is out), None)
        if kind is not None:
            kinds[k] = kind
    return kinds
