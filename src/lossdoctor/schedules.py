"""Learning-rate decay schedules, framework-neutral (numpy only).

    from lossdoctor.schedules import StepDecay, ExponentialDecay, InverseTimeDecay, CosineDecay
    s = StepDecay(base_lr=0.1, drop=0.9, every=20)   # -10% every 20 epochs
    s(0), s(20), s(40)                               # 0.1, 0.09, 0.081
    s.values(100)                                    # numpy array of the first 100

`t` counts whatever the caller steps on: epochs with a Keras LearningRateScheduler
callback or a PyTorch scheduler stepped per epoch, optimizer steps with a Keras
LearningRateSchedule. Adapters: `lossdoctor.integrations.keras_schedules`
(`to_keras_schedule`, `keras_callback`) and `lossdoctor.integrations.torch_schedules`
(`torch_scheduler`).

Each schedule writes its formula once against an array namespace `ops` (floor, cos,
minimum, maximum, power; `numpy` here, `keras.ops` in the Keras adapter), so the
numbers are the same in every framework.

Which one: decay too slowly and the loss keeps bouncing at a high level; too fast
and learning freezes before reaching a good minimum. A validation error that stays
high and flat is the usual cue to decay.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = [
    "CosineDecay",
    "ExponentialDecay",
    "InverseTimeDecay",
    "Schedule",
    "StepDecay",
    "from_config",
]


def _positive(name: str, value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} > 0 must hold, but got {name}={value}")


@dataclass(frozen=True)
class Schedule:
    base_lr: float

    def __post_init__(self) -> None:
        _positive("base_lr", self.base_lr)

    def formula(self, t: Any, ops: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, t: int | float) -> float:
        if t < 0:
            raise ValueError(f"t >= 0 must hold, but got t={t}")
        return float(self.formula(np.float64(t), np))

    def values(self, n: int) -> np.ndarray:
        """The learning rates for t = 0 .. n-1."""
        return np.asarray(self.formula(np.arange(n, dtype=np.float64), np), dtype=np.float64)

    def factor(self, t: int | float) -> float:
        """lr(t) / base_lr: the multiplier PyTorch's LambdaLR expects."""
        return self(t) / self.base_lr

    def get_config(self) -> dict[str, Any]:
        return {"kind": type(self).__name__, **asdict(self)}


@dataclass(frozen=True)
class StepDecay(Schedule):
    """lr = base_lr * drop ** floor(t / every): e.g. drop=0.9, every=20 is -10% every
    20 epochs; drop=0.1, every=30 is the classic /10 every 30 epochs."""

    drop: float = 0.5
    every: int = 10

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.drop <= 1:
            raise ValueError(f"0 < drop <= 1 must hold, but got drop={self.drop}")
        if self.every < 1:
            raise ValueError(f"every >= 1 must hold, but got every={self.every}")

    def formula(self, t: Any, ops: Any) -> Any:
        return self.base_lr * ops.power(self.drop, ops.floor(t / self.every))


@dataclass(frozen=True)
class ExponentialDecay(Schedule):
    """lr = base_lr * rate ** (t / decay_steps): smooth, multiplies by `rate` every
    `decay_steps` (rate=0.96, decay_steps=1000 is a common per-step choice)."""

    rate: float = 0.96
    decay_steps: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.rate <= 1:
            raise ValueError(f"0 < rate <= 1 must hold, but got rate={self.rate}")
        _positive("decay_steps", self.decay_steps)

    def formula(self, t: Any, ops: Any) -> Any:
        return self.base_lr * ops.power(self.rate, t / self.decay_steps)


@dataclass(frozen=True)
class InverseTimeDecay(Schedule):
    """lr = base_lr / (1 + k * t / decay_steps): the 1/t decay; falls fast early,
    then ever more slowly."""

    k: float = 0.5
    decay_steps: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.k >= 0 and math.isfinite(self.k)):
            raise ValueError(f"k >= 0 must hold, but got k={self.k}")
        _positive("decay_steps", self.decay_steps)

    def formula(self, t: Any, ops: Any) -> Any:
        return self.base_lr / (1.0 + self.k * t / self.decay_steps)


@dataclass(frozen=True)
class CosineDecay(Schedule):
    """lr = min_lr + (base_lr - min_lr) * (1 + cos(pi * min(t, total) / total)) / 2:
    from base_lr down to min_lr at t = total, flat afterwards."""

    total: float = 100.0
    min_lr: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive("total", self.total)
        if not 0 <= self.min_lr <= self.base_lr:
            raise ValueError(f"0 <= min_lr <= base_lr must hold, but got "
                             f"min_lr={self.min_lr}, base_lr={self.base_lr}")

    def formula(self, t: Any, ops: Any) -> Any:
        progress = ops.minimum(t, self.total) / self.total
        half = 0.5 * (1.0 + ops.cos(math.pi * progress))
        return self.min_lr + (self.base_lr - self.min_lr) * half


_KINDS: dict[str, type[Schedule]] = {
    cls.__name__: cls for cls in (StepDecay, ExponentialDecay, InverseTimeDecay, CosineDecay)
}


def from_config(config: dict[str, Any]) -> Schedule:
    """The schedule a `get_config()` dict describes."""
    fields = dict(config)
    kind = fields.pop("kind", None)
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {', '.join(_KINDS)}, but got {kind!r}")
    return _KINDS[kind](**fields)
