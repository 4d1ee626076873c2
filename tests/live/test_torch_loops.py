"""The PyTorch Doctor in loops people write besides the plain one: a compiled model
(`torch.compile(model)` and `model.compile()`; forward hooks would change the
compiled graph, so activations are skipped with a note and training goes on),
gradient accumulation that logs every micro-batch (a note that the steps do not line
up), bf16 autocast with a GradScaler (no note: the counts agree), fp16 autocast whose
GradScaler skips steps (counted as steps without an update; `skipped-steps` when it
keeps skipping), layers unfrozen into
the optimizer mid-run, a model wrapped in (Distributed)DataParallel, and an embedding
with sparse gradients."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from tests.live import digits_torch as dt

from lossdoctor.diagnosis import diagnose
from lossdoctor.sources.rundir import read_run_dir
from lossdoctor.torch import Doctor

pytestmark = pytest.mark.slow

EPOCHS = 2


def notes_of(run_dir: Path) -> list[dict[str, str]]:
    return list(json.loads((run_dir / "run.json").read_text())["notes"])


def plain_steps(doc: Doctor, model: Callable[[torch.Tensor], torch.Tensor],
                optimizer: torch.optim.Optimizer, epochs: int = EPOCHS,
                before_epoch: Callable[[int], None] | None = None) -> None:
    x, y = dt.digits()
    for epoch in range(epochs):
        if before_epoch is not None:
            before_epoch(epoch)
        for i in range(0, len(x) - dt.BATCH + 1, dt.BATCH):
            loss = torch.nn.functional.cross_entropy(model(x[i:i + dt.BATCH]),
                                                     y[i:i + dt.BATCH])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            doc.log(loss=loss)
        doc.log_epoch()


def compiled_wrapper(model: torch.nn.Module) -> torch.nn.Module:
    return torch.compile(model, backend="eager")  # type: ignore[return-value]


def compiled_in_place(model: torch.nn.Module) -> torch.nn.Module:
    model.compile(backend="eager")
    return model


@pytest.mark.parametrize("compile_model", [compiled_wrapper, compiled_in_place],
                         ids=["torch.compile", "module.compile"])
def test_a_compiled_model_trains_and_keeps_its_weight_signals(
        tmp_path: Path, compile_model: Callable[[torch.nn.Module], torch.nn.Module]):
    torch.manual_seed(0)
    net = dt.mlp().to(dt.DEVICE)
    model = compile_model(net)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    with Doctor(model, opt, tmp_path / "run", verbose=False) as doc:
        plain_steps(doc, model, opt)  # a forward hook here broke tracing at step 0
    assert "monitor-error" not in doc.report().codes()
    run = read_run_dir(tmp_path / "run")
    names = [layer["name"] for layer in json.loads((tmp_path / "run" / "run.json")
                                                   .read_text())["layers"]]
    assert names and not any(n.startswith("_orig_mod") for n in names)
    first = names[0]
    for signal in ("weight_norm", "update_ratio", "grad_norm"):
        series = run.get(f"layer/{first}/{signal}")
        assert series is not None and len(series) >= 5, signal
    assert run.get(f"layer/{first}/act_mean") is None
    assert [n["signal"] for n in notes_of(tmp_path / "run")] == ["activations"]
    assert any("compiled" in w for w in run.warnings)  # shown with the report


def test_accumulation_logged_per_micro_batch_is_noted(tmp_path: Path):
    torch.manual_seed(0)
    model = dt.mlp().to(dt.DEVICE)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = dt.digits()
    micro = 4
    with Doctor(model, opt, tmp_path / "run", verbose=False) as doc:
        for _ in range(EPOCHS):
            for k, i in enumerate(range(0, len(x) - 15, 16)):
                loss = torch.nn.functional.cross_entropy(model(x[i:i + 16]), y[i:i + 16])
                (loss / micro).backward()
                if k % micro == micro - 1:
                    opt.step()
                    opt.zero_grad()
                doc.log(loss=loss)
            doc.log_epoch()
    [note] = notes_of(tmp_path / "run")
    assert note["level"] == "warning" and note["signal"] == "steps"
    assert "optimizer steps" in note["note"]


def test_autocast_with_a_grad_scaler_is_read_without_notes(tmp_path: Path):
    torch.manual_seed(0)
    model = dt.mlp().to(dt.DEVICE)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    scaler = torch.amp.GradScaler(dt.DEVICE.type)
    x, y = dt.digits()
    with Doctor(model, opt, tmp_path / "run", verbose=False) as doc:
        for _ in range(EPOCHS):
            for i in range(0, len(x) - dt.BATCH + 1, dt.BATCH):
                with torch.autocast(dt.DEVICE.type, dtype=torch.bfloat16):
                    loss = torch.nn.functional.cross_entropy(
                        model(x[i:i + dt.BATCH]), y[i:i + dt.BATCH])
                opt.zero_grad()
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                doc.log(loss=loss)
            doc.log_epoch()
    assert notes_of(tmp_path / "run") == []
    assert "monitor-error" not in doc.report().codes()
    run = read_run_dir(tmp_path / "run")
    acts = run.get("layer/1/act_mean")
    assert acts is not None and len(acts) >= 3


def train_fp16_with_a_scaler(run_dir: Path, scaler: torch.amp.GradScaler,
                             epochs: int = EPOCHS) -> tuple[Doctor, list[int]]:
    """The loop of PyTorch's AMP recipe (zero_grad first, then the scaled backward,
    `scaler.step`, `scaler.update`), logged once per iteration; returns the Doctor
    and the iterations whose optimizer step the scaler skipped."""
    torch.manual_seed(0)
    model = dt.mlp().to(dt.DEVICE)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = dt.digits()
    skipped, step = [], 0
    with Doctor(model, opt, run_dir, verbose=False) as doc:
        for _ in range(epochs):
            for i in range(0, len(x) - dt.BATCH + 1, dt.BATCH):
                with torch.autocast(dt.DEVICE.type, dtype=torch.float16):
                    loss = torch.nn.functional.cross_entropy(
                        model(x[i:i + dt.BATCH]), y[i:i + dt.BATCH])
                opt.zero_grad()
                scaler.scale(loss).backward()
                scale = scaler.get_scale()
                scaler.step(opt)
                scaler.update()
                if scaler.get_scale() < scale:
                    skipped.append(step)
                doc.log(loss=loss)
                step += 1
            doc.log_epoch()
    return doc, skipped


def test_steps_a_grad_scaler_skips_are_steps_without_an_update(tmp_path: Path):
    # A scale started at 2**40 overflows float16 until it has been halved enough.
    doc, skipped = train_fp16_with_a_scaler(
        tmp_path / "run", torch.amp.GradScaler(dt.DEVICE.type, init_scale=2.0 ** 40))
    first_update = next(s for s in range(len(skipped) + 1) if s not in skipped)
    assert first_update >= 10
    assert notes_of(tmp_path / "run") == []  # log() and the steps agree
    run = read_run_dir(tmp_path / "run")
    recorded = run.get("train/skipped_steps")
    assert recorded is not None and list(recorded.steps) == skipped
    # Per-layer signals on the steps of log(): the first reading is on the first
    # dense-start step (one in 5) that updated.
    ratios = run.get("layer/0/update_ratio")
    assert ratios is not None
    assert int(ratios.steps[0]) == -(-first_update // 5) * 5
    assert 1e-4 < float(ratios.values[0]) < 1e-1
    # A scaler coming down to a workable scale is not a fault.
    codes = doc.report().codes()
    assert not {"skipped-steps", "nan-origin", "monitor-error"} & set(codes), codes


def test_a_grad_scaler_that_keeps_skipping_is_found(tmp_path: Path):
    # Growing the scale 1024-fold after every update overflows it again at once: about
    # nine iterations in ten skip their step.
    doc, skipped = train_fp16_with_a_scaler(
        tmp_path / "run", torch.amp.GradScaler(dt.DEVICE.type, growth_factor=2.0 ** 10,
                                               growth_interval=1))
    assert len(skipped) > 0.5 * doc._step
    [finding] = [f for f in doc.report().findings if f.code == "skipped-steps"]
    assert finding.severity.name == "CRITICAL"
    assert finding.evidence["skipped_steps"] == len(skipped)
    recorded = read_run_dir(tmp_path / "run").get("train/skipped_steps")
    assert recorded is not None and list(recorded.steps) == skipped
    # The same from the run directory, as `lossdoctor diagnose RUN_DIR` reads it.
    offline = diagnose(read_run_dir(tmp_path / "run"))
    assert "skipped-steps" in offline.codes()
    assert "nan-origin" not in offline.codes()


def test_layers_unfrozen_into_the_optimizer_are_watched_from_then_on(tmp_path: Path):
    # Gradual unfreezing: the first layer starts frozen and outside the optimizer, and
    # joins it through add_param_group after the first epoch (as Lightning's
    # BaseFinetuning does).
    torch.manual_seed(0)
    model = dt.mlp().to(dt.DEVICE)
    first = model[0]
    first.requires_grad_(False)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05)
    x, _ = dt.digits()
    per_epoch = len(range(0, len(x) - dt.BATCH + 1, dt.BATCH))

    def unfreeze(epoch: int) -> None:
        if epoch == 1:
            first.requires_grad_(True)
            opt.add_param_group({"params": list(first.parameters()), "lr": 0.01})

    with Doctor(model, opt, tmp_path / "run", verbose=False) as doc:
        plain_steps(doc, model, opt, epochs=3, before_epoch=unfreeze)
    assert "monitor-error" not in doc.report().codes()
    run = read_run_dir(tmp_path / "run")
    unfrozen, head = run.get("layer/0/weight_norm"), run.get("layer/6/weight_norm")
    assert unfrozen is not None and head is not None
    # Read from the first reading after it joined (the dense start: every 5 steps).
    assert per_epoch <= int(unfrozen.steps[0]) < per_epoch + 5
    assert len(unfrozen) >= 3
    assert int(head.steps[0]) == 0 and len(head) > len(unfrozen)
    grads = run.get("layer/0/grad_norm")
    assert grads is not None and (grads.values > 0).all()
    [note] = notes_of(tmp_path / "run")
    assert note["signal"] == "layers" and "(new: 0)" in note["note"]


@pytest.mark.parametrize("wrapper", ["DataParallel", "DistributedDataParallel"])
def test_a_wrapped_model_keeps_its_own_layer_names(tmp_path: Path, wrapper: str):
    import torch.distributed as dist

    torch.manual_seed(0)
    net = dt.mlp().to(dt.DEVICE)
    if wrapper == "DataParallel":
        model: torch.nn.Module = torch.nn.DataParallel(net)
    else:  # one process on gloo: the wrapper, its hooks and all-reduce, for real
        dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'group'}",
                                rank=0, world_size=1)
        model = torch.nn.parallel.DistributedDataParallel(net)
    try:
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        with Doctor(model, opt, tmp_path / "run", verbose=False) as doc:
            plain_steps(doc, model, opt)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    assert "monitor-error" not in doc.report().codes()
    names = [layer["name"] for layer in json.loads((tmp_path / "run" / "run.json")
                                                   .read_text())["layers"]]
    # As without the wrapper: the Sequential's children "0", "1", ... (Linear, ReLU).
    assert names == [str(i) for i in range(len(net))]
    run = read_run_dir(tmp_path / "run")
    assert run.get(f"layer/{names[0]}/act_mean") is not None
    assert run.get(f"layer/{names[0]}/grad_norm") is not None


def test_quasi_newton_steps_are_not_judged_by_the_first_order_ratio(tmp_path: Path):
    # L-BFGS takes line-searched steps of a tenth of the weights and more: by the ~1e-3
    # rule for SGD and Adam that is "update-ratio-high", which says nothing here. The
    # same readings under a first-order optimizer's name do fire it.
    from dataclasses import replace

    from lossdoctor.diagnosis import diagnose

    torch.manual_seed(0)
    model = dt.mlp().to(dt.DEVICE)
    opt = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=5)
    x, y = dt.digits()
    with Doctor(model, opt, tmp_path / "run", verbose=False) as doc:
        for _ in range(3):
            for i in range(0, len(x) - 255, 256):
                def closure(i: int = i) -> torch.Tensor:
                    opt.zero_grad()
                    loss = torch.nn.functional.cross_entropy(model(x[i:i + 256]),
                                                             y[i:i + 256])
                    loss.backward()
                    return loss
                doc.log(loss=opt.step(closure))
            doc.log_epoch()
    run = read_run_dir(tmp_path / "run")
    assert run.meta["hparams"]["optimizer"] == "LBFGS"  # type: ignore[index]
    assert "update-ratio-high" not in diagnose(run).codes()
    as_sgd = replace(run, meta={**run.meta, "hparams": {"optimizer": "SGD"}})
    assert "update-ratio-high" in diagnose(as_sgd).codes()


def test_sparse_embedding_gradients_are_read(tmp_path: Path):
    # `Embedding(sparse=True)` gives a sparse gradient: norms and histograms of it
    # failed ("linalg_vector_norm ... SparseCPU"), two monitor errors and no gradient
    # signals for the layer. Now they are read from its coalesced values.
    torch.manual_seed(0)

    class Bag(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = torch.nn.Embedding(100, 16, sparse=True)
            self.head = torch.nn.Linear(16, 4)

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            return self.head(self.emb(tokens).mean(1))

    model = Bag()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)  # SGD takes sparse gradients
    token_class = torch.randint(0, 4, (100,))
    with Doctor(model, opt, tmp_path / "run", verbose=False, histogram_every=20) as doc:
        for step in range(60):
            tokens = torch.randint(0, 100, (32, 6))
            labels = token_class[tokens].mode(1).values
            loss = torch.nn.functional.cross_entropy(model(tokens), labels)
            dt.step_and_log(doc, opt, loss, step, epoch_every=20)
    assert "monitor-error" not in doc.report().codes()
    run = read_run_dir(tmp_path / "run")
    grads = run.get("layer/emb/grad_norm")
    assert grads is not None and len(grads) >= 10 and (grads.values > 0).all()
    assert "layer/emb/grad_hist" in run.histograms
