"""Per-layer series of a run folder, as the live tests compare them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lossdoctor.sources.rundir import read_run_dir


def layer_medians(run_dir: Path, signal: str) -> dict[str, float]:
    """Layer name -> the median of its `layer/<name>/<signal>` series."""
    run = read_run_dir(run_dir)
    return {tag.split("/")[1]: float(np.median(s.values)) for tag, s in run.series.items()
            if tag.endswith("/" + signal)}
