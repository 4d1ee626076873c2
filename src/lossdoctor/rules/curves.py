"""Shape of the loss curve: what it says about the learning rate, the train/val
accuracy gap, isolated spikes, a classifier that stays near a uniform guess."""

from __future__ import annotations

import math

import numpy as np

from lossdoctor.findings import CATALOG, Finding, make_finding
from lossdoctor.rules._chance import NearChance, barely_learned
from lossdoctor.rules._heads import output_heads
from lossdoctor.rules._lr import fixes_with_lr, lr_summary
from lossdoctor.rules._stats import (
    Binned,
    accuracy_fractions,
    binned,
    curve_scale,
    late_window,
    mad_sigma,
    trend,
)
from lossdoctor.rules._where import locate
from lossdoctor.run import TRAIN_ACC, TRAIN_LOSS, VAL_ACC, VAL_LOSS, Run, Series

MIN_POINTS = 6

# lr-too-high: most of the drop happened in the first EARLY_SHARE of the run, and the
# loss then sat at STUCK_LEVEL or more of where it started, bouncing.
EARLY_SHARE = 0.2
EARLY_DROP = 0.5  # share of the total drop done early
STUCK_LEVEL = 0.25  # late level as a share of the starting level
BOUNCE = 0.04  # late scatter as a share of the late level
MIN_DROP = 0.2  # the early drop must be real: 20% of the starting level
# A run this accurate is not "stuck high", whatever its loss level (logs that start
# late make the first logged loss a poor reference).
GOOD_ACCURACY = 0.9
# lr-too-low: a nearly straight, slow decrease.
STRAIGHT_R2 = 0.95
HALVES_RATIO = 1.6  # first-half drop / second-half drop below this: no curvature
SLOW_TOTAL_DROP = 0.5  # fell by less than half of the starting level
# generalization-gap
GAP_WARN = 0.10  # 10 accuracy points
# loss-spike
SPIKE_MADS = 15.0
SPIKE_WINDOW = 21
SPIKE_MIN_POINTS = 20


def _train_curve(run: Run) -> tuple[Series, Binned] | None:
    """The training loss and its binned curve, when there are enough finite points
    to judge a shape."""
    train = run.get(TRAIN_LOSS)
    if train is None:
        return None
    b = binned(train)
    if b.y.size < MIN_POINTS or not np.isfinite(b.y).all():
        return None
    return train, b


