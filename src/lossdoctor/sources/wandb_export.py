"""The CSV a Weights & Biases line plot exports ("Export panel data"): the x-axis column
first (`Step`), then for every run in the plot `<run> - <metric>` and its sampling
bounds `<run> - <metric>__MIN` / `__MAX` (`Group: <name> - <metric>` for grouped
runs), empty where a run has no point at that x.

This module only reads the header: which columns are whose. `tabular` cuts the table
into one run per W&B run from that.
"""

from __future__ import annotations

from collections.abc import Sequence

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


__all__ = ["runs_in_header"]
