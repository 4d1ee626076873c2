"""The regime of a run, read from train and validation loss the way the source's
table does: which of the two is falling, flat or rising late in the run."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from lossdoctor.findings import Finding, make_finding
from lossdoctor.rules._chance import EXPLANATION as CHANCE_EXPLANATION
from lossdoctor.rules._chance import fixes as chance_fixes
from lossdoctor.rules._chance import never_learned
from lossdoctor.rules._chance import title as chance_title
from lossdoctor.rules._lr import fixes_with_lr
from lossdoctor.rules._stats import (
    Binned,
    Trend,
    accuracy_fractions,
    binned,
    curve_scale,
    late_window,
    trend,
)
from lossdoctor.rules._unbounded import EXPLANATION as UNBOUNDED_EXPLANATION
from lossdoctor.rules._unbounded import FIXES as UNBOUNDED_FIXES
from lossdoctor.rules._unbounded import TITLE as UNBOUNDED_TITLE
from lossdoctor.rules._unbounded import unbounded_fall
from lossdoctor.rules._where import locate
from lossdoctor.run import TRAIN_ACC, TRAIN_LOSS, TRAIN_LOSS_STEP, VAL_ACC, VAL_LOSS, Run, Series

MIN_POINTS = 4  # fewer finite points than this and the regime is unknown
# Both flat counts as converged rather than a plateau when training got this far.
CONVERGED_DROP = 0.8  # the loss fell by at least 80% of its starting level
CONVERGED_ACCURACY = 0.97
# Overfitting with a flat validation curve: the gap must have widened by this much
# of the best validation loss since the best epoch.
GAP_WIDENING = 0.10
# A validation loss flat over this last share of its points (and at least this many)
# while training falls below it is overfitting, however little the gap widened, and
# though the late half as a whole may still fall (a descent that ended long ago).
STALL_SHARE = 0.25
STALL_MIN_POINTS = 10


@dataclass(frozen=True)
class RegimeVerdict:
    regime: str
    finding: Finding | None = None
    evidence: dict[str, float | int | str] = field(default_factory=dict)


def _late_trend(b: Binned) -> Trend:
    window = late_window(b)
    x, y = b.x[window], b.y[window]
    return trend(x, y, scale=curve_scale(b, y))


def _last_accuracy(run: Run, key: str) -> float | None:
    series = run.get(key)
    if series is None:
        return None
    finite = accuracy_fractions(series)
    if finite.size == 0:
        return None
    tail = finite[-max(1, min(3, finite.size)) :]
    return float(np.median(tail))


def assess_regime(run: Run) -> RegimeVerdict:
    train = run.get(TRAIN_LOSS)
    steps = run.get(TRAIN_LOSS_STEP)
    if steps is not None and (train is None or _finite_count(train) < MIN_POINTS):
        # A few epochs, but every step logged: the steps tell the trend.
        train = steps
    if train is None:
        return RegimeVerdict("unknown", evidence={"reason": "no training loss series"})
    if len(train) and not np.isfinite(train.values[-1]) and np.isfinite(train.values).any():
        first_bad = int(np.flatnonzero(~np.isfinite(train.values))[0])
        step, epoch = locate(train, first_bad)
        nan_evidence: dict[str, float | int | str] = {
            "last_finite_loss": float(train.values[:first_bad][-1]) if first_bad else "none"
        }
        finding = make_finding(
            "diverging",
            step=step,
            epoch=epoch,
            evidence=nan_evidence,
            title="Training blew up: the loss ended as NaN/inf",
        )
        return RegimeVerdict("diverging", finding, nan_evidence)
    tb = binned(train)
    if tb.y.size < MIN_POINTS:
        return RegimeVerdict("unknown", evidence={"reason": "too few training loss points",
                                                  "points": int(tb.y.size)})
    t_trend = _late_trend(tb)
    val = run.get(VAL_LOSS)
    vb = binned(val) if val is not None else None
    v_trend = _late_trend(vb) if vb is not None and vb.y.size >= MIN_POINTS else None

    evidence: dict[str, float | int | str] = {
        "train_trend": t_trend.direction,
        "train_late_change": round(t_trend.change, 6),
        "train_late_t": round(min(t_trend.t, 1e6), 2),
        "train_first": float(tb.y[0]),
        "train_last": float(tb.y[-1]),
    }
    if v_trend is not None and vb is not None:
        evidence.update(
            val_trend=v_trend.direction,
            val_late_change=round(v_trend.change, 6),
            val_late_t=round(min(v_trend.t, 1e6), 2),
            val_best=float(np.min(vb.y)),
            val_last=float(vb.y[-1]),
        )

    fall = unbounded_fall(tb, t_trend)
    if fall is not None:  # running away, downwards: diverging, whatever validation does
        evidence.update({k: round(v, 6) for k, v in fall.items()})
        step, epoch = locate(train, int(tb.index[0]))
        return RegimeVerdict(
            "diverging",
            make_finding("diverging", step=step, epoch=epoch, evidence=evidence,
                         title=UNBOUNDED_TITLE.format(first=fall["first_loss"],
                                                      last=fall["last_loss"]),
                         explanation=UNBOUNDED_EXPLANATION, fixes=UNBOUNDED_FIXES),
            evidence,
        )

    if t_trend.direction == "rising":
        start = int(np.argmin(tb.y))
        step, epoch = locate(train, int(tb.index[start]))
        where = f"epoch {epoch}" if epoch is not None else f"step {step}"
        title = (
            f"Training loss rose from {float(tb.y[start]):.4g} ({where}) "
            f"to {float(tb.y[-1]):.4g}"
        )
        if v_trend is not None and vb is not None and v_trend.direction == "rising":
            title += f"; validation loss rose to {float(vb.y[-1]):.4g}"
        return RegimeVerdict(
            "diverging",
            make_finding("diverging", step=step, epoch=epoch, evidence=evidence, title=title),
            evidence,
        )

    if v_trend is not None and vb is not None and val is not None:
        best = int(np.argmin(vb.y))
        best_step, best_epoch = locate(val, int(vb.index[best]))
        problem = _data_problem(tb, vb, v_trend, evidence)
        stuck_val = None if problem else _validation_never_moved(run, tb, vb, evidence)
        if problem or stuck_val:
            step, epoch = locate(train, int(tb.index[0]))
            return RegimeVerdict(
                "data-problem",
                make_finding("data-problem", step=step, epoch=epoch, evidence=evidence,
                             title=stuck_val),
                evidence,
            )
        gap_growth, gap_end = _gap_change(tb, vb, best)
        evidence["gap_growth_since_best"] = round(gap_growth, 6)
        # Overfitting needs training to be doing better than validation: still
        # falling, or below the validation loss. A training loss that never moved
        # while validation worsens is a model that is not learning at all.
        clear_gap = gap_end > max(3.0 * v_trend.noise, 0.05 * abs(float(vb.y[best])))
        train_learning = t_trend.direction == "falling" or (clear_gap and _fell(tb))
        if v_trend.direction == "rising" and train_learning:
            overfit = True
        elif v_trend.direction == "flat" and t_trend.direction == "falling":
            overfit = gap_end > 0 and gap_growth > GAP_WIDENING * abs(float(vb.y[best]))
        else:
            overfit = False
        # Validation flat for the last stretch while training kept falling over it
        # (and sits below it): stopped improving, even if the late half still fell.
        stall = _stalled(vb, v_trend) if t_trend.direction == "falling" else None
        if not overfit and stall is not None and gap_end > 0 \
                and _falls_since(tb, float(vb.x[stall[0]])):
            overfit = True
            v_trend = stall[1]
            evidence["val_flat_last_points"] = int(vb.y.size - stall[0])
        if overfit:
            evidence["best_val_at"] = best_epoch if best_epoch is not None else best_step or 0
            val_best, val_now = float(vb.y[best]), float(vb.y[-1])
            train_now = float(tb.y[-1])
            if v_trend.direction == "rising":
                where = f"epoch {best_epoch}" if best_epoch is not None else f"step {best_step}"
                title = (
                    f"Validation loss was best at {where} ({val_best:.4g}) and is now "
                    f"{val_now:.4g}, while training loss went on to {train_now:.4g}"
                )
            else:
                # Flat validation: the story starts where it stopped improving.
                stalled = _plateau_start(vb, v_trend)
                best_step, best_epoch = locate(val, int(vb.index[stalled]))
                where = f"epoch {best_epoch}" if best_epoch is not None else f"step {best_step}"
                title = (
                    f"Validation loss has stayed near {v_trend.end:.4g} since {where} while "
                    f"training loss kept falling, to {train_now:.4g}"
                )
            return RegimeVerdict(
                "overfitting",
                make_finding(
                    "overfitting", step=best_step, epoch=best_epoch, evidence=evidence,
                    title=title,
                ),
                evidence,
            )
        if t_trend.direction == "falling" or v_trend.direction == "falling":
            return RegimeVerdict("still-learning", evidence=evidence)
    elif t_trend.direction == "falling":
        return RegimeVerdict("still-learning", evidence=evidence)

    # Both flat (or training flat with no validation): converged or stuck.
    if _looks_converged(run, tb, evidence):
        return RegimeVerdict("converged", evidence=evidence)
    start = _plateau_start(tb, t_trend)
    step, epoch = locate(train, int(tb.index[start]))
    at_chance = never_learned(run)
    if at_chance is not None:  # stuck at chance: not a step-size or capacity floor
        evidence.update(chance_classes=at_chance.classes,
                        best_accuracy=round(at_chance.best_accuracy, 4))
        return RegimeVerdict(
            "plateau",
            make_finding(
                "plateau", step=step, epoch=epoch, evidence=evidence,
                title=chance_title(at_chance), explanation=CHANCE_EXPLANATION,
                fixes=chance_fixes(run, evidence),
            ),
            evidence,
        )
    where = f"epoch {epoch}" if epoch is not None else f"step {step}"
    title = f"Training loss has stayed near {t_trend.end:.4g} since {where}"
    if v_trend is not None:
        # Without validation the catalog's title ("training and validation") is wrong.
        title += f", and validation loss near {v_trend.end:.4g}"
    return RegimeVerdict(
        "plateau",
        make_finding(
            "plateau", step=step, epoch=epoch, evidence=evidence, title=title,
            fixes=fixes_with_lr(run, "plateau", evidence),
        ),
        evidence,
    )


# data-problem: training moved less than this share of its level over the whole run,
# while validation fell at least DATA_PROBLEM_RATIO times as much (and significantly).
DATA_PROBLEM_TRAIN_MOVE = 0.03
DATA_PROBLEM_RATIO = 3.0


def _data_problem(
    tb: Binned, vb: Binned, v_late: Trend, evidence: dict[str, float | int | str]
) -> bool:
    """Validation improved over the whole run while training did not: a critical
    claim, so it is judged on whole-run trends measured against each curve's level."""
    if v_late.direction == "rising" or tb.y[0] <= 0 or vb.y[0] <= 0:
        return False
    whole_train = trend(tb.x, tb.y)
    whole_val = trend(vb.x, vb.y)
    train_fall = -whole_train.change / abs(whole_train.start)
    val_fall = -whole_val.change / abs(whole_val.start)
    if (
        whole_val.direction == "falling"
        and train_fall < DATA_PROBLEM_TRAIN_MOVE
        and val_fall >= DATA_PROBLEM_RATIO * max(train_fall, 0.01)
    ):
        evidence["train_whole_run_fall"] = round(train_fall, 4)
        evidence["val_whole_run_fall"] = round(val_fall, 4)
        return True
    return False


