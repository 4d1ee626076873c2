"""Wall-time overhead of the PyTorch live doctor on a GPU, with models larger than the
CPU benchmark's digits CNN (goal <= 1.02).

    python benchmarks/bench_live_overhead_gpu.py [--model resnet|transformer|both]
        [--runs 3] [--epochs 16] [--epoch-seconds 0.5] [--control] [--every-step]
        [--device cuda] [--json results.json]

Models: a CIFAR-style ResNet-18 (11M parameters, BatchNorm, batch 256 of 3x32x32,
float32 with TF32 matrix units, SGD with momentum) and a GPT-style transformer
(8 blocks of width 512, sequences of 256 tokens, batch 32, bf16 autocast, AdamW), on
synthetic batches kept on the device.

Method: one model and one Doctor (defaults), the Doctor attached on half the epochs
(W N, N W, W N, ...) and detached on the others, so both arms train the same
tensors; each epoch is timed with the device synchronized at its start and end; the
watched epochs carry the Doctor's `log_epoch`, and the last one its `close`. A run's
ratio is watched over unwatched seconds; the runs give a mean and standard error.
"steady" leaves out the pairs of epochs up to the end of the Doctor's dense start; its
epoch pairs' own ratios are also given as a median and quartiles over all runs (one
slow epoch moves a sum over a few pairs, not the median).
`--control` never attaches the Doctor (the noise floor); `--every-step` reads every
signal, histograms included, on every step; `--item-every-step` reads the loss on the
host after every step in both arms (`loss.item()`, as loops that print it do), so the
host is never ahead of the GPU; `--options` passes other Doctor arguments (JSON).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from bench_live_overhead import set_attached, watched_in_turn

from lossdoctor.torch import Doctor

EVERY_STEP = {"every": 1, "dense_every": 1, "activation_every": 1, "histogram_every": 1,
              "max_overhead": None}


class _Block(torch.nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(cout)
        self.relu1 = torch.nn.ReLU()
        self.conv2 = torch.nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(cout)
        self.relu2 = torch.nn.ReLU()
        self.short = torch.nn.Sequential()
        if stride != 1 or cin != cout:
            self.short = torch.nn.Sequential(torch.nn.Conv2d(cin, cout, 1, stride, bias=False),
                                             torch.nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        return self.relu2(self.bn2(self.conv2(out)) + self.short(x))


def resnet18() -> torch.nn.Module:
    layers: list[torch.nn.Module] = [torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False),
                                     torch.nn.BatchNorm2d(64), torch.nn.ReLU()]
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [_Block(cin, cout, stride), _Block(cout, cout, 1)]
        cin = cout
    layers += [torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(512, 10)]
    return torch.nn.Sequential(*layers)


class _Attention(torch.nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = torch.nn.Linear(width, 3 * width)
        self.proj = torch.nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, c // self.heads).unbind(2)
        y = torch.nn.functional.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


class _GptBlock(torch.nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln1 = torch.nn.LayerNorm(width)
        self.attn = _Attention(width, heads)
        self.ln2 = torch.nn.LayerNorm(width)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(width, 4 * width), torch.nn.GELU(),
                                       torch.nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class Gpt(torch.nn.Module):
    def __init__(self, vocab: int = 8192, width: int = 512, heads: int = 8, depth: int = 8,
                 context: int = 256) -> None:
        super().__init__()
        self.tokens = torch.nn.Embedding(vocab, width)
        self.positions = torch.nn.Embedding(context, width)
        self.blocks = torch.nn.Sequential(*[_GptBlock(width, heads) for _ in range(depth)])
        self.ln = torch.nn.LayerNorm(width)
        self.head = torch.nn.Linear(width, vocab, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        return self.head(self.ln(self.blocks(self.tokens(idx) + self.positions(pos))))


Setup = tuple[torch.nn.Module, torch.optim.Optimizer, Callable[[int], torch.Tensor]]


def make(name: str, device: torch.device, small: bool, item: bool = False) -> Setup:
    """The model, its optimizer and a function training one step on the i-th
    synthetic batch (returns the loss tensor, not synchronized)."""
    torch.manual_seed(0)
    gen = torch.Generator(device=device).manual_seed(0)
    if name == "resnet":
        model = resnet18().to(device)
        opt: torch.optim.Optimizer = torch.optim.SGD(
            model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        n = 16 if small else 256
        xs = torch.randn(8, n, 3, 32, 32, device=device, generator=gen)
        teacher = torch.randn(3 * 32 * 32, 10, device=device, generator=gen)
        ys = (xs.flatten(2) @ teacher).argmax(-1)  # learnable labels

        def step(i: int) -> torch.Tensor:
            loss = torch.nn.functional.cross_entropy(model(xs[i % 8]), ys[i % 8])
            return _update(opt, loss, item)
        return model, opt, step
    vocab, context = 8192, 256
    model = (Gpt(depth=2, width=128, heads=4, vocab=vocab, context=context) if small
             else Gpt(vocab=vocab, context=context)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)
    tokens = torch.randint(0, vocab, (8, 4 if small else 32, context + 1), device=device,
                           generator=gen)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def gpt_step(i: int) -> torch.Tensor:
        batch = tokens[i % 8]
        with amp:
            logits = model(batch[:, :-1])
            loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1),
                                                     batch[:, 1:].flatten())
        return _update(opt, loss, item)
    return model, opt, gpt_step


def _update(opt: torch.optim.Optimizer, loss: torch.Tensor, item: bool) -> torch.Tensor:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if item:  # the host waits for the step, as loops that print the loss do
        loss.item()
    return loss


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_seconds(name: str, device: torch.device, small: bool, item: bool) -> float:
    """One training step's time after warming up (cudnn autotuning, the allocator)."""
    _, _, step = make(name, device, small, item)
    for i in range(15):
        step(i)
    _sync(device)
    start = time.perf_counter()
    for i in range(20):
        step(i)
    _sync(device)
    return (time.perf_counter() - start) / 20


