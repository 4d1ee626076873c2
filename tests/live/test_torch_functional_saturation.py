"""Saturated sigmoid/tanh units applied as functions in `forward` (`torch.sigmoid(...)`,
`x.tanh()`, `F.sigmoid`): the PyTorch Doctor measures them as `sigmoid(<layer>)`
beside the layer whose output they take, and the healthy twin stays quiet."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from tests.live import digits_torch as dt  # noqa: E402
from tests.live.layer_series import layer_medians  # noqa: E402

from lossdoctor.sources.rundir import read_run_dir  # noqa: E402

pytestmark = pytest.mark.slow
F = torch.nn.functional


class FunctionalSigmoidNet(torch.nn.Module):
    """Three hidden Linear layers, the first squashed by an `nn.Sigmoid` module (its
    own reading, not a function's), the others by two spellings of the functions."""

    def __init__(self, init_std: float | None = None) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(64, 32)
        self.fc2 = torch.nn.Linear(32, 32)
        self.fc3 = torch.nn.Linear(32, 32)
        self.out = torch.nn.Linear(32, 10)
        self.squash = torch.nn.Sigmoid()
        if init_std is not None:  # pre-activations of a few tens: the flat ends
            for layer in (self.fc2, self.fc3):  # the functions' inputs only
                torch.nn.init.normal_(layer.weight, std=init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squash(self.fc1(x))
        x = torch.tanh(self.fc2(x))
        x = self.fc3(x).sigmoid()
        return self.out(x)


def twins(root: Path, net: type[torch.nn.Module], std: float, optimizer: type[Any],
          lr: float) -> dict[str, tuple[Path, object]]:
    """The net with its weights drawn at `std` ("saturated") and as PyTorch draws them
    ("healthy"), each trained from seed 0: name -> (run folder, diagnosis)."""
    out = {}
    for name, init_std in (("saturated", std), ("healthy", None)):
        torch.manual_seed(0)
        model = net(init_std).to(dt.DEVICE)
        opt = optimizer(model.parameters(), lr=lr)
        out[name] = (root / name, dt.train(root / name, model, opt).report())
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, object]]:
    return twins(tmp_path_factory.mktemp("functional-saturation"), FunctionalSigmoidNet,
                 4.0, torch.optim.Adam, 1e-2)


def test_saturated_functional_activations_are_measured_and_found(runs):
    run_dir, diagnosis = runs["saturated"]
    shares = layer_medians(run_dir, "saturated_fraction")
    # The module's reading stays under its own name; the functions get theirs.
    assert set(shares) == {"squash", "tanh(fc2)", "sigmoid(fc3)"}
    assert shares["squash"] < 0.2 < 0.5 < min(shares["tanh(fc2)"], shares["sigmoid(fc3)"])
    found = [f for f in diagnosis.findings if f.code == "saturated-activations"]
    assert len(found) == 1
    assert found[0].layer in ("tanh(fc2)", "sigmoid(fc3)")
    assert found[0].layer in found[0].title
    # The function layers sit in run.json right after the layer they squash.
    names = [x["name"] for x in json.loads((run_dir / "run.json").read_text())["layers"]]
    assert names.index("tanh(fc2)") == names.index("fc2") + 1
    assert names.index("sigmoid(fc3)") == names.index("fc3") + 1
    stds = layer_medians(run_dir, "act_std")
    assert 0.0 < stds["sigmoid(fc3)"] <= 0.5  # a sigmoid's output, not fc3's


def test_healthy_twin_has_unsaturated_functions_and_no_finding(runs):
    run_dir, diagnosis = runs["healthy"]
    assert not [f for f in diagnosis.findings if f.code == "saturated-activations"]
    shares = layer_medians(run_dir, "saturated_fraction")
    assert set(shares) == {"squash", "tanh(fc2)", "sigmoid(fc3)"}
    assert max(shares.values()) < 0.2


def test_the_function_watch_is_off_outside_reading_steps_and_after_an_error(tmp_path):
    """The mode is pushed only for the forward passes that read activations, and
    popped even when the forward pass raises."""
    from torch.overrides import _get_current_function_mode

    torch.manual_seed(0)
    model = FunctionalSigmoidNet().to(dt.DEVICE)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = dt.digits()
    with dt.Doctor(model, opt, tmp_path / "r", verbose=False) as doc:
        modes = []
        for step in range(22):
            if step == 10:  # a step that reads activations
                with pytest.raises(RuntimeError):
                    model(x[:8, :10])  # wrong width: the forward pass raises
                modes.append(_get_current_function_mode())
            loss = F.cross_entropy(model(x[:32]), y[:32])
            modes.append(_get_current_function_mode())
            opt.zero_grad()
            loss.backward()
            opt.step()
            doc.log(loss=loss)
        assert modes == [None] * 23
    assert _get_current_function_mode() is None
    assert not [f for f in doc.report().findings if f.code == "monitor-error"]
    run = read_run_dir(tmp_path / "r")
    # Activations are read on steps 0, 10 and 20 at the start; step 10 after the error.
    steps = run.series["layer/sigmoid(fc3)/saturated_fraction"].steps
    assert steps.tolist() == [0, 10, 20]


class GatedNet(torch.nn.Module):
    """Gates as hand-written cells compute them: a sigmoid of a layer that is not the
    latest one called (`torch.sigmoid(h) * k`), and a sigmoid and a tanh of chunks of
    one layer's output (an LSTM-style cell)."""

    def __init__(self, gate_std: float | None = None) -> None:
        super().__init__()
        self.gate = torch.nn.Linear(64, 32)
        self.value = torch.nn.Linear(64, 32)
        self.cell = torch.nn.Linear(32, 64)
        self.out = torch.nn.Linear(32, 10)
        if gate_std is not None:
            for layer in (self.gate, self.cell):
                torch.nn.init.normal_(layer.weight, std=gate_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.gate(x)
        v = self.value(x)  # the latest layer when the gate's sigmoid is taken
        h = torch.sigmoid(g) * v
        i, o = self.cell(h).chunk(2, dim=1)
        return self.out(torch.sigmoid(i) * torch.tanh(o))


@pytest.fixture(scope="module")
def gated_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, object]]:
    return twins(tmp_path_factory.mktemp("functional-gates"), GatedNet, 3.0,
                 torch.optim.SGD, 1e-3)


def test_gates_of_earlier_layers_and_of_chunks_are_measured(gated_runs):
    run_dir, diagnosis = gated_runs["saturated"]
    shares = layer_medians(run_dir, "saturated_fraction")
    assert set(shares) == {"sigmoid(gate)", "sigmoid(cell)", "tanh(cell)"}
    assert min(shares.values()) > 0.3  # the healthy twin's stay under 0.2
    found = {f.layer for f in diagnosis.findings if f.code == "saturated-activations"}
    assert found and found <= set(shares)
    names = [x["name"] for x in json.loads((run_dir / "run.json").read_text())["layers"]]
    assert names.index("sigmoid(gate)") == names.index("gate") + 1


def test_healthy_gates_are_measured_and_quiet(gated_runs):
    run_dir, diagnosis = gated_runs["healthy"]
    shares = layer_medians(run_dir, "saturated_fraction")
    assert set(shares) == {"sigmoid(gate)", "sigmoid(cell)", "tanh(cell)"}
    assert max(shares.values()) < 0.2
    assert not [f for f in diagnosis.findings if f.code == "saturated-activations"]
