"""A live finding is announced once, and again when it becomes more severe at the same
layer, so `stop_on_critical` and `on_finding` see a layer's dead units turn into a
whole dead layer."""

from __future__ import annotations

from pathlib import Path

from lossdoctor.findings import Finding
from lossdoctor.live.monitor import LiveMonitor

TAG = "layer/relu1/dead_fraction"


def test_a_warning_that_turns_critical_is_announced_again_and_stops(tmp_path: Path):
    seen: list[Finding] = []
    mon = LiveMonitor(tmp_path / "run", framework="torch", verbose=False,
                      meta={"layers": [{"name": "relu1", "type": "ReLU", "kind": "relu"}]},
                      on_finding=seen.append, stop_on_critical=True)
    for step in range(6):
        mon.scalar(TAG, 0.9, step)
    mon.check()
    mon.check()  # nothing new: not announced twice
    assert [(f.code, f.severity.value) for f in seen] == [("dead-units", "warning")]
    assert not mon.should_stop
    for step in range(6, 40):
        mon.scalar(TAG, 1.0, step)
    mon.check()
    assert [(f.code, f.severity.value) for f in seen] == [("dead-units", "warning"),
                                                           ("dead-units", "critical")]
    assert mon.should_stop and seen[-1].layer == "relu1"
    mon.close()
