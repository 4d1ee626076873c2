"""Diagnosing a folder of 1,000 runs x 1,000 epochs (Keras CSVLogger files).

    .venv/bin/python benchmarks/bench_diagnose_many.py [--runs 1000] [--epochs 1000]

Writes the runs once into a cache folder (varied, noisy curves of every regime), then
times `lossdoctor diagnose FOLDER --format json` end to end as a user runs it (process
start, reading, diagnosis, output), best of 3, plus the in-process split between
reading and diagnosing. Goal: under 5 s for 1,000 x 1,000.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_runs(folder: Path, runs: int, epochs: int) -> None:
    rng = np.random.default_rng(0)
    e = np.arange(epochs)
    for i in range(runs):
        kind = i % 5
        tau = rng.uniform(0.05, 0.3) * epochs
        base = 2.3 * np.exp(-e / tau)
        train = base + 0.05 + rng.uniform(0.005, 0.03) * rng.standard_normal(epochs)
        if kind == 0:  # healthy
            val = base + 0.08
        elif kind == 1:  # overfitting
            val = base + 0.08 + 0.4 * np.clip(e / epochs - 0.3, 0, None)
        elif kind == 2:  # plateau at a high level
            train = 1.2 + 1.1 * np.exp(-e / (0.02 * epochs)) + 0.02 * rng.standard_normal(epochs)
            val = train + 0.05
        elif kind == 3:  # diverging late
            train = base + 0.05 + np.clip(e / epochs - 0.6, 0, None) * 5
            val = train + 0.1
        else:  # NaN at some point
            val = base + 0.1
            train[int(epochs * rng.uniform(0.3, 0.9)) :] = np.nan
        val = val + rng.uniform(0.005, 0.03) * rng.standard_normal(epochs)
        acc = np.clip(1 - train / 2.5, 0, 1)
        vacc = np.clip(1 - val / 2.5, 0, 1)
        block = np.column_stack([e, acc, train, vacc, val])
        np.savetxt(
            folder / f"run{i:04d}.csv",
            block,
            delimiter=",",
            fmt=["%d", "%.8f", "%.8f", "%.8f", "%.8f"],
            header="epoch,accuracy,loss,val_accuracy,val_loss",
            comments="",
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    folder = args.cache / f"lossdoctor-bench-{args.runs}x{args.epochs}"
    if not (folder / f"run{args.runs - 1:04d}.csv").exists():
        folder.mkdir(parents=True, exist_ok=True)
        print(f"writing {args.runs} runs to {folder} ...", file=sys.stderr)
        write_runs(folder, args.runs, args.epochs)

    from lossdoctor.diagnosis import diagnose
    from lossdoctor.sources import load

    # Best of 3 in process too: the first pass also pays for a cold file cache.
    read_s, diag_s = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        loaded = load(folder)
        t1 = time.perf_counter()
        diagnoses = [diagnose(item.run) for item in loaded if item.run is not None]
        read_s.append(t1 - t0)
        diag_s.append(time.perf_counter() - t1)
    regimes: dict[str, int] = {}
    for d in diagnoses:
        regimes[d.regime] = regimes.get(d.regime, 0) + 1

    cli_times = []
    for _ in range(3):
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "lossdoctor", "diagnose", str(folder), "--format", "json"],
            stdout=subprocess.DEVNULL,
            check=False,
        )
        cli_times.append(time.perf_counter() - start)
        assert done.returncode in (0, 1), done.returncode

    print("| runs x epochs | read (s) | diagnose (s) | CLI end to end (s) |")
    print("|---|---|---|---|")
    print(
        f"| {args.runs} x {args.epochs} | {min(read_s):.2f} | {min(diag_s):.2f} "
        f"| {min(cli_times):.2f} |"
    )
    print("(best of 3 each; the CLI time includes process start and JSON output)")
    print(f"regimes: {dict(sorted(regimes.items()))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
