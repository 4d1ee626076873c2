"""Lines a hand-written training loop prints once per epoch, saved from its output:

    Epoch 3/20, Train Loss: 0.4821, Val Loss: 0.5310, Val Acc: 0.8120
    Epoch: 3 	Training Loss: 0.482100 	Validation Loss: 0.531000
    [epoch 3] train_loss=0.4821 | val_loss=0.5310

A line counts when it names an epoch, no step or batch (per-step lines are left out:
their numbering restarts every epoch), and holds a loss as `name: value` or
`name=value` (names of up to three words, `Val Acc` read as `val_acc`). Lines of one
epoch are merged (a training line, then a validation line). A loss without a `name:`
(`loss 0.48`) is not read: too easily something else.
"""

from __future__ import annotations

import re

from lossdoctor.sources.names import classify

_EPOCH = re.compile(r"\bepoch\b\s*[:#=]?\s*\[?\s*(\d+)\s*(?:/\s*(\d+))?", re.IGNORECASE)
_STEP = re.compile(r"\b(?:step|iter|iteration|batch)\b\s*[:#=]?\s*\[?\s*\d+", re.IGNORECASE)
_WORD = r"[A-Za-z][A-Za-z0-9_./-]*"
# `Val Acc: 0.81`, `train_loss=0.48`; not `ETA: 00:05` or `time: 12.3s`.
_PAIR = re.compile(rf"({_WORD}(?: {_WORD}){{0,2}})\s*[:=]\s*"
                   r"(-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|nan|-?inf)(?![\w.:])", re.IGNORECASE)


def _pairs(line: str) -> dict[str, float]:
    return {"_".join(name.lower().split()): float(value)
            for name, value in _PAIR.findall(line)}


def epoch_record(line: str) -> tuple[int, dict[str, float]] | None:
    """(epoch as printed, metrics) of a per-epoch line holding a loss; None for any
    other line."""
    mark = _EPOCH.search(line)
    if mark is None or _STEP.search(line):
        return None
    found = _pairs(line[mark.end():])
    if not any(classify(name)[1] == "loss" for name in found):
        return None
    return int(mark.group(1)), found


def epoch_records(lines: list[str]) -> list[dict[str, object]]:
    """One record per printed epoch, counted from 0 (as Keras' CSVLogger does) when the
    log counts from 1; a count that starts again is another run."""
    printed: list[tuple[int, dict[str, float]]] = []
    for line in lines:
        found = epoch_record(line)
        if found is None:
            continue
        if printed and printed[-1][0] == found[0]:
            printed[-1][1].update(found[1])  # the same epoch's validation line
        else:
            printed.append(found)
    shift = 1 if printed and printed[0][0] == 1 else 0
    return [{"epoch": epoch - shift, **metrics} for epoch, metrics in printed]

__all__ = ["epoch_record", "epoch_records"]
