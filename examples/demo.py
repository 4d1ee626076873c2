"""lossdoctor demo: train three small runs in Keras and in PyTorch, then diagnose them.

    python examples/demo.py [--out DIR]

Trains a healthy, an overfitting and a diverging model on scikit-learn's digits with
each framework (a few seconds each), writing ordinary TensorBoard and CSV logs into
DIR (default ./demo-output), then runs ``lossdoctor diagnose DIR`` on them and writes
the HTML report DIR/report.html.

Exit status: 0 once training worked, whatever lossdoctor found (critical findings are
the point of the demo); non-zero only if training itself failed.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

# Run as a script (`python examples/demo.py`) or imported as `examples.demo`.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from digits_scenarios import run_keras_scenario, run_torch_scenario

DEMO_SCENARIOS = ("healthy", "overfitting", "diverging")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train small runs and diagnose them.")
    parser.add_argument(
        "--out", type=Path, default=Path("demo-output"), help="where runs are written"
    )
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    import live_digits

    # (folder name, label, train(name, run_dir)): the log-writing scenarios, then the
    # same kind of training under the live doctor, with a fault only layers show.
    jobs: list[tuple[str, str, Callable[[Path], Path]]] = [
        (f"{fw}-{name}", f"{fw:5s} {name:11s}", partial(train, name))
        for fw, train in (("keras", run_keras_scenario), ("torch", run_torch_scenario))
        for name in DEMO_SCENARIOS
    ] + [
        (f"live-{fw}-{fault}", f"{fw:5s} {fault:11s} (live doctor)",
         lambda run_dir, train=train, fault=fault: train(run_dir, fault))
        for fw, train in (("torch", live_digits.train_torch),
                          ("keras", live_digits.train_keras))
        for fault in live_digits.FAULTS
    ]
    started = time.perf_counter()
    for folder, label, train_one in jobs:
        run_dir = out / folder
        # A second demo run starts clean: old event files in the same folder would
        # read as one run restarted (the folder is the demo's own output).
        if run_dir.exists():
            shutil.rmtree(run_dir)
        print(f"training {label} -> {run_dir} ...", end=" ", flush=True)
        t0 = time.perf_counter()
        try:
            train_one(run_dir)
        except Exception:
            print("failed")
            traceback.print_exc()
            return 3
        print(f"{time.perf_counter() - t0:.1f}s", flush=True)
    print(f"trained {len(jobs)} runs in {time.perf_counter() - started:.0f}s\n")

    # The whole folder as a table, then the full story of two of its runs.
    for target, extra in (
        (out, []),
        (out / "torch-overfitting" / "metrics.csv", ["--details"]),
        (out / "keras-diverging" / "training.csv", ["--details"]),
    ):
        print("$ lossdoctor diagnose", target, *extra, flush=True)
        cmd = [sys.executable, "-m", "lossdoctor", "diagnose", str(target), *extra]
        result = subprocess.run(cmd, check=False)
        if result.returncode not in (0, 1):
            print(f"(lossdoctor exited with status {result.returncode})", file=sys.stderr)
            return result.returncode
        print(flush=True)
    # The same runs as one self-contained HTML page (the demo's own file: replaced).
    report = out / "report.html"
    print("$ lossdoctor report", out, "-o", report, "--force", flush=True)
    cmd = [sys.executable, "-m", "lossdoctor", "report", str(out), "-o", str(report), "--force"]
    result = subprocess.run(cmd, check=False)
    if result.returncode not in (0, 1):
        return result.returncode
    print(f"open {report.resolve()} in a browser to see the curves and findings")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
