"""Hand-made runs for what real training in the suite does not produce (yet): per-layer
signals, a million points, hostile names. Shared by the tests and the benchmark."""

from __future__ import annotations

import numpy as np

from lossdoctor.diagnosis import Diagnosis, diagnose
from lossdoctor.findings import make_finding
from lossdoctor.run import LR, TRAIN_ACC, TRAIN_LOSS, VAL_ACC, VAL_LOSS, Run, Series

HOSTILE = '<img src=x onerror=alert(1)>'
SCRIPT_BREAK = '</script><script>window.__pwned=1</script>'

LAYERS = ("conv1", "conv2", "block3/conv", "fc1", "fc2", "head")


def _series(steps: np.ndarray, values: np.ndarray) -> Series:
    return Series(steps.astype(np.int64), values.astype(np.float64))


def layered_run(steps: int = 2000, seed: int = 0) -> Run:
    """A run with every per-layer signal: gradients vanish toward the input, fc2's
    updates are far too large, fc1 dies slowly, the head saturates."""
    rng = np.random.default_rng(seed)
    s = np.arange(steps)
    t = s / steps
    series = {
        TRAIN_LOSS: _series(s, 2.3 * np.exp(-3 * t) + 0.1 + 0.05 * rng.standard_normal(steps)),
        LR: _series(s, 1e-3 * 0.5 ** (s // 500)),
    }
    ep = np.arange(99, steps, 100)
    series[VAL_LOSS] = _series(ep, 2.3 * np.exp(-2.5 * ep / steps) + 0.2)
    series[TRAIN_ACC] = _series(ep, 1 - 0.9 * np.exp(-4 * ep / steps))
    series[VAL_ACC] = _series(ep, 1 - 0.9 * np.exp(-3 * ep / steps) - 0.05)
    every = s[::10]
    for depth, name in enumerate(LAYERS):
        k = f"layer/{name}/"
        ratio = 1e-3 * 10 ** (0.3 * rng.standard_normal(every.size))
        if name == "fc2":
            ratio *= 200
        if name == "conv1":
            ratio /= 300
        series[k + "update_ratio"] = _series(every, ratio)
        series[k + "weight_norm"] = _series(every, np.full(every.size, 3.0 + depth))
        series[k + "update_norm"] = _series(every, ratio * (3.0 + depth))
        series[k + "grad_norm"] = _series(every, 10.0 ** (depth - 5) * (1 + t[::10]))
        series[k + "act_mean"] = _series(every, 0.1 * depth + 0.0 * t[::10])
        series[k + "act_std"] = _series(every, 0.5 ** depth * (1 + 0.2 * t[::10]))
        dead = 0.8 * t[::10] if name == "fc1" else 0.02 + 0.0 * t[::10]
        series[k + "dead_fraction"] = _series(every, dead)
        sat = 0.6 * np.ones(every.size) if name == "head" else 0.01 * np.ones(every.size)
        series[k + "saturated_fraction"] = _series(every, sat)
    return Run("layered", "synthetic", "lossdoctor", series)


def layered_diagnosis() -> Diagnosis:
    """The layered run with the layer findings a live monitor would add."""
    d = diagnose(layered_run())
    d.findings += [
        make_finding("update-ratio-high", step=400, layer="fc2",
                     evidence={"update_ratio": 0.2}),
        make_finding("dead-units", step=1200, layer="fc1", evidence={"dead_fraction": 0.6}),
    ]
    return d


def million_point_run(points: int = 1_000_000, seed: int = 0) -> Run:
    rng = np.random.default_rng(seed)
    s = np.arange(points)
    loss = 2.3 * np.exp(-5 * s / points) + 0.05 + 0.02 * rng.standard_normal(points)
    loss[points // 3] = 40.0  # one spike the display must keep
    ep = np.arange(points // 100 - 1, points, points // 100)
    series = {
        TRAIN_LOSS: _series(s, loss),
        VAL_LOSS: _series(ep, 2.3 * np.exp(-4 * ep / points) + 0.1),
        LR: _series(ep, np.full(ep.size, 3e-4)),
    }
    return Run("million", "synthetic", "tensorboard", series)


def hostile_diagnosis() -> Diagnosis:
    """Every string a log controls is hostile: names, tags, layers, meta, finding text."""
    s = np.arange(300)
    series = {
        TRAIN_LOSS: _series(s, 2.0 * np.exp(-s / 100) + 0.1),
        VAL_LOSS: _series(s[::30], 2.0 * np.exp(-s[::30] / 120) + 0.3),
        f"layer/{HOSTILE}/update_ratio": _series(s, np.full(300, 1e-3)),
        f"layer/{HOSTILE}/grad_norm": _series(s, np.full(300, 0.5)),
        f"extra/{HOSTILE}": _series(s, np.zeros(300)),
    }
    run = Run(f"run {HOSTILE}", f"/logs/{SCRIPT_BREAK}", "csv", series,
              meta={HOSTILE: SCRIPT_BREAK, "lr": 0.1, "columns": [HOSTILE, "loss"]},
              warnings=[f"skipped row {HOSTILE}"])
    d = diagnose(run)
    d.findings.append(make_finding(
        "dead-units", step=150, layer=HOSTILE, title=f"dead {HOSTILE}",
        evidence={HOSTILE: SCRIPT_BREAK}, explanation=SCRIPT_BREAK, fixes=[HOSTILE]))
    return d
