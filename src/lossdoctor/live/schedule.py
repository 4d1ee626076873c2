"""When per-layer signals are measured: densely at the start, where initialization
problems show, then every `every` steps. Cheap scalars (the loss) are kept every step.
"""

from __future__ import annotations

from dataclasses import dataclass

# Signal names a layer can have (tags `layer/<name>/<signal>`).
SIGNALS = (
    "weight_norm",
    "update_norm",
    "update_ratio",
    "grad_norm",
    "act_mean",
    "act_std",
    "dead_fraction",
    "saturated_fraction",
    "nan_count",
    "zero_grad_fraction",  # Linear/Conv: units whose weights got no gradient from a batch
    "bn_shift",  # BatchNorm: batch statistics vs running statistics
    "bn_frozen",  # BatchNorm: 1 while its running statistics are not updated
)


@dataclass(frozen=True)
class Schedule:
    every: int = 10  # per-layer readings every this many steps after the dense start
    dense_steps: int = 100  # the first steps, read more often
    dense_every: int = 5

    def __post_init__(self) -> None:
        for name in ("every", "dense_every"):
            value = getattr(self, name)
            if value < 1:
                raise ValueError(f"{name} >= 1 must hold, but got {value}")
        if self.dense_steps < 0:
            raise ValueError(f"dense_steps >= 0 must hold, but got {self.dense_steps}")

    def sampled(self, step: int) -> bool:
        """Whether per-layer signals are measured at `step` (0-based)."""
        period = self.dense_every if step < self.dense_steps else self.every
        return step % period == 0

    def sync_due(self, step: int) -> bool:
        """Whether values kept on the device are read back after `step`: once per
        `every` steps, so an accelerator is synchronized that rarely."""
        return (step + 1) % self.every == 0

    def to_dict(self) -> dict[str, int]:
        return {"every": self.every, "dense_steps": self.dense_steps,
                "dense_every": self.dense_every}
