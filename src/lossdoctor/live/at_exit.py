"""Close the live doctors still open when the interpreter exits.

A doctor writes its event files at most every couple of seconds and closes its run
at the end of training (`with`, `close()`, Keras' `on_train_end`). A script that never
closes it (or a `fit` that raised, so Keras never called `on_train_end`) would lose
what came after the last write: the whole of a run shorter than one write interval.
"""

from __future__ import annotations

import atexit
import contextlib
import weakref
from typing import Protocol


class Closable(Protocol):
    def close(self) -> None: ...


_open: weakref.WeakSet[Closable] = weakref.WeakSet()
_registered = False


def close_at_exit(doctor: Closable) -> None:
    """Have `doctor.close()` called at interpreter exit unless it was closed before
    (closing twice is a no-op for a doctor). Registered on first use, after the
    framework's import, so it runs before the framework's own exit handlers."""
    global _registered
    _open.add(doctor)
    if not _registered:
        atexit.register(_close_all)
        _registered = True


def _close_all() -> None:
    for doctor in list(_open):
        # Exiting anyway: a failure here must not turn into a traceback.
        with contextlib.suppress(Exception):
            doctor.close()
