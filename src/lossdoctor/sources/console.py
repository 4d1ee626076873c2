"""Training output saved from a terminal or a notebook (`nohup.out`, a SLURM log,
`python train.py | tee train.log`):

- Keras `fit` (Keras 2 and 3, verbose 1 or 2): `Epoch 3/20` then progress lines
  `1875/1875 [====] - 2s 1ms/step - loss: 0.28 - accuracy: 0.89 - val_loss: ...`
  (Keras 3 draws the bar with `━` and colours it; verbose=1 redraws it with carriage
  returns and backspaces, which a file keeps);
- the Hugging Face Trainer's printed records, one Python dict per line:
  `{'loss': 2.1, 'learning_rate': 4.9e-05, 'epoch': 0.1}`;
- a hand-written loop's line per epoch, `Epoch 3/20, Train Loss: 0.48, Val Loss: 0.53`
  (`epoch_lines`).

Each becomes records as JSON Lines would be (`tabular.read_records`): one per Keras
epoch (its last complete progress line, with the validation metrics Keras appends to
it), one per Trainer dict. A fit whose epochs start again at 1 is another run.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from lossdoctor.errors import InputError
from lossdoctor.run import Run
from lossdoctor.sources.epoch_lines import epoch_record, epoch_records

MAX_BYTES = 256 * 1024 * 1024
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_BREAKS = re.compile(r"[\r\n]+|\x08+")
_EPOCH = re.compile(r"Epoch (\d+)/(\d+)\s*$")
# `1875/1875 [====] - ...`, `23/23 ━━━━ 0s ...`, `23/23 - 1s - ...`
_PROGRESS = re.compile(r"(\d+)/(\d+)\s+(?:\[[=>.]*\]|━+|-\s)")
# `- loss: 0.2986` (a value, not `ETA: 0s`)
_METRIC = re.compile(r"(?:^|\s)([A-Za-z_][\w./-]*): "
                     r"(-?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|nan|inf))(?=\s|$)")
_DICT_LINE = re.compile(r"\{'[\w./-]+': ")
_HEAD_LINES = 400
# What one of the three needs somewhere in a file's head, in lower case: an epoch
# number, then a loss given as `name: value` / `name=value` (a Trainer dict has none).
_EPOCH_THEN_LOSS = re.compile(rb"epoch\W{1,4}\d[\s\S]*?loss\w*'?\s*[:=]")
# Python prints non-finite floats as names `literal_eval` does not take.
_NON_FINITE = re.compile(r"(?<=: )(nan|-?inf)\b")
_LITERALS = {"nan": "None", "inf": "1e999", "-inf": "-1e999"}


def _lines(text: str) -> list[str]:
    """Lines as a terminal would have shown them in turn (each redraw its own line),
    without colours and without the `# ` or indentation of a pasted log."""
    lines = (ln.strip().lstrip("#").strip() for ln in _BREAKS.split(_ANSI.sub("", text)))
    return [ln for ln in lines if ln]


def looks_like_console(head: bytes) -> bool:
    """Whether the start of a file holds Keras `fit` output, Trainer dict lines or a
    loop's lines per epoch."""
    if b"{'" not in head and not _EPOCH_THEN_LOSS.search(head.lower()):
        return False  # most files (every CSV log) end here: byte searches, no line work
    text = head.decode("utf-8", errors="replace")
    lines = _lines("\n".join(text.split("\n", _HEAD_LINES)[:_HEAD_LINES]))[:_HEAD_LINES]
    epochs = sum(1 for ln in lines if _EPOCH.match(ln))
    progress = sum(1 for ln in lines if _PROGRESS.match(ln) and "loss: " in ln)
    dicts = sum(1 for ln in lines if _DICT_LINE.match(ln) and _trainer_record(ln))
    per_epoch = sum(1 for ln in lines if epoch_record(ln) is not None)
    return (epochs >= 1 and progress >= 1) or dicts >= 2 or per_epoch >= 2


def _metrics(line: str) -> dict[str, float]:
    return {name: float(value) for name, value in _METRIC.findall(line)}


def _trainer_record(line: str) -> dict[str, object] | None:
    """A Trainer's printed record: a dict of numbers (NaN is printed as `nan`)."""
    try:
        value = ast.literal_eval(_NON_FINITE.sub(lambda m: _LITERALS[m.group(1)], line))
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    if not isinstance(value, dict) or not value:
        return None
    if not all(isinstance(k, str) and (v is None or isinstance(v, int | float))
               for k, v in value.items()):
        return None
    return {k: float("nan") if v is None else v for k, v in value.items()}


def _keras_records(lines: list[str]) -> list[dict[str, object]]:
    """One record per Keras epoch: the first progress line of the epoch that reached
    its total (a later one with the same total is taken when it adds validation
    metrics; `evaluate` and `predict` lines after it have neither)."""
    records: list[dict[str, object]] = []
    epoch: int | None = None
    total: int | None = None
    best: dict[str, float] | None = None

    def close() -> None:
        if epoch is not None and best:
            records.append({"epoch": epoch - 1, **best})  # CSVLogger counts from 0

    for line in lines:
        if (head := _EPOCH.match(line)) is not None:
            close()
            epoch, total, best = int(head.group(1)), None, None
            continue
        bar = _PROGRESS.match(line)
        if epoch is None or bar is None:
            continue
        done, of = int(bar.group(1)), int(bar.group(2))
        if total is None:
            total = of
        if of != total or done != of:
            continue
        found = _metrics(line)
        if not found:
            continue
        if best is None or (any(k.startswith("val_") for k in found)
                            and not any(k.startswith("val_") for k in best)
                            and set(best) <= set(found)):
            best = found
    close()
    return records


def read_console_log(path: Path, *, train_loss: str | None = None,
                     val_loss: str | None = None) -> list[Run]:
    from lossdoctor.sources.tabular import read_records

    source = str(path)
    if path.stat().st_size > MAX_BYTES:
        raise InputError(source, "console log larger than 256 MiB")
    lines = _lines(path.read_bytes().decode("utf-8", errors="replace"))
    records = _keras_records(lines)
    fmt = "keras-console"
    if not records:
        records = [r for ln in lines if _DICT_LINE.match(ln)
                   and (r := _trainer_record(ln)) is not None]
        fmt = "hf-trainer-console"
    if not records:
        records, fmt = epoch_records(lines), "console"
    if not records:
        raise InputError(source, "no epoch of Keras fit output, no Trainer records and no "
                         "line per epoch with a loss in this console log")
    return read_records(records, path, fmt, train_loss=train_loss, val_loss=val_loss)


__all__ = ["looks_like_console", "read_console_log"]
