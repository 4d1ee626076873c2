"""One fixed search, four pruners: epochs trained and best validation accuracy.

40 trials x 20 epochs of the MLP on digits (examples/search_digits.py), the same
seeds and hence the same 40 settings in every configuration (the random sampler is
seeded per trial). Run: .venv/bin/python benchmarks/bench_search.py [--trials N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

import search_digits

from lossdoctor.search._search import search

CONFIGS = ("none", "median", "diagnosis", "diagnosis+median")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for config in CONFIGS:
            t0 = time.perf_counter()
            r = search(search_digits.train, search_digits.SPACE, args.trials,
                       run_root=Path(tmp) / config.replace("+", "-"), pruner=config,
                       seed=args.seed, objective="val_loss", progress=False)
            # Best validation accuracy: the highest last-epoch accuracy of a trial that
            # ran to the end (a pruned trial's model is not a candidate).
            accs = [float(t.metrics["val_accuracy"]) for t in r.trials
                    if t.state == "complete" and "val_accuracy" in t.metrics]
            rows.append((config, r.epochs_trained, max(accs) if accs else float("nan"),
                         r.counts().get("pruned", 0), time.perf_counter() - t0))
    base = rows[0][1]
    print(f"{'pruner':<18} {'epochs':>6} {'vs none':>8} {'best val acc':>12} "
          f"{'pruned':>6} {'time s':>7}")
    for config, epochs, acc, pruned, secs in rows:
        print(f"{config:<18} {epochs:>6} {100 * (epochs - base) / base:>+7.1f}% "
              f"{100 * acc:>11.2f}% {pruned:>6} {secs:>7.1f}")


if __name__ == "__main__":
    main()
