"""The CSV a Weights & Biases line plot exports ("Export panel data"): the x-axis column
first (`Step`), then for every run in the plot `<run> - <metric>` and its sampling
bounds `<run> - <metric>__MIN` / `__MAX` (`Group: <name> - <metric>` for grouped
runs), empty where a run has no point at that x.

This module reads the header (which columns are whose; `tabular` cuts the table into
one run per W&B run from that) and joins a W&B run's exports from several panels (its
training loss from one, its validation loss from another) into that run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lossdoctor.run import Run, Series

FORMAT = "wandb-csv"

_BOUNDS = ("__MIN", "__MAX")
_GROUP = "Group: "
_SEPARATOR = " - "


def _parts(name: str) -> tuple[str, str, bool] | None:
    """(run, metric, is a bound) of an exported column name; None for any other name."""
    bound = name.endswith(_BOUNDS)
    base = name[:-len(_BOUNDS[0])] if bound else name
    run, sep, metric = base.rpartition(_SEPARATOR)
    if not sep or not run.strip() or not metric.strip():
        return None
    run = run.removeprefix(_GROUP)
    return run.strip(), metric.strip(), bound


def runs_in_header(names: Sequence[str]) -> dict[str, list[tuple[int, str]]] | None:
    """For the header of a W&B panel export: per run, in the file's order, (column
    index, metric name) of its value columns (the bounds say nothing the value does
    not: W&B fills them with the value unless it downsampled). None when the header is
    not such an export: the first column is the x-axis, every other one must be named
    `<run> - <metric>`, and the bounds must be there (a `-` in ordinary column names
    is not enough)."""
    if len(names) < 3:
        return None
    runs: dict[str, list[tuple[int, str]]] = {}
    bounds = 0
    for i, name in enumerate(names[1:], start=1):
        parts = _parts(name)
        if parts is None:
            return None
        run, metric, bound = parts
        if bound:
            bounds += 1
        else:
            runs.setdefault(run, []).append((i, metric))
    return runs if runs and bounds else None


def _joinable(run: Run) -> str | None:
    """The W&B run a panel export's run belongs to, when it can be joined with others:
    read with W&B's step as its x-axis, steps never restarted (`tabular` names the
    parts of a restarted run `<file>#<run>.2`, ...)."""
    name = run.meta.get("wandb_run")
    if run.format != FORMAT or not isinstance(name, str) or run.meta.get("index") != "step":
        return None
    return name if run.name.endswith(f"#{name}") else None


def join_panels(runs: Sequence[Run], folder: str) -> list[Run | None]:
    """`runs` read from the files in one folder, each W&B run that appears in more than
    one panel export joined into one run named `<folder>/<W&B run>` (`folder` "" for
    the folder the user gave): in its first part's place, None in the others'; the
    other runs as they were. A series in two exports is kept from the one with more
    points, with a warning."""
    groups: dict[str, list[int]] = {}
    for i, run in enumerate(runs):
        if (name := _joinable(run)) is not None:
            groups.setdefault(name, []).append(i)
    joined: dict[int, Run] = {}
    dropped: set[int] = set()
    for name, members in groups.items():
        parts = [runs[i] for i in members]
        if len(parts) < 2 or len({r.source for r in parts}) < len(parts):
            continue
        series: dict[str, Series] = {}
        warnings: list[str] = []
        for part in parts:
            file = Path(part.source).name
            warnings += [f"{file}: {w}" for w in part.warnings]
            for key, values in part.series.items():
                kept = series.get(key)
                if kept is not None:
                    warnings.append(f"{key} is in more than one export; kept the one with "
                                    "more points")
                    if len(kept) >= len(values):
                        continue
                series[key] = values
        joined[members[0]] = Run(
            name=f"{folder}/{name}" if folder else name, source=str(Path(parts[0].source).parent),
            format=FORMAT, series=series,
            meta={"wandb_run": name, "index": "step", "files": [r.source for r in parts]},
            warnings=warnings)
        dropped.update(members[1:])
    return [None if i in dropped else joined.get(i, run) for i, run in enumerate(runs)]


__all__ = ["join_panels", "runs_in_header"]
