"""lossdoctor schedules in Keras: as an optimizer LearningRateSchedule (per step) or a
LearningRateScheduler callback (per epoch)."""

from __future__ import annotations

from typing import Any

import keras

from lossdoctor import schedules
from lossdoctor.schedules import Schedule


@keras.saving.register_keras_serializable(package="lossdoctor")
class LossdoctorSchedule(keras.optimizers.schedules.LearningRateSchedule):  # type: ignore[misc]
    """Evaluates the schedule's formula with keras.ops, inside the optimizer's graph."""

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule

    def __call__(self, step: Any) -> Any:
        t = keras.ops.cast(step, "float32")
        return self.schedule.formula(t, keras.ops)

    def get_config(self) -> dict[str, Any]:
        return {"schedule": self.schedule.get_config()}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> LossdoctorSchedule:
        return cls(schedules.from_config(config["schedule"]))


def to_keras_schedule(schedule: Schedule) -> LossdoctorSchedule:
    """`keras.optimizers.SGD(learning_rate=to_keras_schedule(s))`: t = optimizer steps."""
    return LossdoctorSchedule(schedule)


def keras_callback(schedule: Schedule, verbose: int = 0) -> keras.callbacks.Callback:
    """`model.fit(..., callbacks=[keras_callback(s)])`: t = epoch number (from 0)."""
    return keras.callbacks.LearningRateScheduler(lambda epoch, lr: schedule(epoch),
                                                 verbose=verbose)
