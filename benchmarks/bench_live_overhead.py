"""Wall-time overhead of the live doctor on a small CNN on scikit-learn's digits, with
the default `lossdoctor.torch.Doctor` (or `lossdoctor.keras.Doctor` with a 64-sample
probe) against none (goal <= 1.03).

    .venv/bin/python benchmarks/bench_live_overhead.py [--framework torch|keras|both]
        [--repeats 8] [--epochs 20] [--control] [--same-model [--never-read]]
        [--every-step]   (either framework: every signal on every step)
        [--keras-epochs 20] [--keras-batch 32] [--keras-width 1]
        [--keras-arm doctor|none|batch-callback] [--keras-backend tensorflow|jax|torch]
        [--keras-probe 64]   (probe samples; 0: the Doctor as constructed by default,
                              with no probe: weights, updates and the loss only)

PyTorch: two instances of the model, one watched, trained epoch by epoch in turns
(A B, B A, ...) in one process, so both see the same machine; which instance is
watched alternates between runs (two instances of one model can differ by a few
percent). `--same-model`: one model instead, the Doctor attached on half the epochs
and detached on the others (through its internals). `--control` runs either without
a doctor, to show the machine's noise.
Keras: whole fits in turns (A B, B A, ...), timed whole (tracing, the Doctor's probe
tracing and closing diagnosis included) and in steady state (from the first epoch
after the Doctor's dense start to the end of `fit`, so one-off costs are left out).
`--keras-arm none` fits without a doctor in both arms (the noise floor); `--keras-arm
batch-callback` puts an empty `on_train_batch_end` callback in the second arm instead of
the Doctor: with any such callback (the progress bar is one) Keras calls batch ends
synchronously instead of on a thread, a cost the Doctor pays too when `verbose=0`.
Both print the Doctor's own estimate of its share of the time (run.json has it too).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

DENSE_STEPS = 100  # the doctors' default dense start


def _digits_cnn() -> tuple[Any, Any]:
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(32 * 16, 64), torch.nn.ReLU(),
        torch.nn.Linear(64, 10),
    )
    return model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)


def digits_epoch(model: Any, opt: Any, xt: Any, yt: Any, perm: Any, doc: Any) -> None:
    """One epoch of batches of 32 in `perm`'s order; `doc` (or None) logs each step and
    the epoch."""
    import torch

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


def torch_trial(epochs: int, run_dir: Path, every_step: bool = False, control: bool = False,
                swap: bool = False
                ) -> tuple[list[float], list[float], list[float], list[float], float | None]:
    """Two identical CNNs, one under the Doctor, trained epoch by epoch in turns
    (A B, B A, A B, ...), so both see the same machine: per epoch, the seconds of
    wall time and of this thread's CPU time each took (the Doctor's `log_epoch`
    included; its `close` is added to its last epoch), and the Doctor's own measure
    of its share of the time. `control`: no Doctor on either (the noise floor)."""
    import torch
    from sklearn.datasets import load_digits

    from lossdoctor.torch import Doctor

    x, y = load_digits(return_X_y=True)
    x = (x - x.mean()) / x.std()
    xt = torch.tensor(x, dtype=torch.float32).reshape(-1, 1, 8, 8)
    yt = torch.tensor(y)
    plain, watched = _digits_cnn(), _digits_cnn()
    if swap:  # two instances of one model can differ by a few percent (memory layout):
        plain, watched = watched, plain  # which one is watched alternates between runs
    # every_step: every signal on every step, the configuration tools like Cockpit
    # are measured in; the default samples.
    options: dict[str, Any] = (
        {"every": 1, "dense_every": 1, "activation_every": 1, "histogram_every": 1,
         "max_overhead": None} if every_step else {})
    doc = None if control else Doctor(*watched, run_dir, verbose=False, **options)
    gen = torch.Generator().manual_seed(0)

    def epoch(model: Any, opt: Any, perm: Any, with_doctor: bool) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.thread_time()
        digits_epoch(model, opt, xt, yt, perm, doc if with_doctor else None)
        return time.perf_counter() - wall, time.thread_time() - cpu

    base_wall, base_cpu, live_wall, live_cpu = [], [], [], []
    for e in range(epochs):
        perm = torch.randperm(len(xt), generator=gen)
        for with_doctor in ((False, True) if e % 2 == 0 else (True, False)):
            wall, cpu = epoch(*(watched if with_doctor else plain), perm, with_doctor)
            (live_wall if with_doctor else base_wall).append(wall)
            (live_cpu if with_doctor else base_cpu).append(cpu)
    if doc is None:
        return base_wall, live_wall, base_cpu, live_cpu, None
    wall, cpu = time.perf_counter(), time.thread_time()
    doc.close()
    live_wall[-1] += time.perf_counter() - wall
    live_cpu[-1] += time.thread_time() - cpu
    return base_wall, live_wall, base_cpu, live_cpu, doc._budget.share()


KERAS_HOOKS = ("on_train_begin", "on_epoch_begin", "on_train_batch_begin",
               "on_train_batch_end", "on_epoch_end", "on_train_end")


def time_inside(callback: Any) -> list[float]:
    """Wrap the callback's Keras hooks (on the instance) to add up the seconds spent
    inside them into the returned one-element list: the Doctor's direct cost, which
    the wall-clock ratio mixes with the machine's noise."""
    inside = [0.0]

    def timed(hook: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return hook(*args, **kwargs)
            finally:
                inside[0] += time.perf_counter() - start
        return call

    for name in KERAS_HOOKS:
        setattr(callback, name, timed(getattr(callback, name)))
    return inside


def keras_trial(with_doctor: bool, epochs: int, run_dir: Path, batch: int = 32,
                width: int = 1, arm: str = "doctor", every_step: bool = False,
                probe: int = 64
                ) -> tuple[float, float, float, float, float | None, float | None]:
    """(whole fit, steady state after the dense start) in seconds of wall time, then the same
    in the process's CPU time (less sensitive to other jobs on a shared machine), the
    Doctor's own estimate of its share of the time and the seconds spent inside its
    hooks; `width` multiplies the CNN's channels and units (a slower step); `arm`: what
    `with_doctor` adds (see the module doc); `every_step`: a probe pass, a weight
    reading and histograms on every step instead of the default sampling."""
    import keras
    import numpy as np
    from sklearn.datasets import load_digits

    from lossdoctor.keras import Doctor

    x, y = load_digits(return_X_y=True)
    x = ((x - x.mean()) / x.std()).astype(np.float32).reshape(-1, 8, 8, 1)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(16 * width, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(32 * width, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2), keras.layers.Flatten(),
        keras.layers.Dense(64 * width, activation="relu"), keras.layers.Dense(10),
    ])
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    # Steady state: from the first epoch that starts after the Doctor's dense start.
    steady_epoch = -(-DENSE_STEPS // -(-len(x) // batch))

    class Clock(keras.callbacks.Callback):  # last in the list: after the Doctor's close
        def on_epoch_begin(self, epoch: int, logs: object = None) -> None:
            if epoch == steady_epoch:
                self.steady = time.perf_counter()
                self.steady_cpu = time.process_time()

        def on_train_end(self, logs: object = None) -> None:
            self.end = time.perf_counter()
            self.end_cpu = time.process_time()

    class BatchCallback(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: object = None) -> None:
            pass

    clock = Clock()
    callbacks: list[Any] = []
    inside: list[float] | None = None
    if with_doctor and arm == "doctor":
        options: dict[str, Any] = (
            {"every": 1, "dense_every": 1, "probe_every": 1, "histogram_every": 1,
             "max_overhead": None} if every_step else {})
        samples = (x[:probe], y[:probe]) if probe else None
        callbacks = [Doctor(run_dir, probe=samples, verbose=False, **options)]
        inside = time_inside(callbacks[0])
    elif with_doctor and arm == "batch-callback":
        callbacks = [BatchCallback()]
    start, start_cpu = time.perf_counter(), time.process_time()
    model.fit(x, y, batch_size=batch, epochs=epochs, shuffle=True, verbose=0,
              callbacks=[*callbacks, clock])
    doctors = [c for c in callbacks if isinstance(c, Doctor)]
    share = doctors[0]._budget.share() if doctors else None
    return (clock.end - start, clock.end - clock.steady, clock.end_cpu - start_cpu,
            clock.end_cpu - clock.steady_cpu, share, None if inside is None else inside[0])


def report(label: str, steps: int, base: list[float], live: list[float]) -> None:
    mb, ml = statistics.median(base), statistics.median(live)
    print(f"  {label}without doctor: median {mb:.3f} s  ({1e3 * mb / steps:.2f} ms/step)  "
          f"all {[round(b, 3) for b in base]}")
    print(f"  {label}with doctor:    median {ml:.3f} s  ({1e3 * ml / steps:.2f} ms/step)  "
          f"all {[round(v, 3) for v in live]}")
    print(f"  {label}ratio (medians): {ml / mb:.3f}   ratio (min of repeats): "
          f"{min(live) / min(base):.3f}")


def bench_keras(repeats: int, epochs: int, batch: int = 32, width: int = 1,
                arm: str = "doctor", every_step: bool = False, probe: int = 64) -> None:
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)  # steadier timings
        tf.config.threading.set_inter_op_parallelism_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        keras_trial(False, 3, Path(tmp) / "warm0", batch, width)  # imports, first traces
        keras_trial(True, 3, Path(tmp) / "warm1", batch, width, probe=probe)
        base, live = [], []
        for r in range(repeats):  # A B, B A, ...: neither arm always goes first
            for with_doctor in ((False, True) if r % 2 == 0 else (True, False)):
                (live if with_doctor else base).append(keras_trial(
                    with_doctor, epochs, Path(tmp) / f"{with_doctor}{r}", batch, width,
                    arm, every_step, probe))
    per_epoch = -(-1797 // batch)
    print(f"keras ({backend}) CNN (width x{width}, batch {batch}), digits, {epochs} epochs x "
          f"{per_epoch} steps, {repeats} repeats (AB BA ...), second arm: {arm}"
          f"{', every signal every step' if every_step else ''}, "
          f"{f'a {probe}-sample probe' if probe else 'no probe (the default Doctor)'}")
    report("whole fit: ", epochs * per_epoch, [b[0] for b in base], [v[0] for v in live])
    steady = epochs - -(-DENSE_STEPS // per_epoch)
    report(f"steady (last {steady} epochs): ", steady * per_epoch, [b[1] for b in base],
           [v[1] for v in live])
    report("CPU time, whole fit: ", epochs * per_epoch, [b[2] for b in base],
           [v[2] for v in live])
    report("CPU time, steady: ", steady * per_epoch, [b[3] for b in base],
           [v[3] for v in live])
    for label, k in (("whole fit", 0), ("steady", 1)):
        pairs = [v[k] / b[k] for b, v in zip(base, live, strict=True)]
        spread = statistics.stdev(pairs) / len(pairs) ** 0.5 if len(pairs) > 1 else 0.0
        print(f"  {label}: mean of paired ratios {statistics.mean(pairs):.4f} +- "
              f"{spread:.4f} (s.e.)")
    inside = [(v[5], v[0]) for v in live if v[5] is not None]
    if inside:
        ms = [1e3 * t for t, _ in inside]
        print(f"  time inside the Doctor's hooks: median {statistics.median(ms):.0f} ms per fit, "
              f"{100 * statistics.median([t / w for t, w in inside]):.2f}% of its fit "
              f"(per run {[round(m) for m in ms]} ms)")
    shares = [v[4] for v in live if v[4] is not None]
    if shares:
        print(f"  the Doctor's own estimate of its share: {100 * statistics.mean(shares):.2f}% "
              f"(per run {[round(100 * v, 2) for v in shares]})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--keras-epochs", type=int, default=20)
    parser.add_argument("--keras-batch", type=int, default=32)
    parser.add_argument("--keras-width", type=int, default=1,
                        help="multiplies the Keras CNN's channels and units")
    parser.add_argument("--framework", choices=("torch", "keras", "both"), default="both")
    parser.add_argument("--keras-arm", choices=("doctor", "none", "batch-callback"),
                        default="doctor", help="Keras: what the second arm adds")
    parser.add_argument("--control", action="store_true",
                        help="PyTorch: the same alternation without a doctor on either "
                        "model, to see the machine's noise")
    parser.add_argument("--same-model", action="store_true",
                        help="PyTorch: one model, the Doctor attached on half the epochs")
    parser.add_argument("--never-read", action="store_true",
                        help="with --same-model: the Doctor attached but never reading")
    parser.add_argument("--every-step", action="store_true",
                        help="every signal on every step instead of the default sampling")
    parser.add_argument("--keras-backend", choices=("tensorflow", "jax", "torch"),
                        default="tensorflow", help="Keras' backend for --framework keras")
    parser.add_argument("--keras-probe", type=int, default=64,
                        help="Keras: probe samples; 0: no probe, as `Doctor(run_dir)`")
    args = parser.parse_args()
    os.environ["KERAS_BACKEND"] = args.keras_backend  # read by Keras at its import
    if args.framework in ("keras", "both"):
        bench_keras(args.repeats, args.keras_epochs, args.keras_batch, args.keras_width,
                    args.keras_arm, args.every_step, args.keras_probe)
    if args.framework in ("torch", "both"):
        if args.same_model:
            bench_same_model(args.repeats, 2 * args.epochs, args.control, args.never_read)
        else:
            bench_torch(args.repeats, args.epochs, args.every_step, args.control)


# --never-read: the Doctor attached (hooks, `log()`, read-backs of the loss, writes)
# but never reading a layer, to see the cost of being there.
NEVER_READ = {"every": 10**6, "dense_every": 10**6, "dense_steps": 0, "histogram_every": 0,
              "max_overhead": None}


def watched_in_turn(epoch: int) -> bool:
    """W N, N W, W N, ...: neither arm always goes first."""
    pair, second = divmod(epoch, 2)
    return (second == 0) if pair % 2 == 0 else (second == 1)


def set_attached(doc: Any, opt: Any, on: bool) -> None:
    """Attach or detach a PyTorch Doctor's hooks (through its internals), so one model
    can be trained with and without it in turns."""
    doc._hook_optimizer(on)


def same_model_trial(epochs: int, run_dir: Path, control: bool, seed: int,
                     options: dict[str, Any] | None = None) -> float:
    """One model and one Doctor; the Doctor's hooks are attached on half the epochs
    (W N, N W, W N, ...) and detached on the others, so both arms are the very same
    tensors (no instance effect). The Doctor's `close` counts for the watched arm.
    Returns watched / unwatched seconds. Uses the Doctor's internals to detach it."""
    import torch
    from sklearn.datasets import load_digits

    from lossdoctor.torch import Doctor

    x, y = load_digits(return_X_y=True)
    x = (x - x.mean()) / x.std()
    xt = torch.tensor(x, dtype=torch.float32).reshape(-1, 1, 8, 8)
    yt = torch.tensor(y)
    model, opt = _digits_cnn()
    doc = Doctor(model, opt, run_dir, verbose=False, **(options or {}))

    gen = torch.Generator().manual_seed(seed)
    watched = plain = 0.0
    attached = True
    for e in range(epochs):
        perm = torch.randperm(len(xt), generator=gen)
        w = watched_in_turn(e)
        active = w and not control
        if active != attached:
            set_attached(doc, opt, active)
            attached = active
        start = time.perf_counter()
        digits_epoch(model, opt, xt, yt, perm, doc if active else None)
        took = time.perf_counter() - start
        if w:
            watched += took
        else:
            plain += took
    if not attached:
        set_attached(doc, opt, True)
    start = time.perf_counter()
    doc.close()
    if not control:
        watched += time.perf_counter() - start
    return watched / plain


def bench_same_model(repeats: int, epochs: int, control: bool, never_read: bool) -> None:
    import torch

    torch.set_num_threads(1)
    options = NEVER_READ if never_read else None
    with tempfile.TemporaryDirectory() as tmp:
        same_model_trial(2, Path(tmp) / "warm", control, 0, options)
        ratios = [same_model_trial(epochs, Path(tmp) / f"r{r}", control, r, options)
                  for r in range(repeats)]
    spread = statistics.stdev(ratios) / len(ratios) ** 0.5
    what = (", CONTROL: never attached" if control
            else ", the Doctor never reading a layer" if never_read else "")
    print(f"torch CNN, digits, one model, Doctor attached on half of {epochs} epochs, "
          f"{repeats} runs{what}")
    print(f"  wall: watched / unwatched epochs, mean of runs "
          f"{statistics.mean(ratios):.4f} +- {spread:.4f} (s.e.)  per run "
          f"{[round(r, 4) for r in ratios]}")


def bench_torch(repeats: int, epochs: int, every_step: bool = False,
                control: bool = False) -> None:
    import torch

    torch.set_num_threads(1)  # steadier timings on a shared machine
    with tempfile.TemporaryDirectory() as tmp:
        torch_trial(1, Path(tmp) / "warm", every_step, control)  # imports, allocator
        trials = [torch_trial(epochs, Path(tmp) / f"r{r}", every_step, control, r % 2 == 1)
                  for r in range(repeats)]
    steps = 1797 // 32
    what = (", CONTROL: no doctor on either model" if control
            else ", every signal every step" if every_step else "")
    print(f"torch CNN, digits, {repeats} runs x {epochs} epochs x {steps} steps, epochs "
          f"alternated{what}")
    for label, (bi, li) in (("wall", (0, 1)), ("thread CPU", (2, 3))):
        ratios = [sum(t[li]) / sum(t[bi]) for t in trials]
        base = sum(sum(t[bi]) for t in trials)
        live = sum(sum(t[li]) for t in trials)
        per_step = 1e3 * base / (repeats * epochs * steps)
        spread = statistics.stdev(ratios) / len(ratios) ** 0.5 if len(ratios) > 1 else 0.0
        print(f"  {label:10s} without {base:7.3f} s ({per_step:.2f} ms/step)  with "
              f"{live:7.3f} s  ratio {live / base:.4f}; mean of runs "
              f"{statistics.mean(ratios):.4f} +- {spread:.4f} (s.e.)  per run "
              f"{[round(r, 4) for r in ratios]}")
    shares = [t[4] for t in trials if t[4] is not None]
    if shares:
        print(f"  the Doctor's own timing of its work: {100 * statistics.mean(shares):.2f}% "
              f"of the wall time (per run {[round(100 * v, 2) for v in shares]})")


if __name__ == "__main__":
    main()