# The other way round: training learned (its loss fell by this share at least) while
# validation never improved on its first value by MIN_VAL_GAIN of its level and its
# accuracy stayed near where it began and far below training's. Accuracy is required:
# without it, a run that overfits from its first epoch looks the same.
STUCK_VAL_TRAIN_FALL = 0.3
MIN_VAL_GAIN = 0.05
STUCK_VAL_ACC_RISE = 0.1  # validation accuracy rose less than this over its first value
STUCK_VAL_ACC_SHARE = 0.5  # and stayed below this share of training's final accuracy


def _validation_never_moved(run: Run, tb: Binned, vb: Binned,
                            evidence: dict[str, float | int | str]) -> str | None:
    """A title when validation stayed where it started (its loss never better than at
    first, its accuracy near its first value and far below training's) while training
    learned: what the model learns does not carry over, as when the splits are
    preprocessed differently. None otherwise."""
    val_acc, train_acc = run.get(VAL_ACC), _last_accuracy(run, TRAIN_ACC)
    if val_acc is None or train_acc is None or tb.y[0] <= 0 or vb.y[0] <= 0:
        return None
    acc = accuracy_fractions(val_acc)
    if acc.size < MIN_POINTS:
        return None
    train_first, train_last = float(tb.y[0]), float(np.median(tb.y[late_window(tb)]))
    val_first, val_best = float(vb.y[0]), float(np.min(vb.y))
    acc_first, acc_best = float(acc[0]), float(np.max(acc))
    if not (train_last <= (1.0 - STUCK_VAL_TRAIN_FALL) * train_first
            and val_first - val_best < MIN_VAL_GAIN * abs(val_first)
            and acc_best - acc_first < STUCK_VAL_ACC_RISE
            and acc_best < STUCK_VAL_ACC_SHARE * train_acc):
        return None
    evidence.update(val_first=val_first, val_accuracy_first=round(acc_first, 4),
                    val_accuracy_best=round(acc_best, 4), train_accuracy=round(train_acc, 4))
    return (f"Validation never moved from where it started (loss {val_first:.4g}, best "
            f"{val_best:.4g}; accuracy at most {acc_best:.0%}) while training loss fell from "
            f"{train_first:.4g} to {train_last:.4g} and training accuracy reached "
            f"{train_acc:.0%}")