def trial(name: str, device: torch.device, small: bool, item: bool, epochs: int, steps: int,
          run_dir: Path, control: bool, options: dict[str, Any]) -> dict[str, Any]:
    """One run: epochs in turns with and without the Doctor (see the module doc)."""
    model, opt, step = make(name, device, small, item)
    doc = Doctor(model, opt, run_dir, verbose=False, **options)
    dense = doc.schedule.dense_steps
    times: list[tuple[bool, bool, float]] = []  # (watched, after the dense start, s)
    attached, i, close_s = True, 0, 0.0
    for e in range(epochs):
        watched = watched_in_turn(e)
        active = watched and not control
        if active != attached:
            set_attached(doc, opt, active)
            attached = active
        steady = doc._opt_step >= dense
        _sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            loss = step(i)
            i += 1
            if active:
                doc.log(loss=loss)
        if active:
            doc.log_epoch()
        if e == epochs - 1:
            if not attached:
                set_attached(doc, opt, True)
            if not control:
                _sync(device)
                close_start = time.perf_counter()
                doc.close()
                close_s = time.perf_counter() - close_start
        _sync(device)
        times.append((watched, steady, time.perf_counter() - start))
    if control:
        doc.close()
    watched_s = sum(t for w, _, t in times if w)
    plain_s = sum(t for w, _, t in times if not w)
    pairs = [(times[k], times[k + 1]) for k in range(0, len(times) - 1, 2)]
    late = [(a, b) for a, b in pairs if a[1] and b[1]]
    steady_w = sum(a[2] if a[0] else b[2] for a, b in late)
    steady_p = sum(b[2] if a[0] else a[2] for a, b in late)
    # Each steady pair's own ratio: their median is not moved by one slow epoch (a
    # clock change, a host hiccup), which sums over a few pairs are.
    pair_ratios = [(a[2] / b[2]) if a[0] else (b[2] / a[2]) for a, b in late]
    return {"ratio": watched_s / plain_s,
            "pair_ratios": pair_ratios,
            "close_s": close_s,
            "ratio_without_close": (watched_s - close_s) / plain_s,
            "steady_ratio": steady_w / steady_p if late else None,
            "ms_per_step": 1e3 * plain_s / (steps * (epochs // 2)),
            "doctor_share": None if control else doc._budget.share(),
            "period": doc._reading_plan.period,
            "findings": sorted({f.code for f in doc.report().findings})}


def _mean_se(values: list[float]) -> str:
    se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else float("nan")
    return f"{statistics.mean(values):.4f} +- {se:.4f}"


def bench(name: str, device: torch.device, small: bool, item: bool, runs: int, epochs: int,
          epoch_seconds: float, control: bool, options: dict[str, Any]) -> dict[str, Any]:
    per_step = step_seconds(name, device, small, item)
    steps = max(10, round(epoch_seconds / per_step))
    with tempfile.TemporaryDirectory() as tmp:
        results = [trial(name, device, small, item, epochs, steps, Path(tmp) / f"r{r}",
                         control, options) for r in range(runs)]
    ratios = [r["ratio"] for r in results]
    steady = [r["steady_ratio"] for r in results if r["steady_ratio"] is not None]
    what = "CONTROL (never attached)" if control else (
        "every signal every step" if options == EVERY_STEP
        else f"Doctor({json.dumps(options)})" if options else "default Doctor")
    if item:
        what += ", loss.item() every step"
    print(f"{name} on {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}"
          f", {what}: {runs} runs x {epochs} epochs x {steps} steps "
          f"({1e3 * per_step:.2f} ms/step)")
    print(f"  whole run (dense start, close included): watched / unwatched {_mean_se(ratios)}"
          f"  per run {[round(r, 4) for r in ratios]}")
    if not control:
        print(f"  the same without the closing diagnosis (median "
              f"{statistics.median(r['close_s'] for r in results):.2f} s): "
              f"{_mean_se([r['ratio_without_close'] for r in results])}")
    if steady:
        print(f"  steady (after the dense start): {_mean_se(steady)}  per run "
              f"{[round(r, 4) for r in steady]}")
        pairs = sorted(p for r in results for p in r["pair_ratios"])
        print(f"  steady, epoch pairs (watched / unwatched): median {statistics.median(pairs):.4f}"
              f" of {len(pairs)}, quartiles {pairs[len(pairs) // 4]:.4f} to "
              f"{pairs[(3 * len(pairs)) // 4]:.4f}")
    if not control:
        shares = [r["doctor_share"] for r in results if r["doctor_share"] is not None]
        print(f"  the Doctor's own estimate of its share: "
              f"{100 * statistics.mean(shares):.2f}%; reading period {results[-1]['period']};"
              f" findings {results[-1]['findings']}")
    return {"model": name, "mode": what, "steps_per_epoch": steps, "epochs": epochs,
            "ms_per_step": 1e3 * per_step, "runs": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("resnet", "transformer", "both"), default="both")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--epoch-seconds", type=float, default=0.5)
    parser.add_argument("--control", action="store_true")
    parser.add_argument("--every-step", action="store_true")
    parser.add_argument("--item-every-step", action="store_true")
    parser.add_argument("--options", type=json.loads, default={},
                        help="other Doctor arguments, as JSON")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--small", action="store_true",
                        help="tiny models and batches: to try the script on a CPU")
    parser.add_argument("--json", type=Path, help="append the results to this file")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    names = ("resnet", "transformer") if args.model == "both" else (args.model,)
    options = EVERY_STEP if args.every_step else args.options
    out = [bench(n, device, args.small, args.item_every_step, args.runs, args.epochs,
                 args.epoch_seconds, args.control, options) for n in names]
    if args.json:
        with args.json.open("a") as f:
            for row in out:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
