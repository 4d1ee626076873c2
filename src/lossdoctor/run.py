"""The run model: what every reader produces and every rule consumes (numpy only)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Canonical series keys. Readers map messy names onto these once, at the edge;
# rules never guess names.
TRAIN_LOSS = "train/loss"
VAL_LOSS = "val/loss"
TRAIN_ACC = "train/accuracy"
VAL_ACC = "val/accuracy"
LR = "lr"
# Per-step training loss when the log also has the per-epoch one (Lightning's
# `train_loss_step` next to `train_loss_epoch`): spikes and the first NaN step live here.
TRAIN_LOSS_STEP = "train/loss_step"
# How many optimizer steps were skipped for non-finite gradients (a mixed-precision
# loss scaler's overflow skips) up to and including each step: a running count, so a
# doctor that reads it only now and then (Keras) records it as exactly as one that sees
# every skip (PyTorch).
SKIPPED_STEPS = "train/skipped_steps"


@dataclass(frozen=True, eq=False)  # identity equality: arrays do not compare as one
class Series:
    """One scalar stream: values at increasing steps (NaN/inf kept as they came)."""

    steps: np.ndarray  # int64, non-decreasing
    values: np.ndarray  # float64
    epochs: np.ndarray | None = None  # int64 epoch of each point, when the log says

    def __post_init__(self) -> None:
        if self.steps.shape != self.values.shape:
            raise ValueError(
                f"steps and values must have the same shape, but got "
                f"{self.steps.shape} and {self.values.shape}"
            )
        if self.epochs is not None and self.epochs.shape != self.steps.shape:
            raise ValueError(
                f"epochs must match steps in shape, but got {self.epochs.shape} "
                f"and {self.steps.shape}"
            )

    @classmethod
    def from_lists(
        cls,
        steps: list[int] | np.ndarray,
        values: list[float] | np.ndarray,
        epochs: list[int] | np.ndarray | None = None,
    ) -> Series:
        return cls(
            np.asarray(steps, dtype=np.int64),
            np.asarray(values, dtype=np.float64),
            None if epochs is None else np.asarray(epochs, dtype=np.int64),
        )

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def epoch_of(self, index: int) -> int | None:
        return None if self.epochs is None else int(self.epochs[index])

    def finite(self) -> Series:
        """The points whose value is a finite number."""
        keep = np.isfinite(self.values)
        return Series(
            self.steps[keep],
            self.values[keep],
            None if self.epochs is None else self.epochs[keep],
        )


@dataclass(frozen=True, eq=False)
class Histogram:
    """One histogram of a tag at one step, as TensorBoard stores it: `bucket[i]` values
    in (bucket_limit[i-1], bucket_limit[i]] (the first bucket starts at `min`)."""

    step: int
    bucket_limit: np.ndarray  # float64, right edge of each bucket
    bucket: np.ndarray  # float64 counts, same shape
    min: float
    max: float
    num: float

    def edges(self) -> np.ndarray:
        """len(bucket) + 1 bucket edges: `min`, then the bucket limits (TensorBoard
        writers put huge sentinels at the outer ends; those are clipped to min/max)."""
        if self.bucket_limit.shape[0] == 0:
            return np.array([self.min, self.max], dtype=np.float64)
        inner = np.clip(self.bucket_limit, self.min, max(self.max, self.min))
        return np.concatenate([[min(self.min, float(inner[0]))], inner])


@dataclass
class Run:
    """A training run: named series plus metadata."""

    name: str
    source: str
    # "tensorboard" | "keras-csv" | "lightning-csv" | "wandb-csv" | "csv" | "jsonl" |
    # "lossdoctor"
    format: str
    series: dict[str, Series] = field(default_factory=dict)
    meta: dict[str, object] = field(default_factory=dict)
    # Problems the reader met but read past (a truncated last record, a skipped row).
    warnings: list[str] = field(default_factory=list)
    # Histograms over time, by tag as written (`layer/fc1/weight_hist`), step order.
    histograms: dict[str, list[Histogram]] = field(default_factory=dict)

    def get(self, key: str) -> Series | None:
        return self.series.get(key)

    def densest_train_loss(self) -> Series | None:
        """The per-step training loss if the log has one, else the training loss."""
        return self.series.get(TRAIN_LOSS_STEP) or self.series.get(TRAIN_LOSS)