def _stalled(vb: Binned, late: Trend) -> tuple[int, Trend] | None:
    """(where the stretch starts, its trend) for a validation loss that is flat over
    its last STALL_SHARE (STALL_MIN_POINTS at least, and at most half of it) and not
    rising over the late half; None otherwise."""
    if late.direction == "rising":
        return None
    n = vb.y.size
    size = max(STALL_MIN_POINTS, math.ceil(STALL_SHARE * n))
    if n < 2 * size:
        return None
    y = vb.y[-size:]
    recent = trend(vb.x[-size:], y, scale=curve_scale(vb, y))
    return (n - size, recent) if recent.direction == "flat" else None


def _falls_since(tb: Binned, x0: float) -> bool:
    """Whether the training loss falls significantly from run position `x0` on."""
    keep = tb.x >= x0
    if int(keep.sum()) < MIN_POINTS:
        return False
    y = tb.y[keep]
    return trend(tb.x[keep], y, scale=curve_scale(tb, y)).direction == "falling"


def _finite_count(series: Series) -> int:
    return int(np.isfinite(series.values).sum())


def _gap_change(tb: Binned, vb: Binned, best: int) -> tuple[float, float]:
    """(how much the validation-minus-training gap widened from the best validation
    point to the end, the gap at the end), on the common 0..1 run position."""
    train_at = np.interp([vb.x[best], vb.x[-1]], tb.x, tb.y)
    tail = vb.y[-max(1, min(3, vb.y.size - best)) :]
    gap_best = float(vb.y[best] - train_at[0])
    gap_end = float(np.median(tail) - train_at[1])
    return gap_end - gap_best, gap_end


