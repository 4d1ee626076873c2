"""The live doctors' pacing of event-file writes and diagnoses."""

from __future__ import annotations

import time

import pytest

from lossdoctor.live.pacing import Pacer


def test_work_is_due_after_its_interval():
    pacer = Pacer(0.05)
    assert not pacer.due()
    time.sleep(0.06)
    assert pacer.due()
    pacer.run(lambda: None)
    assert not pacer.due() and pacer.interval == 0.05


def test_slow_work_spaces_itself_out():
    # 20 ms of work may take 0.5% of the time: the next one is at least 4 s away.
    pacer = Pacer(0.0, share=0.005)
    pacer.run(lambda: time.sleep(0.02))
    assert pacer.interval >= 4.0 and not pacer.due()


def test_the_interval_follows_the_last_run_and_survives_a_failure():
    pacer = Pacer(0.0, share=0.005)
    pacer.run(lambda: time.sleep(0.02))
    pacer.run(lambda: None)
    assert pacer.interval < 1.0

    def broken() -> None:
        time.sleep(0.02)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        pacer.run(broken)
    assert pacer.interval >= 4.0
