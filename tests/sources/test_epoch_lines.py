"""A hand-written PyTorch loop's printed output, saved to a file: a line per epoch in
the styles such loops print, between per-step lines and other chatter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lossdoctor.run import TRAIN_ACC, TRAIN_LOSS, VAL_ACC, VAL_LOSS
from lossdoctor.sources import load
from lossdoctor.sources.epoch_lines import epoch_record

torch = pytest.importorskip("torch")

EPOCHS = 8


@pytest.fixture(scope="module")
def history() -> dict[str, list[float]]:
    """Per-epoch losses and accuracies of a real MLP trained on digits (SGD, 8 epochs),
    and the per-step losses of its first epoch."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    xt = torch.tensor(x / 16.0, dtype=torch.float32)
    yt = torch.tensor(y)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(),
                                torch.nn.Linear(32, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    out: dict[str, list[float]] = {k: [] for k in ("loss", "acc", "val_loss", "val_acc",
                                                   "steps")}
    for epoch in range(EPOCHS):
        for i in range(0, 1400, 64):
            loss = torch.nn.functional.cross_entropy(model(xt[i:i + 64]), yt[i:i + 64])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if epoch == 0:
                out["steps"].append(loss.item())
        with torch.no_grad():
            for prefix, part in (("", slice(0, 1400)), ("val_", slice(1400, None))):
                logits = model(xt[part])
                out[prefix + "loss"].append(
                    float(torch.nn.functional.cross_entropy(logits, yt[part])))
                out[prefix + "acc"].append(float((logits.argmax(1) == yt[part]).float().mean()))
    return out


def style_lines(style: str, h: dict[str, list[float]]) -> list[str]:
    lines = ["Using device: cpu", f"Training for {EPOCHS} epochs"]
    for e in range(EPOCHS):
        if e == 0:
            lines += [f"Epoch [1/{EPOCHS}], Step [{k + 1}/22], Loss: {v:.4f}"
                      for k, v in enumerate(h["steps"])]
        tl, ta, vl, va = h["loss"][e], h["acc"][e], h["val_loss"][e], h["val_acc"][e]
        if style == "comma":
            lines.append(f"Epoch {e + 1}/{EPOCHS}, Train Loss: {tl:.4f}, Train Acc: {ta:.4f}, "
                         f"Val Loss: {vl:.4f}, Val Acc: {va:.4f}")
        elif style == "tabs":  # the Udacity notebooks' line, counted from 1
            lines.append(f"Epoch: {e + 1} \tTraining Loss: {tl:.6f} \tValidation Loss: {vl:.6f}")
            if e and vl < min(h["val_loss"][:e]):
                lines.append("Validation loss decreased.  Saving model ...")
        else:  # key=value, counted from 0, validation on its own line
            lines.append(f"[epoch {e}] train_loss={tl:.4f} | acc={ta:.4f}")
            lines.append(f"[epoch {e}] val_loss={vl:.4f} | val_acc={va:.4f}")
    return lines


@pytest.mark.parametrize("style", ["comma", "tabs", "equals"])
def test_printed_epochs_are_the_training_history(tmp_path: Path, style: str,
                                                 history: dict[str, list[float]]) -> None:
    path = tmp_path / "train.log"
    path.write_text("\n".join(style_lines(style, history)) + "\n")
    (item,) = load(path)
    run = item.run
    assert run is not None, item.error
    assert run.format == "console"
    tol = 6e-7 if style == "tabs" else 6e-5  # as printed
    for role, key in ((TRAIN_LOSS, "loss"), (VAL_LOSS, "val_loss")):
        assert run.series[role].steps.tolist() == list(range(EPOCHS))
        np.testing.assert_allclose(run.series[role].values, history[key], atol=tol)
    if style != "tabs":
        np.testing.assert_allclose(run.series[TRAIN_ACC].values, history["acc"], atol=tol)
        np.testing.assert_allclose(run.series[VAL_ACC].values, history["val_acc"], atol=tol)


def test_lines_that_are_not_an_epoch_with_a_loss() -> None:
    assert epoch_record("Epoch [1/8], Step [10/22], Loss: 0.5000") is None  # a step
    assert epoch_record("Epoch 3 finished in 12.3s, ETA: 00:05") is None  # no loss
    assert epoch_record("Epoch 3: accuracy: 0.91") is None
    assert epoch_record("epoch 3 loss 0.48") is None  # no `name:` to go by
    assert epoch_record("Epoch 3 | loss: 0.48 | time: 2.5s") == (3, {"loss": 0.48})
