"""A progress line on stderr that appears only when work takes more than a moment
and only on a terminal, so piped and JSON output stay clean."""

from __future__ import annotations

import sys
import threading
from types import TracebackType
from typing import TextIO

DELAY_S = 0.5
INTERVAL_S = 0.1


class Progress:
    def __init__(self, label: str, total: int | None = None, stream: TextIO | None = None):
        self.label = label
        self.total = total
        self.done = 0
        self.current = ""
        self._stream = stream or sys.stderr
        self._enabled = self._stream.isatty()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._shown = False

    def advance(self, current: str = "") -> None:
        self.done += 1
        self.current = current

    def _line(self) -> str:
        if self.total:
            width = 24
            filled = int(width * min(self.done, self.total) / self.total)
            bar = "#" * filled + "-" * (width - filled)
            head = f"{self.label} [{bar}] {self.done}/{self.total}"
        else:
            head = f"{self.label}: {self.done}"
        tail = self.current[-(78 - len(head)) :] if len(head) < 70 else ""
        return f"{head} {tail}"[:79]

    def _run(self) -> None:
        if self._stop.wait(DELAY_S):
            return
        while not self._stop.is_set():
            self._stream.write("\r\033[K" + self._line())
            self._stream.flush()
            self._shown = True
            self._stop.wait(INTERVAL_S)

    def __enter__(self) -> Progress:
        if self._enabled:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._shown:
            self._stream.write("\r\033[K")
            self._stream.flush()

