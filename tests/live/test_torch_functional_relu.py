"""Dead units behind a ReLU that is no module (`F.relu` in `forward`): the PyTorch
Doctor sees them in the gradients of the Linear/Conv layer before it, and the healthy
twin stays quiet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from tests.live import digits_torch as dt  # noqa: E402
from tests.live.layer_series import layer_medians  # noqa: E402

from lossdoctor.sources.rundir import read_run_dir  # noqa: E402

pytestmark = pytest.mark.slow
F = torch.nn.functional


class FunctionalNet(torch.nn.Module):
    """A conv layer and two Linear layers, each followed by `F.relu`: no activation
    module for a forward hook to see."""

    def __init__(self, bias: float | None = None) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 8, 3, padding=1)
        self.fc1 = torch.nn.Linear(8 * 64, 32)
        self.fc2 = torch.nn.Linear(32, 32)
        self.out = torch.nn.Linear(32, 10)
        if bias is not None:  # every unit starts far below zero: off for every input
            for layer in (self.conv, self.fc1, self.fc2):
                torch.nn.init.constant_(layer.bias, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv(x.reshape(-1, 1, 8, 8)))
        x = F.relu(self.fc1(x.flatten(1)))
        x = F.relu(self.fc2(x))
        return self.out(x)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, object]]:
    root = tmp_path_factory.mktemp("functional-relu")
    out = {}
    for name, bias in (("dead", -20.0), ("healthy", None)):
        torch.manual_seed(0)
        model = FunctionalNet(bias).to(dt.DEVICE)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        out[name] = (root / name, dt.train(root / name, model, opt).report())
    return out


def test_dead_units_behind_functional_relu_are_found_at_the_first_layer(runs):
    run_dir, diagnosis = runs["dead"]
    dead = [f for f in diagnosis.findings if f.code == "dead-units"]
    assert len(dead) == 1
    assert dead[0].layer == "conv"  # the shallowest dead layer, where it starts
    assert dead[0].evidence["median_zero_grad_fraction"] == 1.0
    assert "no gradient" in dead[0].title
    assert dead[0].severity.value == "critical"  # the whole layer: nothing passes
    shares = layer_medians(run_dir, "zero_grad_fraction")
    assert shares == {"conv": 1.0, "fc1": 1.0, "fc2": 1.0, "out": 0.0}
    assert layer_medians(run_dir, "dead_fraction") == {}  # no activation module to hook


def test_healthy_twin_has_live_units_and_no_finding(runs):
    run_dir, diagnosis = runs["healthy"]
    assert not [f for f in diagnosis.findings if f.code == "dead-units"]
    shares = layer_medians(run_dir, "zero_grad_fraction")
    assert set(shares) == {"conv", "fc1", "fc2", "out"}
    assert max(shares.values()) < 0.5


def test_both_signals_agree_where_the_relu_is_a_module(tmp_path):
    """In an `nn.ReLU` MLP each Linear layer's zero-gradient share is the dead share
    its ReLU module measures on the same batch; the finding names the ReLU module."""
    torch.manual_seed(0)
    model = dt.mlp(bias=-5.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    diagnosis = dt.train(tmp_path / "run", model, opt, epochs=1).report()
    run = read_run_dir(tmp_path / "run")
    for linear, relu in (("0", "1"), ("2", "3"), ("4", "5")):
        zero = run.series[f"layer/{linear}/zero_grad_fraction"]
        dead = run.series[f"layer/{relu}/dead_fraction"]
        assert list(zero.steps) == list(dead.steps)
        np.testing.assert_allclose(zero.values, dead.values)
    dead_finding = next(f for f in diagnosis.findings if f.code == "dead-units")
    assert dead_finding.layer == "1"


def test_units_are_counted_by_their_bias_or_else_their_weights():
    from lossdoctor.integrations.torch import _zero_grad_units

    # A layer with a bias: unit 1 got none. One without: its unit 0 has no nonzero
    # weight gradient (the count of nonzero gradients per unit is what is passed).
    bias_grad = torch.tensor([0.3, 0.0, -1e-9])
    nonzero_per_unit = torch.count_nonzero(torch.tensor([[0.0, 0.0], [0.0, 2.0]]), dim=1)
    ids = torch.tensor([0, 0, 0, 1, 1])
    counts = _zero_grad_units([bias_grad, nonzero_per_unit], ids)
    assert counts.tolist() == [1.0, 1.0]


def test_a_layer_the_loss_does_not_reach_is_left_out(tmp_path):
    class WithUnusedHead(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = dt.mlp()
            self.unused = torch.nn.Linear(10, 10)  # no gradient: not "dead"

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x)

    torch.manual_seed(0)
    model = WithUnusedHead().to(dt.DEVICE)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    diagnosis = dt.train(tmp_path / "run", model, opt, epochs=1).report()
    run = read_run_dir(tmp_path / "run")
    assert "layer/body.0/zero_grad_fraction" in run.series
    assert "layer/unused/zero_grad_fraction" not in run.series
    assert not [f for f in diagnosis.findings if f.code in ("dead-units", "monitor-error")]
