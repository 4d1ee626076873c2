"""The PyTorch live doctor on real training: each layer fault is found, its healthy
twins stay quiet, monitoring survives its own failures and a kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from tests.live import digits_torch as dt  # noqa: E402

from lossdoctor.diagnosis import diagnose  # noqa: E402
from lossdoctor.findings import CATALOG  # noqa: E402
from lossdoctor.live import StopTraining  # noqa: E402
from lossdoctor.sources.rundir import (  # noqa: E402
    is_lossdoctor_run_dir,
    read_run_dir,
    read_run_json,
)

pytestmark = pytest.mark.slow

LAYER_CODES = {c for c, e in CATALOG.items() if e.family == "layers"} | {"monitor-error"}
SCENARIOS = ["healthy", "healthy-sgd", "huge-lr", "tiny-lr", "dead-relu", "deep-sigmoid",
             "saturated-sigmoid", "huge-init", "nan-at-layer-2"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, object]]:
    root = tmp_path_factory.mktemp("torch-live")
    out = {}
    for name in SCENARIOS:
        doc = dt.scenario(name, root / name)
        out[name] = (root / name, doc.report())
    return out


def layer_codes(diagnosis: object) -> set[str]:
    return {f.code for f in diagnosis.findings} & LAYER_CODES  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["healthy", "healthy-sgd"])
def test_healthy_runs_stay_quiet(runs, name):
    assert layer_codes(runs[name][1]) == set()


@pytest.mark.parametrize(("name", "code"), [
    ("huge-lr", "update-ratio-high"),
    ("tiny-lr", "update-ratio-low"),
    ("dead-relu", "dead-units"),
    ("deep-sigmoid", "vanishing-gradients"),
    ("saturated-sigmoid", "saturated-activations"),
    ("huge-init", "poor-initialization"),
])
def test_fault_is_found(runs, name, code):
    assert code in layer_codes(runs[name][1])


def test_fault_findings_name_a_layer_and_a_step(runs):
    dead = next(f for f in runs["dead-relu"][1].findings if f.code == "dead-units")
    assert dead.layer in {"1", "3", "5"}  # the ReLU modules of the Sequential
    assert dead.step is not None
    vanish = next(f for f in runs["deep-sigmoid"][1].findings
                  if f.code == "vanishing-gradients")
    assert vanish.layer == "0" and vanish.evidence["ratio"] < 1e-2


def test_nan_origin_names_the_poisoned_layer_and_step(runs):
    run_dir, d = runs["nan-at-layer-2"]
    origin = [f for f in d.findings if f.code == "nan-origin"]
    assert len(origin) == 1
    assert origin[0].layer == "2"
    assert origin[0].step == dt.NAN_STEP
    assert origin[0].evidence["where"] == "forward output"
    assert "nan-loss" in d.codes()
    # Recorded once, in run.json, for readers of the folder.
    assert [e["code"] for e in read_run_json(run_dir)["live_findings"]] == ["nan-origin"]


def test_huge_learning_rate_really_reaches_nan(tmp_path):
    doc, first_bad = dt.huge_lr_to_nan(tmp_path / "r")
    d = doc.report()
    assert first_bad is not None  # the run itself blew up; nothing was injected
    assert "nan-loss" in d.codes()
    origin = [f for f in d.findings if f.code == "nan-origin"]
    assert len(origin) == 1
    # The output Linear (index 4): its weights are the ones that oscillate and grow.
    assert origin[0].layer == "4"
    assert origin[0].step is not None
    # Seen at the bad step or the next step read in full (at most `every` later).
    assert first_bad <= origin[0].step <= first_bad + 10
    high = [f for f in d.findings if f.code == "update-ratio-high"]
    assert len(high) == 1 and high[0].layer == "4"
    assert high[0].step is not None and high[0].step < first_bad  # the warning came first
    assert diagnose(read_run_dir(tmp_path / "r")).to_dict() == d.to_dict()


@pytest.mark.parametrize("name", SCENARIOS)
def test_report_equals_diagnose_of_the_folder(runs, name):
    run_dir, d = runs[name]
    assert is_lossdoctor_run_dir(run_dir)
    from_disk = diagnose(read_run_dir(run_dir))
    assert from_disk.to_dict() == d.to_dict()


def test_folder_has_canonical_series(runs):
    run = read_run_dir(runs["healthy"][0])
    assert run.format == "lossdoctor"
    for key in ("train/loss", "train/loss_step", "val/loss", "val/accuracy", "lr",
                "layer/0/update_ratio", "layer/1/dead_fraction", "layer/6/grad_norm"):
        assert key in run.series, key
    assert run.series["val/loss"].epochs.tolist() == [0, 1]
    meta = run.meta
    assert meta["framework"] == "torch" and meta["status"] == "closed"
    assert [x["name"] for x in meta["layers"]] == [str(i) for i in range(7)]


def test_monitor_fault_is_one_finding_and_training_completes(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("injected")

    monkeypatch.setattr("lossdoctor.integrations.torch._activation_stats", broken)
    torch.manual_seed(0)
    m = dt.mlp()
    doc = dt.train(tmp_path / "r", m, torch.optim.Adam(m.parameters(), lr=1e-3), epochs=1)
    d = doc.report()
    errors = [f for f in d.findings if f.code == "monitor-error"]
    assert len(errors) == 1
    assert errors[0].evidence["signal"] == "activations"
    assert "injected" in str(errors[0].evidence["error"])
    run = read_run_dir(tmp_path / "r")
    assert len(run.series["train/loss_step"]) == len(dt.digits()[0]) // dt.BATCH
    assert "layer/0/grad_norm" in run.series  # the other signals went on


def test_stop_on_critical_and_printing(tmp_path, capsys):
    torch.manual_seed(0)
    m = dt.mlp()
    seen = []

    def poison(step: int) -> None:
        if step == 10:
            with torch.no_grad():
                m[0].weight[0, 0] = float("inf")

    with pytest.raises(StopTraining) as stop:
        dt.train(tmp_path / "r", m, torch.optim.Adam(m.parameters(), lr=1e-3),
                 before_step=poison, stop_on_critical=True, on_finding=seen.append)
    assert stop.value.finding.code == "nan-origin"
    assert stop.value.finding.layer == "0"
    assert seen[0].code == "nan-origin"  # then the closing diagnosis (nan-loss, ...)
    assert capsys.readouterr().err == ""  # verbose=False


def test_prints_each_finding_once(tmp_path, capsys):
    torch.manual_seed(0)
    m = dt.mlp()
    dt.train(tmp_path / "r", m, torch.optim.SGD(m.parameters(), lr=1e-6), verbose=True)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "update-ratio-low" in ln]
    assert len(lines) == 1
    assert lines[0].startswith("lossdoctor [warning] update-ratio-low (layer ")


def test_refuses_to_write_over_a_run(runs):
    m = dt.mlp()
    with pytest.raises(FileExistsError, match=r"run\.json"):
        dt.Doctor(m, torch.optim.SGD(m.parameters(), lr=0.1), runs["healthy"][0])


def test_kill_9_leaves_a_readable_run(tmp_path):
    run_dir = tmp_path / "killed"
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen([sys.executable, "-m", "tests.live.digits_torch", str(run_dir)],
                            stdout=subprocess.PIPE, cwd=root, env=env)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"flushed"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    run = read_run_dir(run_dir)
    assert read_run_json(run_dir)["status"] == "running"
    assert len(run.series["train/loss"]) >= 60
    assert "layer/0/update_ratio" in run.series
    diagnose(run)  # reads without error
    cli = subprocess.run([sys.executable, "-m", "lossdoctor", "diagnose", str(run_dir)],
                         capture_output=True, text=True, cwd=root, env=env)
    assert "Traceback" not in cli.stderr
    assert cli.returncode in (0, 1), cli.stderr  # read as one lossdoctor run
    assert "(lossdoctor;" in cli.stdout


def test_epoch_train_loss_is_the_mean_of_its_steps(runs):
    # Written once the epoch's step losses have been read back (later, on a GPU).
    run = read_run_dir(runs["healthy"][0])
    per_epoch = len(dt.digits()[0]) // dt.BATCH
    steps = run.series["train/loss_step"].values
    means = [steps[e * per_epoch:(e + 1) * per_epoch].mean() for e in range(2)]
    assert run.series["train/loss"].values == pytest.approx(means, rel=1e-6)


def test_slow_writes_are_spaced_out(tmp_path):
    # A write that takes 20 ms may take 0.5% of the time: at most one per 4 s.
    torch.manual_seed(0)
    m = dt.mlp()
    doc = dt.Doctor(m, torch.optim.SGD(m.parameters(), lr=0.05), tmp_path / "r",
                    verbose=False, flush_interval_s=0.0, dense_every=1)
    writes = []
    write = doc.monitor.flush

    def slow_write() -> None:
        writes.append(1)
        time.sleep(0.02)
        write()

    doc.monitor.flush = slow_write  # type: ignore[method-assign]
    x, y = dt.digits()
    for i in range(40):  # a read-back on every step, each one a chance to write
        loss = torch.nn.functional.cross_entropy(m(x[i:i + 8]), y[i:i + 8])
        loss.backward()
        doc.optimizer.step()
        doc.optimizer.zero_grad()
        doc.log(loss=loss)
    assert len(writes) == 1
    doc.close()
    assert len(read_run_dir(tmp_path / "r").series["train/loss"]) == 40


def test_failing_read_back_is_one_finding_and_training_completes(tmp_path, monkeypatch):
    def broken(self):
        raise RuntimeError("injected")

    monkeypatch.setattr("lossdoctor.integrations.torch._Transfer.ready", broken)
    torch.manual_seed(0)
    m = dt.mlp()
    doc = dt.train(tmp_path / "r", m, torch.optim.Adam(m.parameters(), lr=1e-3), epochs=1)
    errors = [f for f in doc.report().findings if f.code == "monitor-error"]
    assert len(errors) == 1 and errors[0].evidence["signal"] == "sync"
    assert read_run_json(tmp_path / "r")["status"] == "closed"


def test_hooks_are_attached_only_on_steps_that_read(tmp_path):
    # A plain step keeps only the post-step counter; the pre-step hook is there on
    # steps that read, forward hooks on steps that read activations (one per hooked
    # layer, and a pre/post pair on the model for the functions its forward calls).
    torch.manual_seed(0)
    m = dt.mlp()
    opt = torch.optim.SGD(m.parameters(), lr=0.05)
    doc = dt.Doctor(m, opt, tmp_path / "r", verbose=False, dense_steps=0, every=4,
                    max_overhead=None, histogram_every=0, activation_every=2)
    x, y = dt.digits()
    seen = []
    for i in range(12):
        seen.append((len(opt._optimizer_step_pre_hooks), len(opt._optimizer_step_post_hooks),
                     sum(len(mod._forward_hooks) for mod in m.modules()),
                     sum(len(mod._forward_pre_hooks) for mod in m.modules())))
        loss = torch.nn.functional.cross_entropy(m(x[i:i + 8]), y[i:i + 8])
        opt.zero_grad()
        loss.backward()
        opt.step()
        doc.log(loss=loss)
    doc.close()
    hooked = len(doc._hooked)
    reading = [(1, 1, hooked + 1, 1), (1, 1, 0, 0)]  # activations every other reading
    plain = [(0, 1, 0, 0)] * 3
    assert seen == [reading[0], *plain, reading[1], *plain, reading[0], *plain]
    assert (len(opt._optimizer_step_pre_hooks), len(opt._optimizer_step_post_hooks)) == (0, 0)
    rows = read_run_dir(tmp_path / "r").series
    assert list(rows[f"layer/{doc._param_layers[0]}/update_norm"].steps) == [0, 4, 8]


def test_losses_of_any_dtype_or_kind_are_read_back_in_order(tmp_path):
    doc = dt.Doctor(dt.mlp(), torch.optim.SGD(dt.mlp().parameters(), lr=0.1),
                    tmp_path / "r", verbose=False)
    logged = [torch.tensor(2.5), torch.tensor(1.5, dtype=torch.bfloat16), 0.75,
              torch.tensor([0.5]), torch.tensor(0.25, dtype=torch.float64)]
    for v in logged:
        doc.log(loss=v)
    doc.log(loss=torch.tensor([1.0, 2.0]))  # not one value: one monitor-error
    doc.log(loss=torch.tensor(0.125))
    doc.close()
    series = read_run_dir(tmp_path / "r").series["train/loss"]  # no epochs: the steps'
    assert list(series.steps) == [0, 1, 2, 3, 4, 6]
    assert list(series.values) == [2.5, 1.5, 0.75, 0.5, 0.25, 0.125]
    errors = [f for f in doc.report().findings if f.code == "monitor-error"]
    assert [f.evidence["signal"] for f in errors] == ["log"]


def test_updates_are_read_after_the_model_changes_dtype(tmp_path):
    # The weight snapshot is kept between readings; a model moved to float64 mid-run
    # gets new buffers instead of failing every later reading.
    torch.manual_seed(0)
    m = dt.mlp()
    opt = torch.optim.SGD(m.parameters(), lr=0.05)
    doc = dt.Doctor(m, opt, tmp_path / "r", verbose=False, dense_steps=0, every=2,
                    max_overhead=None, histogram_every=0)
    x, y = dt.digits()
    for i in range(12):
        if i == 6:
            m.double()
        xb = x[i:i + 8].to(next(m.parameters()).dtype)
        loss = torch.nn.functional.cross_entropy(m(xb), y[i:i + 8])
        opt.zero_grad()
        loss.backward()
        opt.step()
        doc.log(loss=loss)
    doc.close()
    assert not [f for f in doc.report().findings if f.code == "monitor-error"]
    series = read_run_dir(tmp_path / "r").series[f"layer/{doc._param_layers[0]}/update_norm"]
    assert list(series.steps) == [0, 2, 4, 6, 8, 10]
    assert (series.values > 0).all()
