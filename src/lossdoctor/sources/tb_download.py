"""What TensorBoard's "download data" links save for one series of one run: a CSV with
the columns `Wall time,Step,Value`, or JSON `[[wall time, step, value], ...]`, in a
file TensorBoard names `run-<run>-tag-<tag>.csv` (`/` in either written as `_`).

The series' name is only in the file name: `Loss_train` for a PyTorch tag
`Loss/train`, or the Keras split in the run (`run-train-tag-epoch_loss`,
`run-validation-tag-epoch_loss`) as `validation/epoch_loss`. Downloads of one run's
series side by side in a folder are read as that run (`run_base`, `merge`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from lossdoctor.errors import InputError
from lossdoctor.run import Run, Series
from lossdoctor.sources.epochs import attach_epochs
from lossdoctor.sources.history import load_json
from lossdoctor.sources.names import canonicalize

FORMAT = "tensorboard-download"
_NAMED = re.compile(r"run[-_](?P<run>.*?)[-_]tag[-_](?P<tag>.+)")
_SPLITS = ("train", "validation", "val", "valid", "eval")


def series_name(path: Path) -> str:
    """The series a downloaded file holds, from its name (the stem when TensorBoard's
    `run-...-tag-...` pattern is gone: a renamed file is named after its content)."""
    named = _NAMED.fullmatch(path.stem)
    if named is None:
        return path.stem
    run, tag = named.group("run"), named.group("tag")
    split = next((s for s in _SPLITS if run == s or run.endswith(("_" + s, "-" + s))), None)
    return f"{split}/{tag}" if split else tag


def run_base(path: Path) -> str | None:
    """The run a download belongs to, its Keras split taken off
    (`run-fit_20250116_train-tag-epoch_loss.csv`: `fit_20250116`; "" for `run-train-...`);
    None for a file not named as TensorBoard names downloads."""
    named = _NAMED.fullmatch(path.stem)
    if named is None or path.suffix.lower() not in (".csv", ".json"):
        return None
    run = named.group("run")
    split = next((s for s in _SPLITS if run == s or run.endswith(("_" + s, "-" + s))), None)
    return run[:len(run) - len(split)].rstrip("_-") if split else run


def merge(runs: Sequence[Run], name: str, source: str, train_loss: str | None = None,
          val_loss: str | None = None) -> Run | None:
    """One run from the downloads of its series (each a Run of one series, read from
    one file); None when one of them is not such a Run. KeyError when `train_loss` or
    `val_loss` names no series."""
    raw: dict[str, Series] = {}
    warnings: list[str] = []
    for run in runs:
        series = run.meta.get("series")
        if run.format != FORMAT or not isinstance(series, str) or len(run.series) != 1:
            return None
        raw[series] = next(iter(run.series.values()))
        warnings += [f"{Path(run.source).name}: {w}" for w in run.warnings]
    return Run(name=name, source=source, format=FORMAT,
               series=canonicalize(attach_epochs(raw), train_loss=train_loss,
                                   val_loss=val_loss),
               meta={"files": [r.source for r in runs], "series": sorted(raw)},
               warnings=warnings)


def is_download_header(names: Sequence[str]) -> bool:
    return [n.strip().lower() for n in names] == ["wall time", "step", "value"]


def looks_like_download_json(head: bytes) -> bool:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return re.match(rb"\[\s*\[\s*-?[\d.]+(?:[eE][-+]?\d+)?\s*,\s*-?\d+\s*,", text) is not None


def read_download_json(path: Path, *, train_loss: str | None = None,
                       val_loss: str | None = None) -> list[Run]:
    from lossdoctor.sources.tabular import read_records

    source = str(path)
    rows = load_json(path, "TensorBoard download")
    if not isinstance(rows, list) or not all(
            isinstance(r, list) and len(r) == 3 and all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in r)
            for r in rows):
        raise InputError(source, "expected [[wall time, step, value], ...] as TensorBoard "
                         "downloads a series")
    name = series_name(path)
    records: list[dict[str, object]] = [{"step": int(r[1]), name: r[2]} for r in rows]
    runs = read_records(records, path, FORMAT, train_loss=train_loss, val_loss=val_loss)
    for run in runs:
        run.meta["series"] = name
    return runs


__all__ = ["is_download_header", "looks_like_download_json", "merge", "read_download_json",
           "run_base", "series_name"]
