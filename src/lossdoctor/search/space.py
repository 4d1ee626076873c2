"""Search spaces the expert way: scale parameters (learning rate, weight decay) are
searched in log space, where 1e-5 and 1e-4 are as far apart as 1e-2 and 1e-1.

A space is a mapping name -> LogUniform | Uniform | Int | Choice. Shorthands: a
tuple `(low, high)` of positive numbers means LogUniform (scale parameters are the
common case), a list means Choice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

EDGE_FRACTION = 0.10  # "near an edge": within this share of the range's width


@dataclass(frozen=True)
class LogUniform:
    """`low * (high/low) ** u`, u uniform in [0, 1]; e.g. `LogUniform(1e-6, 1e1)`."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if not 0 < self.low < self.high:
            raise ValueError(f"0 < low < high must hold, but got low={self.low}, "
                             f"high={self.high}")

    def position(self, value: float) -> float:
        return (math.log(value) - math.log(self.low)) / (math.log(self.high)
                                                         - math.log(self.low))

    def widened(self, edge: str) -> LogUniform:
        # One more range width (in decades) past the edge the best value sits on.
        ratio = self.high / self.low
        if edge == "upper":
            return LogUniform(self.low, self.high * ratio)
        return LogUniform(self.low / ratio, self.high)

    def describe(self) -> str:
        return f"LogUniform({self.low:g}, {self.high:g})"


@dataclass(frozen=True)
class Uniform:
    """Uniform in [low, high]; `limits` are hard bounds a widened range never passes
    (e.g. dropout in [0, 1])."""

    low: float
    high: float
    limits: tuple[float, float] = (-math.inf, math.inf)

    def __post_init__(self) -> None:
        if not self.low < self.high:
            raise ValueError(f"low < high must hold, but got low={self.low}, high={self.high}")

    def position(self, value: float) -> float:
        return (value - self.low) / (self.high - self.low)

    def widened(self, edge: str) -> Uniform | None:
        width = self.high - self.low
        if edge == "upper":
            high = min(self.high + width, self.limits[1])
            return None if high <= self.high else Uniform(self.low, high, self.limits)
        low = max(self.low - width, self.limits[0])
        return None if low >= self.low else Uniform(low, self.high, self.limits)

    def describe(self) -> str:
        return f"Uniform({self.low:g}, {self.high:g})"


@dataclass(frozen=True)
class Int:
    """An integer in [low, high], in log space with `log=True` (layer widths)."""

    low: int
    high: int
    log: bool = False

    def __post_init__(self) -> None:
        if not self.low < self.high or (self.log and self.low <= 0):
            raise ValueError(f"low < high (and low > 0 with log) must hold, but got "
                             f"low={self.low}, high={self.high}, log={self.log}")

    def position(self, value: float) -> float:
        if self.log:
            return (math.log(value) - math.log(self.low)) / (math.log(self.high)
                                                             - math.log(self.low))
        return (value - self.low) / (self.high - self.low)

    def widened(self, edge: str) -> Int | None:
        if self.log:
            ratio = self.high / self.low
            if edge == "upper":
                return Int(self.low, math.ceil(self.high * ratio), True)
            low = max(1, math.floor(self.low / ratio))
            return None if low >= self.low else Int(low, self.high, True)
        width = self.high - self.low
        if edge == "upper":
            return Int(self.low, self.high + width, False)
        return Int(self.low - width, self.high, False)

    def describe(self) -> str:
        return f"Int({self.low}, {self.high}{', log=True' if self.log else ''})"


@dataclass(frozen=True)
class Choice:
    """One of a few values, e.g. momentum in `Choice([0.5, 0.9, 0.95, 0.99])`."""

    values: tuple[Any, ...]

    def __init__(self, values: Sequence[Any]) -> None:
        if len(values) == 0:
            raise ValueError("Choice needs at least one value, but got none")
        object.__setattr__(self, "values", tuple(values))

    def describe(self) -> str:
        return f"Choice({list(self.values)})"


Dimension = LogUniform | Uniform | Int | Choice
Space = dict[str, Dimension]


def as_space(space: Mapping[str, Any]) -> Space:
    """Normalize the shorthands; raise ValueError naming the parameter otherwise."""
    out: Space = {}
    for name, dim in space.items():
        if isinstance(dim, LogUniform | Uniform | Int | Choice):
            out[name] = dim
        elif isinstance(dim, tuple) and len(dim) == 2:
            low, high = dim
            if isinstance(low, int) and isinstance(high, int):
                out[name] = Int(low, high)
            elif low > 0:
                out[name] = LogUniform(float(low), float(high))
            else:
                out[name] = Uniform(float(low), float(high))
        elif isinstance(dim, list):
            out[name] = Choice(dim)
        else:
            raise ValueError(f"search space entry {name!r} must be LogUniform, Uniform, Int, "
                             f"Choice, a (low, high) tuple or a list, but got {dim!r}")
    if not out:
        raise ValueError("the search space is empty")
    return out


def suggest(trial: Any, name: str, dim: Dimension) -> Any:
    """The value of `name` for an Optuna trial."""
    if isinstance(dim, LogUniform):
        return trial.suggest_float(name, dim.low, dim.high, log=True)
    if isinstance(dim, Uniform):
        return trial.suggest_float(name, dim.low, dim.high)
    if isinstance(dim, Int):
        return trial.suggest_int(name, dim.low, dim.high, log=dim.log)
    return trial.suggest_categorical(name, list(dim.values))


@dataclass(frozen=True)
class Edge:
    """The best value of `name` sits near `edge` ("lower" | "upper") of `dimension`."""

    name: str
    edge: str
    value: float
    position: float  # 0 = lower end, 1 = upper end (in log space for log ranges)
    dimension: Dimension
    widened: Dimension


def edges(best_params: Mapping[str, Any], space: Space,
          fraction: float = EDGE_FRACTION) -> list[Edge]:
    """The numeric parameters whose best value lies within `fraction` of the range's
    width from one of its ends, with the widened range to search next."""
    out: list[Edge] = []
    for name, dim in space.items():
        if isinstance(dim, Choice) or name not in best_params:
            continue
        value = float(best_params[name])
        pos = dim.position(value)
        edge = "lower" if pos <= fraction else "upper" if pos >= 1 - fraction else None
        if edge is None:
            continue
        wider = dim.widened(edge)
        if wider is not None:
            out.append(Edge(name, edge, value, pos, dim, wider))
    return out


__all__ = ["EDGE_FRACTION", "Choice", "Dimension", "Edge", "Int", "LogUniform", "Space",
           "Uniform", "as_space", "edges", "suggest"]
