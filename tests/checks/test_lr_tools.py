"""LR range test on digits in both frameworks, and the schedule adapters."""

from __future__ import annotations

import numpy as np
import pytest

import lossdoctor
from lossdoctor.schedules import CosineDecay, StepDecay

SANE = (1e-4, 1e-1)  # Adam on a small standardized-digits MLP


def test_torch_lr_range_and_scheduler(digits) -> None:  # type: ignore[no-untyped-def]
    torch = pytest.importorskip("torch")
    from torch import nn

    from lossdoctor.integrations.torch_schedules import torch_scheduler

    x, y, _ = digits
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    before = [p.clone() for p in model.parameters()]
    result = lossdoctor.lr_range_test(model, x, y, loss=nn.CrossEntropyLoss(), steps=80)
    assert SANE[0] <= result.suggested_lr <= SANE[1], result.to_dict()
    assert len(result.lrs) == len(result.losses) and result.lrs[0] == pytest.approx(1e-6)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))

    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    sched = torch_scheduler(opt, StepDecay(0.1, drop=0.5, every=2))
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])


def test_keras_lr_range_and_schedules(digits) -> None:  # type: ignore[no-untyped-def]
    keras = pytest.importorskip("keras")
    from lossdoctor.integrations.keras_schedules import keras_callback, to_keras_schedule

    x, y, _ = digits
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(10)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = [w.copy() for w in model.get_weights()]
    result = lossdoctor.lr_range_test(model, x, y, steps=80)
    assert SANE[0] <= result.suggested_lr <= SANE[1], result.to_dict()
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))

    cos = CosineDecay(0.1, total=10, min_lr=0.01)
    sched = to_keras_schedule(cos)
    got = [float(sched(t)) for t in (0, 5, 10, 20)]
    assert got == pytest.approx([cos(0), cos(5), cos(10), cos(20)], rel=1e-6)
    assert type(sched).from_config(sched.get_config()).schedule == cos
    seen: list[float] = []
    probe = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda e, logs: seen.append(float(model.optimizer.learning_rate)))
    model.fit(x[:64], y[:64], epochs=3, verbose=0,
              callbacks=[keras_callback(StepDecay(0.1, drop=0.5, every=1)), probe])
    assert seen == pytest.approx([0.1, 0.05, 0.025])
