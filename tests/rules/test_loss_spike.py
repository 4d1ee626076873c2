"""Loss spikes on hand-made step curves: one near the end, whose local window the end
of the curve cuts short, is judged on the points it has (the scenario runs are in
test_real_runs)."""

from __future__ import annotations

import numpy as np
import pytest

from lossdoctor.rules.curves import loss_spike
from lossdoctor.run import TRAIN_LOSS, Run, Series

STEPS = 400


def curve(spikes: dict[int, float]) -> Run:
    rng = np.random.default_rng(0)
    steps = np.arange(STEPS)
    y = 0.3 + 2.0 * np.exp(-steps / 60) + 0.01 * rng.standard_normal(STEPS)
    for at, height in spikes.items():
        y[at] += height
    return Run("r", "mem", "csv", {TRAIN_LOSS: Series(steps, y)})


@pytest.mark.parametrize("at", [200, STEPS - 5])  # the second: 4 points after it
def test_an_isolated_spike_is_found_where_it_is(at: int) -> None:
    found = loss_spike(curve({at: 3.0}))
    assert [f.step for f in found] == [at]
    smooth = 0.3 + 2.0 * np.exp(-at / 60)
    assert found[0].evidence["local_level"] == pytest.approx(smooth, abs=0.02)


def test_a_noisy_smooth_curve_has_no_spike() -> None:
    assert loss_spike(curve({})) == []


def test_a_bump_that_does_not_recover_is_not_a_spike() -> None:
    run = curve({})
    y = run.series[TRAIN_LOSS].values
    y[300:] += 3.0  # a jump that stays: a divergence, not a spike
    assert loss_spike(run) == []
