"""Framework-neutral machinery of the live doctor: when to measure (`Schedule`), where
it goes (`RunStore`: TensorBoard event files + run.json), and what to say
(`LiveMonitor`: findings printed once, monitor errors, stop requests).

Nothing here imports a framework; integrations/ adapts Keras and PyTorch to it.
"""

from lossdoctor.live.monitor import LiveMonitor, StopTraining
from lossdoctor.live.schedule import Schedule
from lossdoctor.live.store import RunStore

__all__ = ["LiveMonitor", "RunStore", "Schedule", "StopTraining"]
