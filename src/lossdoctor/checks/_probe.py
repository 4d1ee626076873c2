"""What the pre-flight checks need from a framework, as plain numbers.

The checks in this package never import a framework: an integration
(`lossdoctor.integrations.keras_checks`, `...torch_checks`) implements `Probe` on
top of COPIES of the user's model, and every method returns numpy arrays or floats.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

LossKind = Literal["softmax-ce", "binary-ce", "nll", "mse", "other"]
Expects = Literal["logits", "probabilities", "log-probabilities", "any"]
Target = Literal["sparse", "one-hot", "either", "binary", "any"]


@dataclass(frozen=True)
class LossInfo:
    """What the loss is and what it expects of the model's output and labels."""

    name: str  # as the user would recognise it: "SparseCategoricalCrossentropy", ...
    kind: LossKind
    expects: Expects
    target: Target
    setting: str  # how the framework spells the expectation: "from_logits=True", ...


@dataclass
class TrainTrace:
    """A short training run of a copy of the model, regularization off."""

    losses: list[float]  # training-batch loss before each step (then the final one)
    outputs: np.ndarray | None = None  # outputs on the training batch after training
    eval_losses: np.ndarray | None = None  # per-sample losses on the eval set, if given
    error: str | None = None  # why training could not run at all
    trainable: int = 0  # number of trainable parameter entries

    @property
    def final(self) -> float:
        return self.losses[-1] if self.losses else float("nan")


@dataclass
class RegularizationProbe:
    """Loss with regularization off and on, or why that cannot be measured."""

    declared: list[str]  # what the model/optimizer says it regularizes
    loss_off: float = float("nan")
    loss_on: float | None = None  # None: not measurable through the loss
    notes: list[str] = field(default_factory=list)
    # PyTorch weight decay: does a zero-gradient step shrink the weights? None: untested
    decay_active: bool | None = None


class GradProblem(Protocol):
    """One float64 (or float32, see `dtype`) copy of the model with a fixed batch."""

    dtype: str
    names: Sequence[str]
    shapes: Sequence[tuple[int, ...]]

    def analytic(self) -> list[np.ndarray]:
        """d loss / d parameter for every parameter, as arrays of `shapes`."""
        ...

    def loss_at(self, param: int, flat_index: int, value: float) -> float:
        """The loss with one parameter entry set to `value` (restored afterwards)."""
        ...

    def value(self, param: int, flat_index: int) -> float: ...


class Probe(Protocol):
    framework: str
    model_name: str
    loss: LossInfo | None
    n_parameters: int
    # The model has an embedding layer: integer inputs are indices into it (token ids,
    # categories), kept as integers and not judged by their scale.
    takes_indices: bool

    def outputs(self, x: np.ndarray) -> np.ndarray: ...

    def sample_losses(self, x: np.ndarray, y: np.ndarray) -> np.ndarray: ...

    def batch_loss(self, x: np.ndarray, y: np.ndarray) -> float:
        """The loss of one batch exactly as the user configured it (its reduction)."""
        ...

    def regularization(self, x: np.ndarray, y: np.ndarray) -> RegularizationProbe: ...

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
    ) -> TrainTrace: ...

    def gradient_problem(self, x: np.ndarray, y: np.ndarray) -> GradProblem: ...

    def activation_scales(self, x: np.ndarray) -> list[tuple[str, float]]: ...


class CheckSkipped(Exception):
    """A check cannot run with what it was given; the message says why."""