def lr_too_high(run: Run) -> list[Finding]:
    curve = _train_curve(run)
    if curve is None:
        return []
    train, b = curve
    n = b.y.size
    start = float(np.median(b.y[: max(1, n // 16)]))
    if start <= 0:
        return []
    # Blow-up after a good start: the loss climbed well above its best.
    best = int(np.argmin(b.y))
    late = late_window(b)
    late_y = b.y[late]
    late_level = float(np.median(late_y))
    low = float(b.y[best])
    fell_first = best > 0 and low < 0.9 * start
    if (
        fell_first
        and best < n - 2
        and late_level > low + 0.5 * (start - low)
        and late_level > 1.5 * low
    ):
        step, epoch = locate(train, int(b.index[best]))
        return [
            make_finding(
                "lr-too-high",
                step=step,
                epoch=epoch,
                evidence={"start_loss": start, "best_loss": low, "late_loss": late_level},
                title="The loss fell, then climbed back up: the learning rate is too high",
            )
        ]
    early_end = max(1, round(EARLY_SHARE * n))
    total_drop = start - late_level
    if total_drop < MIN_DROP * start or _accurate(run):
        return []
    early_drop = start - float(np.median(b.y[max(0, early_end - 2) : early_end + 1]))
    late_trend = trend(b.x[late], late_y)
    # Bounce: scatter of the (binned) late curve around its own trend line, against
    # its level. Binning averages batch-to-batch noise away, so a per-step log of a
    # healthy run does not bounce; swings from epoch to epoch do.
    bounce = late_trend.noise / late_level
    stuck = late_level / start
    evidence: dict[str, float | int | str] = {
        "start_loss": round(start, 6),
        "late_loss": round(late_level, 6),
        "late_over_start": round(stuck, 3),
        "early_share_of_drop": round(early_drop / total_drop, 3),
        "late_bounce": round(float(bounce), 3),
    }
    if (
        early_drop / total_drop >= EARLY_DROP
        and late_trend.direction != "falling"
        and stuck >= STUCK_LEVEL
        and bounce >= BOUNCE
    ):
        step, epoch = locate(train, int(b.index[early_end]))
        fixes = fixes_with_lr(run, "lr-too-high", evidence)
        return [make_finding("lr-too-high", step=step, epoch=epoch, evidence=evidence,
                             fixes=fixes)]
    return []


def _accurate(run: Run) -> bool:
    for key in (TRAIN_ACC, VAL_ACC):
        series = run.get(key)
        if series is None:
            continue
        finite = accuracy_fractions(series)
        if finite.size and float(np.median(finite[-3:])) >= GOOD_ACCURACY:
            return True
    return False


def lr_too_low(run: Run) -> list[Finding]:
    curve = _train_curve(run)
    if curve is None:
        return []
    train, b = curve
    n = b.y.size
    whole = trend(b.x, b.y, scale=curve_scale(b, b.y))
    if whole.direction != "falling" or whole.start <= 0:
        return []
    fit = whole.start + (whole.end - whole.start) * (b.x - b.x[0]) / (b.x[-1] - b.x[0])
    ss_res = float(np.sum((b.y - fit) ** 2))
    ss_tot = float(np.sum((b.y - b.y.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0
    mid = n // 2
    first_half = float(b.y[0] - b.y[mid])
    second_half = float(b.y[mid] - b.y[-1])
    total_drop = -whole.change / whole.start
    if second_half <= 0:
        return []
    ratio = first_half / second_half
    if r2 >= STRAIGHT_R2 and ratio < HALVES_RATIO and total_drop < SLOW_TOTAL_DROP:
        return [
            make_finding(
                "lr-too-low",
                step=None if train.epochs is not None and (train.steps == train.epochs).all()
                else int(train.steps[0]),
                epoch=None if train.epochs is None else int(train.epochs[0]),
                evidence={
                    "r2_of_straight_line": round(r2, 4),
                    "first_half_drop_over_second": round(ratio, 3),
                    "relative_drop": round(total_drop, 4),
                    "start_loss": round(whole.start, 6),
                    "end_loss": round(whole.end, 6),
                },
            )
        ]
    return []


def barely_learning(run: Run) -> list[Finding]:
    """barely-learning: a classifier still near a uniform guess after many epochs
    (`_chance.barely_learned`), the whole run or one output of a multi-output model
    (`_heads.output_heads`; its finding names the output as its layer); where it
    starts: the run's first point."""
    found = []
    near = barely_learned(run)
    if near is not None:
        found.append(_barely_learning(run, run, near, None))
    heads = [(name, part, barely_learned(part, lingering=True))
             for name, part in output_heads(run)]
    stuck = [(name, part, near) for name, part, near in heads if near is not None]
    if len(stuck) < len(heads):  # some outputs learn: those that do not are the story
        found += [_barely_learning(run, part, near, name) for name, part, near in stuck]
    return found


def _barely_learning(run: Run, part: Run, near: NearChance, head: str | None) -> Finding:
    """The finding for `part` (the run, or output `head` of it)."""
    series = part.get(VAL_LOSS)
    series = series if series is not None else part.get(TRAIN_LOSS)
    assert series is not None  # barely_learned needs a loss
    step, epoch = locate(series, 0)
    uniform, chance = math.log(near.classes), 1.0 / near.classes
    evidence: dict[str, float | int | str] = {
        "classes": near.classes, "uniform_loss": round(uniform, 6),
        "lowest_loss": round(near.lowest_loss, 6),
        "loss_removed_share": round(near.reduction, 4),
        "best_accuracy": round(near.best_accuracy, 4),
        near.unit.replace(" ", "_"): near.evaluations,
    }
    fixes = list(CATALOG["barely-learning"].fixes)
    if head is not None:
        evidence["output"] = head
        fixes = [f"Check {head}'s labels against its inputs and against its loss (the "
                 "label format, the class count, from_logits): the other outputs learn "
                 "from the same inputs, so the trunk passes signal.",
                 f"Check {head}'s weight in loss_weights: a weight far below the other "
                 "outputs' leaves it almost no gradient.",
                 *fixes[2:]]
    elif (summary := lr_summary(run)) is not None:
        first, last, _ = summary
        evidence.update(lr_first=first, lr_last=last)
        fixes[0] = (f"Raise the learning rate from {first:.3g} to {3 * first:.3g}-"
                    f"{10 * first:.3g} for a few epochs (an LR range test finds the largest "
                    "stable value).")
    what = "the loss" if head is None else f"the loss of output {head}"
    title = (f"After {near.evaluations} {near.unit} {what} is still near a uniform guess: "
             f"lowest {near.lowest_loss:.4g}, {near.reduction:.1%} below ln {near.classes} = "
             f"{uniform:.4g}; best accuracy {near.best_accuracy:.1%} (chance {chance:.1%})")
    explanation = None if head is None else (
        f"The model's other outputs learn, but {head}'s loss has come down only a little "
        f"from ln {near.classes}, the loss of guessing its classes equally, and its "
        "accuracy is not far above chance. The summed loss falls with the other outputs "
        "and hides this. The layers they share pass signal, so look at what is this "
        "output's own: its labels (misaligned, shuffled, or in a format its loss reads "
        "wrongly), its loss, its weight in the total, or a task the inputs say little "
        "about.")
    return make_finding("barely-learning", step=step, epoch=epoch, layer=head,
                        evidence=evidence, title=title, fixes=fixes,
                        explanation=explanation)


def generalization_gap(run: Run) -> list[Finding]:
    train_acc, val_acc = run.get(TRAIN_ACC), run.get(VAL_ACC)
    if train_acc is None or val_acc is None:
        return []
    t, v = train_acc.finite(), val_acc.finite()
    if len(t) < 2 or len(v) < 2:
        return []
    tail = min(3, len(t), len(v))
    t_end = float(np.median(t.values[-tail:]))
    v_end = float(np.median(v.values[-tail:]))
    # Accuracies logged in percent.
    scale = 100.0 if max(float(np.max(t.values)), float(np.max(v.values))) > 1.5 else 1.0
    gap = (t_end - v_end) / scale
    if gap < GAP_WARN:
        return []
    # Where the gap first crossed the threshold, on the validation points.
    t_at_v = np.interp(v.steps, t.steps, t.values) / scale
    over = np.flatnonzero(t_at_v - v.values / scale >= GAP_WARN)
    idx = int(over[0]) if over.size else len(v) - 1
    step, epoch = locate(v, idx)
    return [
        make_finding(
            "generalization-gap",
            step=step,
            epoch=epoch,
            evidence={
                "train_accuracy": round(t_end / scale, 4),
                "val_accuracy": round(v_end / scale, 4),
                "gap": round(gap, 4),
            },
            title=f"Training accuracy is {gap * 100:.0f} points above validation accuracy",
        )
    ]


def _row_medians(rows: np.ndarray) -> np.ndarray:
    """Median of each row, NaN entries left out (np.nanmedian only where needed: it is
    several times slower)."""
    if rows.shape[0] == 0:
        return np.zeros(0)
    cut = np.isnan(rows).any(axis=1)
    out: np.ndarray = np.median(rows, axis=1)
    if cut.any():
        out[cut] = np.nanmedian(rows[cut], axis=1)
    return out


def loss_spike(run: Run) -> list[Finding]:
    """Isolated jumps: far above the local median in units of local noise, and a
    large share of the way back to where training started, then recovered."""
    train = run.densest_train_loss()
    if train is None:
        return []
    finite = np.flatnonzero(np.isfinite(train.values))
    if finite.size < SPIKE_MIN_POINTS:
        return []
    y = train.values[finite].astype(np.float64, copy=False)  # NaN marks cut windows
    half = SPIKE_WINDOW // 2
    start_level = float(np.median(y[: max(3, y.size // 50)]))
    # Cheap screen against the binned curve; the exact local test runs only on the
    # few points that pass it (a rolling median over every point is the slow part).
    b = binned(train)
    baseline = np.interp(finite, b.index, b.y)
    # Point-to-point noise of the whole curve, a lenient stand-in for the local one.
    noise = mad_sigma(np.diff(y)) / np.sqrt(2)
    screen = np.flatnonzero(y > baseline + np.maximum(0.5 * np.abs(baseline), 5 * noise))
    screen = screen[(screen >= half) & (screen + 3 < y.size)]
    # Each candidate against its own window (the point itself left out), all at once.
    at = screen[:1000]
    offsets = np.delete(np.arange(-half, half + 1), half)
    cols = at[:, None] + offsets
    windows = y[np.minimum(cols, y.size - 1)]
    windows[cols >= y.size] = np.nan  # windows cut off by the end of the curve
    level = _row_medians(windows)
    noise = np.maximum(1.4826 * _row_medians(np.abs(windows - level[:, None])),
                       1e-3 * np.abs(level))
    height = y[at] - level
    recovered = np.median(y[at[:, None] + np.arange(1, 4)], axis=1) < level + 0.5 * height
    hit = ((height > SPIKE_MADS * noise) & (height > 0.5 * np.abs(start_level - level))
           & (height > 0.5 * np.abs(level)) & recovered)
    spikes = [(int(i), float(h), float(lv))  # (index, height, local level)
              for i, h, lv in zip(at[hit], height[hit], level[hit], strict=True)]
    if not spikes:
        return []
    first, _, first_level = spikes[0]
    worst = max(spikes, key=lambda s: s[1])[0]
    step, epoch = locate(train, int(finite[first]))
    return [
        make_finding(
            "loss-spike",
            step=step,
            epoch=epoch,
            evidence={
                "spikes": len(spikes),
                "first_spike_loss": float(y[first]),
                "local_level": first_level,
                "worst_spike_loss": float(y[worst]),
                "worst_spike_step": int(train.steps[finite[worst]]),
            },
            title=f"The loss spiked to {y[first]:.4g} (local level {first_level:.4g})"
            + (f", {len(spikes)} spikes in all" if len(spikes) > 1 else ""),
        )
    ]
