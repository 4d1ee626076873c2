"""Reading a big TensorBoard event file: lossdoctor vs tbparse vs EventAccumulator.

    .venv/bin/python benchmarks/bench_tensorboard_read.py [--events 1000000] [--repeat 3]

The file (1,000,000 scalar events over 5 tags by default, about 51 MB) is written
once with lossdoctor's writer (`--writer torch` uses PyTorch's SummaryWriter; the
record layout is the same) and cached in the temp folder. Each reader runs in its
own process so that imports and memory do not mix; peak memory is the process's
peak resident set (VmHWM, imports included) and its growth during the read.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TAGS = ["train/loss", "train/accuracy", "val/loss", "lr", "grad_norm/layer1.weight"]


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _maxrss_mb() -> float:
    # VmHWM starts afresh at exec; ru_maxrss would inherit the parent's peak.
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def make_file(events: int, writer: str) -> Path:
    directory = Path(tempfile.gettempdir()) / f"lossdoctor-bench-tb-{events}-{writer}"
    done = directory / "done"
    if done.exists():
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*tfevents*"):
        old.unlink()
    steps = events // len(TAGS)
    t0 = time.perf_counter()
    if writer == "torch":
        from torch.utils.tensorboard import SummaryWriter

        w = SummaryWriter(str(directory), max_queue=10_000)
        for i in range(steps):
            for k, tag in enumerate(TAGS):
                w.add_scalar(tag, math.sin(i * 0.001 + k) + 1e-6 * i, i)
        w.close()
    else:
        from lossdoctor.sources.tbwriter import EventFileWriter

        with EventFileWriter(directory, max_queue=100_000) as ew:
            for i in range(steps):
                for k, tag in enumerate(TAGS):
                    ew.add_scalar(tag, math.sin(i * 0.001 + k) + 1e-6 * i, i)
    done.write_text(f"{time.perf_counter() - t0:.1f} s to write\n")
    return directory


def run_one(reader: str, directory: Path) -> dict[str, float]:
    """Runs in a child process: import, then time one read."""
    (path,) = directory.glob("*tfevents*")
    if reader == "lossdoctor":
        from lossdoctor.sources.tensorboard import read_event_file

        def read() -> int:
            r = read_event_file(path)
            return sum(len(s) for s in r.scalars.values())
    elif reader == "lossdoctor-verify":
        from lossdoctor.sources.tensorboard import read_event_file

        def read() -> int:
            r = read_event_file(path, verify=True)
            return sum(len(s) for s in r.scalars.values())
    elif reader == "tbparse":
        from tbparse import SummaryReader

        def read() -> int:
            return len(SummaryReader(str(path), pivot=False).scalars)
    elif reader == "event_accumulator":
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        def read() -> int:
            acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
            acc.Reload()
            return sum(len(acc.Scalars(t)) for t in acc.Tags()["scalars"])
    else:
        raise SystemExit(f"unknown reader {reader!r}")
    before = _rss_mb()
    t0 = time.perf_counter()
    n = read()
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "events": n, "peak_mb": _maxrss_mb(),
            "growth_mb": max(0.0, _maxrss_mb() - before)}


def child(reader: str, directory: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", reader, "--dir", str(directory)],
        check=True, capture_output=True, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--writer", choices=["lossdoctor", "torch"], default="lossdoctor")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each reader (median)")
    ap.add_argument("--readers", default="lossdoctor,lossdoctor-verify,tbparse,event_accumulator")
    ap.add_argument("--child")
    ap.add_argument("--dir")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child, Path(args.dir))))
        return
    directory = make_file(args.events, args.writer)
    (path,) = directory.glob("*tfevents*")
    size_mb = path.stat().st_size / 1e6
    print(f"file: {path} ({size_mb:.1f} MB, {args.events:,} scalar events, {len(TAGS)} tags)")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, median of {args.repeat}\n")
    rows = {}
    for reader in args.readers.split(","):
        runs = [child(reader, directory) for _ in range(args.repeat)]
        if any(r["events"] != args.events // len(TAGS) * len(TAGS) for r in runs):
            raise SystemExit(f"{reader} read {runs[0]['events']} events")
        rows[reader] = {
            "seconds": statistics.median(r["seconds"] for r in runs),
            "best": min(r["seconds"] for r in runs),
            "peak_mb": max(r["peak_mb"] for r in runs),
            "growth_mb": max(r["growth_mb"] for r in runs),
            "events": runs[0]["events"],
        }
    base = rows.get("lossdoctor", {}).get("seconds")
    print("| reader | seconds (median) | best | events/s | peak RSS MB | RSS growth MB "
          "| lossdoctor is faster by |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for reader, r in rows.items():
        ratio = f"{r['seconds'] / base:.1f}x" if base else "-"
        print(f"| {reader} | {r['seconds']:.3f} | {r['best']:.3f} | "
              f"{r['events'] / r['seconds']:,.0f} | {r['peak_mb']:.0f} | {r['growth_mb']:.0f} "
              f"| {ratio} |")


if __name__ == "__main__":
    main()
