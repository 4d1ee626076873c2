"""The HTML report: file size and time to first render in headless Chromium.

    .venv/bin/python benchmarks/bench_report.py [--points 1000000] [--runs 200]

Two cases: one run with 1,000,000 training-loss points, and 200 runs of 5,000 steps
each (varied regimes). For each: time to render the HTML in Python, the file size,
and, in headless Chromium (best of 3 loads in one browser), the page's first
contentful paint and the time from navigation until a frame has been painted after
the load event. Goal: under 2 s and under 10 MB.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "report"))

from chromium import Chromium  # noqa: E402
from synthetic import million_point_run  # noqa: E402

from lossdoctor.diagnosis import Diagnosis, diagnose  # noqa: E402
from lossdoctor.report.html import render_html  # noqa: E402
from lossdoctor.run import LR, TRAIN_ACC, TRAIN_LOSS, VAL_ACC, VAL_LOSS, Run, Series  # noqa: E402

GOAL_S, GOAL_MB = 2.0, 10.0


def many_runs(runs: int, steps: int = 5000, epochs: int = 50) -> list[Run]:
    rng = np.random.default_rng(0)
    s = np.arange(steps)
    ep_steps = np.linspace(steps / epochs - 1, steps - 1, epochs).astype(np.int64)
    ep = np.arange(epochs)
    out = []
    for i in range(runs):
        tau = rng.uniform(0.05, 0.3) * steps
        train = 2.3 * np.exp(-s / tau) + 0.05 + 0.05 * rng.standard_normal(steps)
        val = 2.3 * np.exp(-ep_steps / tau) + 0.1
        kind = i % 4
        if kind == 1:  # overfitting
            val = val + 0.5 * np.clip(ep_steps / steps - 0.3, 0, None)
        elif kind == 2:  # NaN late
            train[int(steps * rng.uniform(0.4, 0.9)):] = np.nan
        elif kind == 3:  # diverging
            train = train + np.clip(s / steps - 0.6, 0, None) * 8
            val = val + np.clip(ep_steps / steps - 0.6, 0, None) * 8
        epochs_of_step = np.minimum(s // (steps // epochs), epochs - 1)
        series = {
            TRAIN_LOSS: Series(s, train, epochs_of_step),
            VAL_LOSS: Series(ep_steps, val, ep),
            TRAIN_ACC: Series(ep_steps, np.clip(1 - train[ep_steps] / 2.5, 0, 1), ep),
            VAL_ACC: Series(ep_steps, np.clip(1 - val / 2.5, 0, 1), ep),
            LR: Series(ep_steps, 1e-3 * 0.9 ** ep, ep),
        }
        out.append(Run(f"sweep/run{i:03d}", f"runs/run{i:03d}", "tensorboard", series))
    return out


def measure(name: str, diagnoses: list[Diagnosis], browser: Chromium, folder: Path) -> bool:
    started = time.perf_counter()
    text = render_html(diagnoses)
    render_s = time.perf_counter() - started
    path = folder / f"{name}.html"
    path.write_text(text, encoding="utf-8")
    size_mb = path.stat().st_size / 1e6
    best_paint, best_fcp = float("inf"), float("inf")
    for _ in range(3):
        browser.call("Page.navigate", {"url": "about:blank"})  # a cold start for each try
        browser.wait_event("Page.loadEventFired")
        browser.load(path)
        painted_ms = browser.after_paint()
        fcp = browser.evaluate(
            "(performance.getEntriesByName('first-contentful-paint')[0]||{}).startTime||null")
        best_paint = min(best_paint, painted_ms / 1000)
        if fcp is not None:
            best_fcp = min(best_fcp, float(fcp) / 1000)
    browser.drain()
    ok = best_paint < GOAL_S and size_mb < GOAL_MB and not browser.errors
    fcp_text = f"{best_fcp:.2f} s" if best_fcp != float("inf") else "n/a"
    print(f"{name:>14}: {len(diagnoses)} run(s); render in Python {render_s:.2f} s; "
          f"file {size_mb:.2f} MB; first contentful paint {fcp_text}; "
          f"painted after load {best_paint:.2f} s; console errors {len(browser.errors)}"
          f"  [{'ok' if ok else 'OVER GOAL'}]")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--keep", type=Path, help="write the HTML files here")
    args = parser.parse_args()

    big = million_point_run(args.points)
    started = time.perf_counter()
    big_diag = diagnose(big)
    print(f"diagnose {args.points:,} points: {time.perf_counter() - started:.2f} s "
          "(every point; downsampling is for display only)")
    started = time.perf_counter()
    many = [diagnose(r) for r in many_runs(args.runs)]
    print(f"diagnose {args.runs} runs: {time.perf_counter() - started:.2f} s")

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        with Chromium(width=1280, height=2000, timeout=60) as browser:
            ok = measure(f"{args.points // 1000}k-points", [big_diag], browser, folder)
            ok &= measure(f"{args.runs}-runs", many, browser, folder)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
