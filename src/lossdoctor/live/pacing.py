"""How often the live doctors do their host work between steps: write the event files
(what a `kill -9` can lose) and diagnose (when new findings are printed).

Each is due at most every `min_interval` seconds, and further apart when one takes
more than `HOST_WORK_SHARE` of the time between two: on a GPU machine a write of a
ResNet-18's ~250 series took about 20 ms of host time and a diagnosis 25-50 ms, work
the GPU may wait for.
"""

from __future__ import annotations

import time
from collections.abc import Callable

CHECK_INTERVAL_S = 10.0  # full diagnosis (new findings printed) at most this often
FLUSH_INTERVAL_S = 2.0  # event-file writes at most this often
HOST_WORK_SHARE = 0.005


class Pacer:
    def __init__(self, min_interval: float, share: float = HOST_WORK_SHARE) -> None:
        self.min_interval = min_interval
        self.share = share
        self.interval = min_interval  # in use: min_interval or more
        self._last = time.monotonic()

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.interval

    def run(self, work: Callable[[], None]) -> None:
        """Do `work` now; the next is due one interval on, longer if this one was slow."""
        start = self._last = time.monotonic()
        try:
            work()
        finally:
            self.interval = max(self.min_interval, (time.monotonic() - start) / self.share)
