"""A hyperparameter search on scikit-learn's digits with a small PyTorch MLP.

    lossdoctor search examples/search_digits.py:train --trials 20
    python examples/search_digits.py            # the same from Python, plus an ensemble

The validation split is FIXED (the same 360 images for every trial), as the source
advises: trials are compared on the same data. Mini-batches of 128 keep 20 epochs to
a fraction of a second on a CPU.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from lossdoctor.search import Choice, LogUniform, TrialReporter

# Scale parameters in log space; momentum from the source's discrete grid.
SPACE = {"lr": LogUniform(1e-6, 1e1), "momentum": Choice([0.5, 0.9, 0.95, 0.99])}
EPOCHS = 20
BATCH = 128


@lru_cache(maxsize=1)
def data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    x, y = load_digits(return_X_y=True)
    x_tr, x_val, y_tr, y_val = train_test_split(
        (x / 16.0).astype(np.float32), y, test_size=0.2, random_state=0, stratify=y)
    return (torch.from_numpy(x_tr), torch.from_numpy(y_tr).long(),
            torch.from_numpy(x_val), torch.from_numpy(y_val).long())


def train(params: dict[str, Any], reporter: TrialReporter) -> dict[str, Any]:
    torch.set_num_threads(1)  # tiny matrices: threads cost more than they give
    torch.manual_seed(reporter.seed)
    x_tr, y_tr, x_val, y_val = data()
    model = nn.Sequential(nn.Linear(64, int(params.get("hidden", 64))), nn.ReLU(),
                          nn.Linear(int(params.get("hidden", 64)), 10))
    opt = torch.optim.SGD(model.parameters(), lr=params["lr"],
                          momentum=params.get("momentum", 0.9))
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(reporter.seed)
    snapshots = []
    for epoch in range(int(params.get("epochs", EPOCHS))):
        model.train()
        order = torch.randperm(len(x_tr), generator=gen)
        total = 0.0
        for i in range(0, len(x_tr), BATCH):
            idx = order[i:i + BATCH]
            opt.zero_grad()
            loss = loss_fn(model(x_tr[idx]), y_tr[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        model.eval()
        with torch.no_grad():
            logits = model(x_val)
            val_loss = float(loss_fn(logits, y_val))
            val_acc = float((logits.argmax(1) == y_val).float().mean())
        # Raises TrialPruned when the doctor (or MedianPruner) says stop.
        reporter.report(epoch, train_loss=total / len(x_tr), val_loss=val_loss,
                        val_accuracy=val_acc)
        if epoch % 5 == 4:  # checkpoints for a snapshot ensemble
            snapshots.append(copy.deepcopy(model))
    return {"model": model, "snapshots": snapshots}


def main() -> None:
    import lossdoctor
    from lossdoctor.search.ensemble import members_from_snapshots

    result = lossdoctor.search(train, SPACE, n_trials=20, run_root="runs/search-digits")
    best = result.best
    print("best:", best.to_dict() if best else None)
    for finding in result.findings:
        print(finding.title)
    _, _, x_val, y_val = data()
    print(lossdoctor.ensemble(result, x_val, y_val.numpy(), k=5).render())
    if best is not None and best.number in result.outputs:
        snaps = members_from_snapshots(result.outputs[best.number]["snapshots"])
        print(lossdoctor.ensemble(snaps, x_val, y_val.numpy()).render())


if __name__ == "__main__":
    main()
