"""Small PyTorch MLPs trained on scikit-learn's digits under a live Doctor: the
healthy baseline and one fault per layer finding.

LOSSDOCTOR_TEST_DEVICE=cuda runs them (and the tests that use them) on a GPU, where
the Doctor's read-backs wait for queued work; CI runs them on the CPU."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from lossdoctor.torch import Doctor

BATCH = 64
DEVICE = torch.device(os.environ.get("LOSSDOCTOR_TEST_DEVICE", "cpu"))


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x - x.mean(0)) / (x.std(0) + 1e-8)
    return (torch.tensor(x, dtype=torch.float32, device=DEVICE),
            torch.tensor(y, device=DEVICE))


def mlp(act: type[torch.nn.Module] = torch.nn.ReLU, depth: int = 3, width: int = 32,
        init_std: float | None = None, bias: float | None = None) -> torch.nn.Sequential:
    layers: list[torch.nn.Module] = []
    d = 64
    for _ in range(depth):
        lin = torch.nn.Linear(d, width)
        if init_std is not None:
            torch.nn.init.normal_(lin.weight, std=init_std)
        if bias is not None:
            torch.nn.init.constant_(lin.bias, bias)
        layers += [lin, act()]
        d = width
    layers.append(torch.nn.Linear(d, 10))
    return torch.nn.Sequential(*layers).to(DEVICE)


def step_and_log(doc: Doctor, optimizer: torch.optim.Optimizer, loss: torch.Tensor,
                 step: int, epoch_every: int) -> None:
    """One plain training step on `loss`, logged, and an epoch end every `epoch_every`
    steps (for loops over made-up data, which have no epochs of their own)."""
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    doc.log(loss=loss)
    if step % epoch_every == epoch_every - 1:
        doc.log_epoch()


def train(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
          epochs: int = 2, before_step: Callable[[int], None] | None = None,
          **doctor: Any) -> Doctor:
    """Train under a Doctor (closed on return); `before_step(step)` may inject faults."""
    x, y = digits()
    gen = torch.Generator().manual_seed(0)
    doctor.setdefault("verbose", False)
    doc = Doctor(model, optimizer, run_dir, **doctor)
    step = 0
    with doc:
        for _ in range(epochs):
            perm = torch.randperm(len(x), generator=gen)
            for i in range(0, len(x) - BATCH + 1, BATCH):
                if before_step is not None:
                    before_step(step)
                idx = perm[i:i + BATCH]
                loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                doc.log(loss=loss)
                step += 1
            model.eval()
            with torch.no_grad():
                out = model(x[:300])
                val_loss = torch.nn.functional.cross_entropy(out, y[:300])
                val_acc = (out.argmax(1) == y[:300]).float().mean()
            model.train()
            doc.log_epoch(val_loss=val_loss, val_accuracy=val_acc)
    return doc


def scenario(name: str, run_dir: Path) -> Doctor:
    torch.manual_seed(0)
    if name == "healthy":
        m = mlp()
        return train(run_dir, m, torch.optim.Adam(m.parameters(), lr=1e-3))
    if name == "healthy-sgd":
        m = mlp()
        return train(run_dir, m, torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9))
    if name == "huge-lr":
        m = mlp(act=torch.nn.Tanh)
        return train(run_dir, m, torch.optim.SGD(m.parameters(), lr=3.0))
    if name == "tiny-lr":
        m = mlp()
        return train(run_dir, m, torch.optim.SGD(m.parameters(), lr=1e-6))
    if name == "dead-relu":
        m = mlp(bias=-5.0)
        return train(run_dir, m, torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9))
    if name == "deep-sigmoid":
        m = mlp(act=torch.nn.Sigmoid, depth=10)
        return train(run_dir, m, torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9))
    if name == "saturated-sigmoid":
        m = mlp(act=torch.nn.Sigmoid, depth=4, init_std=2.0)
        return train(run_dir, m, torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9))
    if name == "huge-init":
        m = mlp(depth=4, init_std=3.0)
        return train(run_dir, m, torch.optim.SGD(m.parameters(), lr=1e-4))
    if name == "nan-at-layer-2":
        m = mlp()

        def poison(step: int) -> None:
            if step == NAN_STEP:
                with torch.no_grad():
                    m[2].weight[0, 0] = float("nan")

        return train(run_dir, m, torch.optim.Adam(m.parameters(), lr=1e-3), before_step=poison)
    raise ValueError(f"unknown scenario {name!r}")


NAN_STEP = 40  # a step the default schedule reads (dense phase, every 5th step)


def huge_lr_to_nan(run_dir: Path, lr: float = 3.0) -> tuple[Doctor, int | None]:
    """A tanh MLP regressing one-hot targets (MSE) on raw 0..16 pixels with SGD at a
    huge learning rate: the output layer's weights oscillate with growing amplitude
    until the loss overflows to Inf/NaN, nothing injected. Returns the Doctor and the
    first step whose loss was not finite."""
    from sklearn.datasets import load_digits

    x_np, y_np = load_digits(return_X_y=True)
    x = torch.tensor(x_np, dtype=torch.float32, device=DEVICE)
    y = torch.tensor(y_np, device=DEVICE)
    target = torch.nn.functional.one_hot(y, 10).float()
    torch.manual_seed(0)
    model = mlp(act=torch.nn.Tanh, depth=2)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(0)
    first_bad: int | None = None
    step = 0
    with Doctor(model, opt, run_dir, verbose=False) as doc:
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x) - BATCH + 1, BATCH):
            idx = perm[i:i + BATCH]
            loss = torch.nn.functional.mse_loss(model(x[idx]), target[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            doc.log(loss=loss)
            if first_bad is None and not torch.isfinite(loss).item():
                first_bad = step
            step += 1
        doc.log_epoch()
    return doc, first_bad


if __name__ == "__main__":  # the kill -9 test: train slowly until killed
    run_dir = Path(sys.argv[1])
    torch.manual_seed(0)
    x, y = digits()
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    doc = Doctor(model, opt, run_dir, verbose=False, every=5)
    step = 0
    while True:
        idx = torch.randint(0, len(x), (BATCH,), device=DEVICE)
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        doc.log(loss=loss)
        step += 1
        if step == 60:
            doc.flush()
            print("flushed", flush=True)
