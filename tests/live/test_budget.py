"""The overhead budget: how far apart per-layer readings are, from the Doctor's own
measured cost and the step time (pure arithmetic here; wired into the PyTorch
Doctor below)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from lossdoctor.live.budget import OverheadBudget


def _periods(budget: OverheadBudget, *, base: float, plain: float, extra: float,
             periods: int = 6, steps: int = 10) -> list[int]:
    """Feed `periods` periods of `steps` steps, the first of each costing `extra`
    more than a plain step; the period chosen after each."""
    out = []
    for _ in range(periods):
        budget.step(base + plain + extra, plain + extra, "read")
        for _ in range(steps - 1):
            budget.step(base + plain, plain, "plain")
        out.append(budget.period())
    return out


def test_period_grows_until_the_cost_fits() -> None:
    # 1 ms steps, 10 us per plain step, 0.5 ms per reading: 2% leaves 10 us a step
    # for readings, one every 50 steps.
    b = OverheadBudget(0.02, every=10, max_every=100)
    assert _periods(b, base=1e-3, plain=1e-5, extra=5e-4)[-1] == pytest.approx(50, abs=1)
    # Cheap readings next to slow steps: the floor, `every`.
    b = OverheadBudget(0.02, every=10, max_every=100)
    assert _periods(b, base=0.1, plain=1e-5, extra=5e-4) == [10] * 6
    # Its share: 6 periods of 10 steps, 10 us each plus one 0.5 ms reading per period.
    assert b.share() == pytest.approx((60 * 1e-5 + 6 * 5e-4) / (60 * (0.1 + 1e-5) + 6 * 5e-4))


def test_period_capped_and_disabled() -> None:
    b = OverheadBudget(0.02, every=10, max_every=40)
    assert _periods(b, base=1e-3, plain=1e-5, extra=5e-2)[-1] == 40
    # Plain steps alone already over the budget: as rare as allowed.
    b = OverheadBudget(0.02, every=10, max_every=40)
    assert _periods(b, base=1e-3, plain=1e-4, extra=1e-4)[-1] == 40
    b = OverheadBudget(None, every=10, max_every=40)
    assert _periods(b, base=1e-3, plain=1e-5, extra=5e-2) == [10] * 6
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError):
            OverheadBudget(bad, every=10, max_every=40)


def test_costs_the_doctor_cannot_time_count_and_validation_does_not() -> None:
    # Each period: the user's validation pass (0.5 s, an edge step), 8 plain 1 ms
    # steps, a reading the doctor timed at 0.2 ms that took 0.5 ms of wall time (hooks
    # slow the modules down), and the step after it, 0.1 ms slower (cold caches).
    b = OverheadBudget(0.02, every=10, max_every=1000)
    for _ in range(12):  # the first periods, with few steps of each kind, settle out
        b.step(0.5, 0.0, "edge")
        for _ in range(8):
            b.step(1e-3 + 1e-5, 1e-5, "plain")
        b.step(1e-3 + 5e-4, 2e-4, "read")
        b.step(1e-3 + 1e-4, 1e-5, "after")
        period = b.period()
    # (0.5 + 0.1 ms) / (2% of 1 ms - 10 us) = 60 steps, not the 20 its timers say.
    assert period == pytest.approx(60, abs=1)
    assert b.own < b.spent < b.total_time


torch = pytest.importorskip("torch")


def _train(run_dir: Path, steps: int, sleep: float, **kwargs: object) -> dict[str, object]:
    from lossdoctor.torch import Doctor

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    with Doctor(model, opt, run_dir, verbose=False, dense_steps=20,  # type: ignore[arg-type]
                histogram_every=0, **kwargs) as doc:
        for _ in range(steps):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            doc.log(loss=0.0)
            if sleep:
                time.sleep(sleep)  # a slower model
    steps_read = doc.report().run.series["layer/0/weight_norm"].steps.tolist()
    meta = json.loads((run_dir / "run.json").read_text())
    return {"steps": steps_read, "overhead": meta["overhead"]}


def test_doctor_stretches_readings_on_a_fast_model_only(tmp_path: Path) -> None:
    # A 30-microsecond step cannot carry a reading every 10 steps within 0.1%: the
    # period goes to its cap; a 50 ms step keeps the schedule as asked (1% of it is
    # 0.5 ms a step: a reading may cost 5 ms before the period grows. With 20 ms steps
    # one stalled write on a loaded machine once stretched a period to 23).
    fast = _train(tmp_path / "fast", 400, 0.0, max_overhead=0.001, max_every=80)
    assert fast["overhead"]["period"] == 80  # type: ignore[index]
    dense = list(range(0, 20, 5))
    assert fast["steps"][:4] == dense and len(fast["steps"]) < 4 + 380 // 10
    slow = _train(tmp_path / "slow", 60, 0.05)
    overhead = slow["overhead"]
    assert isinstance(overhead, dict)
    share, own = overhead.pop("measured_share"), overhead.pop("own_time_share")
    # The schedule as asked, give or take a step the OS stalled on a busy machine.
    assert overhead["max_overhead"] == 0.01 and overhead["period"] <= 20
    assert 0 < own <= share < 0.5  # some, never most, of the time
    assert slow["steps"][:4] == dense and np.diff(slow["steps"]).max() <= 20
    fixed = _train(tmp_path / "fixed", 400, 0.0, max_overhead=None)
    assert fixed["steps"] == dense + list(range(20, 400, 10))


def test_next_due_finds_the_first_reading_from_a_step() -> None:
    from lossdoctor.live.budget import ReadingPlan
    from lossdoctor.live.schedule import Schedule

    plan = ReadingPlan(Schedule(every=10, dense_steps=20, dense_every=5),
                       OverheadBudget(None, every=10))
    due = [s for s in range(60) if plan.due(s)]
    assert due == [0, 5, 10, 15, *range(20, 60)]  # nothing taken yet: all due
    assert [plan.next_due(s) for s in (0, 1, 5, 16, 19, 20, 33)] == [0, 5, 5, 20, 20, 20, 33]
    plan.taken(20)  # the next reading one period (10) on
    assert [plan.next_due(s) for s in (21, 29, 30, 31)] == [30, 30, 30, 31]
    assert all(plan.next_due(s) == min(t for t in range(s, 99) if plan.due(t))
               for s in range(21, 40))


def test_a_restart_gives_a_later_stage_its_own_dense_start() -> None:
    from lossdoctor.live.budget import ReadingPlan
    from lossdoctor.live.schedule import Schedule

    plan = ReadingPlan(Schedule(every=10, dense_steps=20, dense_every=5),
                       OverheadBudget(None, every=10))
    plan.taken(20)
    plan.taken(30)
    plan.restart(47)  # a second fit begins at step 47
    due = [s for s in range(47, 80) if plan.due(s)]
    assert due == [47, 52, 57, 62, *range(67, 80)]
    assert [plan.next_due(s) for s in (47, 48, 63, 66)] == [47, 52, 67, 67]
    plan.taken(67)  # past its dense start: one period on
    assert [s for s in range(67, 90) if plan.due(s)] == list(range(77, 90))


def test_readings_wait_for_the_steps_that_apply_an_accumulated_update() -> None:
    from lossdoctor.live.budget import ReadingPlan
    from lossdoctor.live.schedule import Schedule

    plan = ReadingPlan(Schedule(every=10, dense_steps=20, dense_every=5),
                       OverheadBudget(None, every=10))
    plan.align(4, 3)  # updates on steps 3, 7, 11, ...
    taken = []
    for step in range(60):
        if plan.due(step):
            taken.append(step)
            plan.taken(step)
    # Due at 0, 5, 10, 15 in the dense start, then 20, 33 (23 + 10), 45, 57: each on
    # the first update step from there.
    assert taken == [3, 7, 11, 15, 23, 35, 47, 59]
    assert all((s - 3) % 4 == 0 for s in taken)