def _fell(tb: Binned) -> bool:
    """Training made real progress over the run (at least 10% below its start)."""
    first, last = float(tb.y[0]), float(np.median(tb.y[late_window(tb)]))
    return first > 0 and last < 0.9 * first


def _looks_converged(run: Run, tb: Binned, evidence: dict[str, float | int | str]) -> bool:
    train_acc = _last_accuracy(run, TRAIN_ACC)
    val_acc = _last_accuracy(run, VAL_ACC)
    if train_acc is not None:
        evidence["train_accuracy"] = round(train_acc, 4)
    if val_acc is not None:
        evidence["val_accuracy"] = round(val_acc, 4)
    if train_acc is not None and train_acc >= CONVERGED_ACCURACY:
        return True
    first, last = float(tb.y[0]), float(np.median(tb.y[late_window(tb)]))
    if first > 0 and last >= 0:
        drop = 1.0 - last / first
        evidence["train_drop"] = round(drop, 4)
        return drop >= CONVERGED_DROP and (val_acc is None or val_acc >= 0.9 * CONVERGED_ACCURACY)
    return False


def _plateau_start(tb: Binned, late: Trend) -> int:
    """First binned point already within the late level's noise band."""
    level = late.end
    band = max(3.0 * late.noise, 0.05 * abs(level))
    near = np.flatnonzero(np.abs(tb.y - level) <= band)
    return int(near[0]) if near.size else late_window(tb).start


def regime_rule(run: Run) -> list[Finding]:
    verdict = assess_regime(run)
    return [verdict.finding] if verdict.finding is not None else []

