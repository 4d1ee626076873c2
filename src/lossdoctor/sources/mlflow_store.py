"""MLflow's local tracking store (`mlruns/`, what `mlflow.log_metric` and the autologgers
write without a tracking server): `mlruns/<experiment id>/<run id>/` holds `meta.yaml`,
`params/`, `tags/` and `metrics/<key>`, one file per metric key (a key with `/` nests
folders: `metrics/train/loss`) with a line per logged value, `<timestamp ms> <value>
<step>` (older files: no step, which MLflow reads as 0). Read without MLflow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lossdoctor.errors import InputError
from lossdoctor.run import Run, Series
from lossdoctor.sources.epochs import attach_epochs
from lossdoctor.sources.names import canonicalize

FORMAT = "mlflow"
MAX_METRIC_BYTES = 256 * 1024 * 1024


def is_mlflow_run_dir(path: Path) -> bool:
    """Whether `path` is a run folder of MLflow's file store."""
    return (path / "meta.yaml").is_file() and (path / "metrics").is_dir()


def _yaml_field(path: Path, key: str) -> str | None:
    """A top-level `key: value` of MLflow's flat meta.yaml (no YAML parser needed)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and name == key:
            return value.strip().strip("'\"") or None
    return None


def run_name(path: Path) -> str:
    """The run's name in MLflow (`wistful-ant-659`), else its id (the folder's name)."""
    try:
        tagged = (path / "tags" / "mlflow.runName").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeError):
        tagged = ""
    return tagged or _yaml_field(path / "meta.yaml", "run_name") or path.name


def display_name(path: Path) -> str:
    """`<experiment name>/<run name>` (`Default/wistful-ant-659`)."""
    experiment = _yaml_field(path.parent / "meta.yaml", "name") or path.parent.name
    return f"{experiment}/{run_name(path)}"


def _read_metric(path: Path, key: str, warnings: list[str]) -> Series | None:
    """One metric's history in MLflow's order (by step, then time); the log order when
    no step was given (all 0)."""
    if path.stat().st_size > MAX_METRIC_BYTES:
        raise InputError(str(path), "MLflow metric file larger than 256 MiB")
    rows: list[tuple[int, int, float]] = []
    bad = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split()
        if not parts:
            continue
        try:
            if len(parts) not in (2, 3):
                raise ValueError(line)
            value = float(parts[1])
            rows.append((int(parts[2]) if len(parts) == 3 else 0, int(parts[0]), value))
        except ValueError:
            bad += 1
    if bad:
        warnings.append(f"metric {key!r}: {bad} malformed line(s) skipped")
    if not rows:
        return None
    steps = np.array([r[0] for r in rows], dtype=np.int64)
    if len(rows) > 1 and np.all(steps == steps[0]):
        rows.sort(key=lambda r: r[1])  # no steps logged: time order
        steps = np.arange(len(rows), dtype=np.int64)
    else:
        rows.sort(key=lambda r: (r[0], r[1]))
        steps = np.array([r[0] for r in rows], dtype=np.int64)
    values = np.array([r[2] for r in rows], dtype=np.float64)
    return Series(steps, values)


def read_mlflow_run(path: Path, *, train_loss: str | None = None,
                    val_loss: str | None = None) -> Run:
    metrics = path / "metrics"
    warnings: list[str] = []
    raw: dict[str, Series] = {}
    for file in sorted(p for p in metrics.rglob("*") if p.is_file()):
        key = file.relative_to(metrics).as_posix()
        series = _read_metric(file, key, warnings)
        if series is not None:
            raw[key] = series
    if not raw:
        raise InputError(str(path), "an MLflow run with no logged metric values")
    try:
        series_by_role = canonicalize(attach_epochs(raw), train_loss=train_loss,
                                      val_loss=val_loss)
    except KeyError as exc:
        raise InputError(str(path), str(exc.args[0])) from exc
    meta: dict[str, object] = {"run_id": path.name, "metrics": sorted(raw)}
    experiment = _yaml_field(path.parent / "meta.yaml", "name")
    if experiment:
        meta["experiment"] = experiment
    status = _yaml_field(path / "meta.yaml", "status")
    if status is not None and status.isdigit():
        # MLflow's RunStatus: 1 running, 2 scheduled, 3 finished, 4 failed, 5 killed.
        meta["status"] = {"1": "running", "2": "scheduled", "3": "finished", "4": "failed",
                          "5": "killed"}.get(status, status)
        if meta["status"] in ("failed", "killed"):
            warnings.append(f"MLflow marks this run {meta['status']}: it ended early")
    return Run(name=run_name(path), source=str(path), format=FORMAT, series=series_by_role,
               meta=meta, warnings=warnings)


__all__ = ["display_name", "is_mlflow_run_dir", "read_mlflow_run", "run_name"]
