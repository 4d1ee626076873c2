"""The progress line shows only on a terminal and only when work takes a moment."""

from __future__ import annotations

import io
import time

import lossdoctor.progress as progress_mod
from lossdoctor.progress import Progress


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_appears_on_a_terminal_after_the_delay_and_is_cleared(monkeypatch):
    monkeypatch.setattr(progress_mod, "DELAY_S", 0.01)
    monkeypatch.setattr(progress_mod, "INTERVAL_S", 0.01)
    stream = FakeTerminal()
    with Progress("reading", total=4, stream=stream) as p:
        for i in range(4):
            p.advance(f"run{i}")
            time.sleep(0.03)
    out = stream.getvalue()
    assert "reading [" in out and "/4" in out
    assert out.endswith("\r\033[K")  # the line is wiped when done


def test_no_progress_when_not_a_terminal():
    stream = io.StringIO()
    with Progress("reading", stream=stream) as p:
        p.advance("x")
        time.sleep(0.6)
    assert stream.getvalue() == ""


def test_quick_work_shows_nothing():
    stream = FakeTerminal()
    with Progress("reading", stream=stream) as p:
        p.advance("x")
    assert stream.getvalue() == ""
