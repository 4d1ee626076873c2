"""Wall-time overhead of the live doctor: a small CNN on scikit-learn's digits,
trained with the default `lossdoctor.torch.Doctor` and without, alternately
(A B A B ...), several repeats; the ratio of the medians is reported (goal <= 1.03).

    .venv/bin/python benchmarks/bench_live_overhead.py [--repeats 7] [--epochs 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def torch_trial(with_doctor: bool, epochs: int, run_dir: Path) -> float:
    import torch
    from sklearn.datasets import load_digits

    from lossdoctor.torch import Doctor

    x, y = load_digits(return_X_y=True)
    x = (x - x.mean()) / x.std()
    xt = torch.tensor(x, dtype=torch.float32).reshape(-1, 1, 8, 8)
    yt = torch.tensor(y)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(32 * 16, 64), torch.nn.ReLU(),
        torch.nn.Linear(64, 10),
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    doc = Doctor(model, opt, run_dir, verbose=False) if with_doctor else None
    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt) - 31, 32):
            idx = perm[i:i + 32]
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if doc is not None:
                doc.log(loss=loss)
        if doc is not None:
            doc.log_epoch()
    if doc is not None:
        doc.close()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # steadier timings on a shared machine
    with tempfile.TemporaryDirectory() as tmp:
        torch_trial(False, 1, Path(tmp) / "warm0")  # warm-up: imports, allocator
        torch_trial(True, 1, Path(tmp) / "warm1")
        base, live = [], []
        for r in range(args.repeats):
            base.append(torch_trial(False, args.epochs, Path(tmp) / f"b{r}"))
            live.append(torch_trial(True, args.epochs, Path(tmp) / f"l{r}"))
    mb, ml = statistics.median(base), statistics.median(live)
    steps = args.epochs * (1797 // 32)
    print(f"torch CNN, digits, {args.epochs} epochs x {1797 // 32} steps, "
          f"{args.repeats} repeats (ABAB)")
    print(f"  without doctor: median {mb:.3f} s  ({1e3 * mb / steps:.2f} ms/step)  "
          f"all {[round(b, 3) for b in base]}")
    print(f"  with doctor:    median {ml:.3f} s  ({1e3 * ml / steps:.2f} ms/step)  "
          f"all {[round(v, 3) for v in live]}")
    print(f"  ratio (medians): {ml / mb:.3f}")


if __name__ == "__main__":
    main()
