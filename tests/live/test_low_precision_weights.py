"""update-ratio-low on weights stored in bfloat16/float16: a step below the weights'
precision rounds back to the same weight, so updates vanish although the learning
rate would move float32 weights. The run folder records each layer's weight dtype and,
for PyTorch, the share of weights with a gradient that a step left unchanged
(`rounded_fraction`), and the finding says what happened. Before, a model whose
updates all vanished read "Updates of layer 2 are only 0 of its weights per step" with
a larger learning rate as the first fix, and one losing most of them read nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tests.live import digits_torch as dt

from lossdoctor.rules.layers import update_ratio
from lossdoctor.run import Run, Series
from lossdoctor.sources.rundir import read_run_dir
from lossdoctor.torch import Doctor

W = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))


def _train(run_dir: Path, bf16_weights: bool, lr: float = 1e-4) -> Doctor:
    """SGD on a small classifier: the model cast to bfloat16, or float32 weights with
    the forward pass under bfloat16 autocast (the usual way)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(),
                                torch.nn.Linear(32, 4))
    if bf16_weights:
        model = model.to(torch.bfloat16)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(1)
    with Doctor(model, opt, run_dir, verbose=False) as doc:
        for step in range(150):
            x = torch.randn(32, 16, generator=gen)
            y = (x @ W).argmax(1)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=not bf16_weights):
                out = model(x.to(torch.bfloat16) if bf16_weights else x)
            loss = torch.nn.functional.cross_entropy(out.float(), y)
            dt.step_and_log(doc, opt, loss, step, epoch_every=50)
    return doc


def test_bfloat16_weights_that_do_not_move_are_named_so(tmp_path: Path) -> None:
    doc = _train(tmp_path / "bf16", bf16_weights=True)
    [low] = [f for f in doc.report().findings if f.code == "update-ratio-low"]
    assert "bfloat16 weights" in low.title and "rounded away" in low.title
    assert low.evidence["weight_dtype"] == "bfloat16"
    assert "autocast" in low.fixes[0]
    run = read_run_dir(tmp_path / "bf16")
    assert {layer.get("dtype") for layer in run.meta["layers"] if layer["params"]} \
        == {"bfloat16"}


def test_most_updates_rounded_away_are_found_at_a_healthy_looking_ratio(
        tmp_path: Path) -> None:
    # At 1e-2 the update/weight ratio is about 1e-3, the rule of thumb's healthy value,
    # yet most steps leave most bfloat16 weights as they were (measured on this model
    # over 600 steps: 77-81% of those with a gradient, and a last-100-step mean loss of
    # 1.07 against 0.90 with float32 weights).
    doc = _train(tmp_path / "bf16", bf16_weights=True, lr=1e-2)
    run = read_run_dir(tmp_path / "bf16")
    ratios = run.get("layer/0/update_ratio")
    assert ratios is not None and 3e-4 < float(np.median(ratios.values)) < 3e-3
    [low] = [f for f in doc.report().findings if f.code == "update-ratio-low"]
    assert low.evidence["median_rounded_fraction"] >= 0.5
    assert "of the updates to the bfloat16 weights of layer" in low.title


def test_float32_weights_under_autocast_keep_their_updates(tmp_path: Path) -> None:
    doc = _train(tmp_path / "f32", bf16_weights=False)
    assert not [f for f in doc.report().findings if "rounded away" in f.title]
    run = read_run_dir(tmp_path / "f32")
    ratios = run.get("layer/2/update_ratio")
    assert ratios is not None and np.all(ratios.values > 0)
    assert not [tag for tag in run.series if tag.endswith("/rounded_fraction")]
    assert {layer.get("dtype") for layer in run.meta["layers"] if layer["params"]} \
        == {"float32"}


def _run_with(dtype: str) -> Run:
    """Hand-made readings: updates of exactly 0 while gradients flow."""
    steps = np.arange(0, 100, 5)
    series = {"layer/fc/update_ratio": Series(steps, np.zeros(len(steps))),
              "layer/fc/grad_norm": Series(steps, np.full(len(steps), 0.3))}
    meta = {"layers": [{"name": "fc", "type": "Linear", "kind": "linear", "params": 10,
                        "dtype": dtype}]}
    return Run("r", "mem", "live", series, meta=meta)


@pytest.mark.parametrize(("share", "found"), [(0.8, True), (0.3, False)])
def test_the_rule_reads_the_rounded_share(share: float, found: bool) -> None:
    steps = np.arange(0, 100, 5)
    run = _run_with("bfloat16")
    run.series["layer/fc/update_ratio"] = Series(steps, np.full(len(steps), 1e-3))
    run.series["layer/fc/rounded_fraction"] = Series(steps, np.full(len(steps), share))
    lows = update_ratio(run)
    assert bool(lows) is found
    if found:
        assert lows[0].title.startswith("80% of the updates to the bfloat16 weights of "
                                        "layer fc are rounded away")


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_the_rule_reads_the_weight_dtype(dtype: str) -> None:
    [low] = update_ratio(_run_with(dtype))
    assert low.title.startswith(f"The {dtype} weights of layer fc do not move at all")
    assert low.evidence["significand_bits"] == {"bfloat16": 8, "float16": 11}[dtype]


def test_float32_weights_keep_the_learning_rate_reading() -> None:
    [low] = update_ratio(_run_with("float32"))
    assert low.title.startswith("Updates of layer fc are only 0 of its weights")
    assert "weight_dtype" not in low.evidence


def test_keras_records_each_layers_weight_dtype(tmp_path: Path) -> None:
    # A bfloat16 layer stores bfloat16 weights; a mixed_bfloat16 one keeps them float32.
    keras = pytest.importorskip("keras")
    from lossdoctor.keras import Doctor as KerasDoctor

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16,)),
                              keras.layers.Dense(8, name="low", dtype="bfloat16"),
                              keras.layers.Dense(4, name="mixed", dtype="mixed_bfloat16")])
    model.compile("sgd", "mse")
    x = np.random.default_rng(0).normal(size=(64, 16)).astype("float32")
    model.fit(x, x[:, :4], epochs=1, batch_size=32, verbose=0,
              callbacks=[KerasDoctor(tmp_path / "run", verbose=False)])
    layers = read_run_dir(tmp_path / "run").meta["layers"]
    assert {layer["name"]: layer.get("dtype") for layer in layers} == {
        "low": "bfloat16", "mixed": "float32"}
