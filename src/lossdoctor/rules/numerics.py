"""Numeric signatures in the loss: NaN/inf, saturation constants, a frozen loss."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from lossdoctor.findings import Finding, make_finding
from lossdoctor.rules._stats import frozen_tail
from lossdoctor.rules._where import locate
from lossdoctor.run import TRAIN_LOSS, VAL_LOSS, Run, Series


@dataclass(frozen=True)
class Saturation:
    value: float
    source: str


# Where the loss lands when the true class gets probability zero and a clamp guards
# the log. Each value is -ln(floor) for the floor named.
SATURATIONS = (
    Saturation(-math.log(np.finfo(np.float32).tiny), "-ln(FLT_MIN): float32 softmax "
               "probability clamped at the smallest normal float (Caffe-style)"),
    Saturation(-math.log(1e-7), "-ln(1e-7): Keras clips probabilities at epsilon=1e-7"),
    Saturation(-math.log(float(np.finfo(np.float32).smallest_subnormal)),
               "-ln(1.4e-45): float32 probability at the smallest denormal"),
    Saturation(100.0, "PyTorch's BCELoss clamps log(p) at -100"),
    Saturation(-math.log(float(np.finfo(np.float16).tiny)),
               "-ln(6.1e-5): float16 probability at the smallest normal half"),
    Saturation(-math.log(float(np.finfo(np.float16).smallest_subnormal)),
               "-ln(6e-8): float16 probability at the smallest denormal half"),
    Saturation(-math.log(float(np.finfo(np.float64).tiny)),
               "-ln(DBL_MIN): float64 probability clamped at the smallest normal double"),
)

# A loss frozen for at least this many points (and this share of the run) is frozen,
# not merely flat.
FROZEN_MIN_POINTS = 5
FROZEN_MIN_SHARE = 0.2
# Below this a frozen value is too small to be told apart from an ordinary loss as
# "a fraction of a saturation constant" (ln of 3000 classes is 8.0).
PARTIAL_SATURATION_FLOOR = 8.0
SIGNATURE_RTOL = 2e-4  # logged losses are float32, printed with ~7 digits


def _train_or_val(run: Run, dense: bool = False) -> list[tuple[str, Series]]:
    out = []
    for key in (TRAIN_LOSS, VAL_LOSS):
        series = run.densest_train_loss() if dense and key == TRAIN_LOSS else run.get(key)
        if series is not None and len(series):
            out.append((key, series))
    return out


_BAD_WORDS = {"nan": "NaN", "inf": "+inf", "-inf": "-inf"}


def nan_loss(run: Run) -> list[Finding]:
    """The first step at which a loss became NaN or infinite."""
    findings: list[Finding] = []
    for key, series in _train_or_val(run, dense=True):
        bad = np.flatnonzero(~np.isfinite(series.values))
        if bad.size == 0:
            continue
        first = int(bad[0])
        step, epoch = locate(series, first)
        if findings:
            # Validation went bad too: one finding, the other place in its evidence.
            where = step if step is not None else epoch
            findings[0] = replace(
                findings[0],
                evidence={**findings[0].evidence, "val_first_bad_at": where if where is not None
                          else "start"},
            )
            continue
        before = series.values[:first]
        finite_before = before[np.isfinite(before)]
        value = float(series.values[first])
        evidence: dict[str, float | int | str] = {
            "series": key,
            "first_bad_value": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf"),
            "bad_points": int(bad.size),
            "points": len(series),
        }
        if finite_before.size:
            evidence["last_finite"] = float(finite_before[-1])
            evidence["min_before"] = float(np.min(finite_before))
        if bad.size == len(series) - first and first > 0:
            evidence["stayed_bad"] = "yes"
        findings.append(
            make_finding(
                "nan-loss",
                step=step,
                epoch=epoch,
                evidence=evidence,
                title=f"The {'training' if key == TRAIN_LOSS else 'validation'} loss became "
                f"{_BAD_WORDS[str(evidence['first_bad_value'])]}"
                + (
                    f" after reaching {float(evidence['last_finite']):.4g}"
                    if "last_finite" in evidence
                    else " from the first step"
                ),
            )
        )
    return findings


def _frozen(series: Series) -> tuple[int, float] | None:
    """(index where the frozen stretch at the end starts, frozen value), or None."""
    values = series.values
    n_frozen = frozen_tail(values)
    finite = int(np.isfinite(values).sum())
    if n_frozen < FROZEN_MIN_POINTS or n_frozen < FROZEN_MIN_SHARE * finite:
        return None
    start = len(series) - n_frozen
    return start, float(values[-1])


MAX_CLASSES = 100_000  # beyond this, ln C is too close to other constants to tell


def _log_classes(value: float) -> int | None:
    """C when value == ln(C) for an integer C >= 2 (a uniform softmax over C classes)."""
    if value <= 0.5 or value > math.log(MAX_CLASSES):
        return None
    c = round(math.exp(value))
    if c >= 2 and abs(math.log(c) - value) <= SIGNATURE_RTOL * value:
        return int(c)
    return None


def _saturation(value: float) -> tuple[Saturation, float] | None:
    """(constant, fraction of samples saturated) when value is a saturation constant,
    or a fraction of one large enough not to be an ordinary loss."""
    for sat in SATURATIONS:
        if abs(value - sat.value) <= SIGNATURE_RTOL * sat.value:
            return sat, 1.0
    if value < PARTIAL_SATURATION_FLOOR:
        return None
    # The smallest constant above the value explains it as a fraction.
    above = [s for s in SATURATIONS if s.value >= value * (1 - SIGNATURE_RTOL)]
    if not above:
        return None
    sat = min(above, key=lambda s: s.value)
    return sat, value / sat.value


def frozen_loss(run: Run) -> list[Finding]:
    """A loss that stops changing at all: a saturation constant (softmax overflow),
    exactly ln C (uniform output), or any other frozen value."""
    findings: list[Finding] = []
    for key, series in _train_or_val(run):
        frozen = _frozen(series)
        if frozen is None:
            continue
        if findings:
            # Validation frozen too: the same cause, said once on the training finding.
            findings[0] = replace(
                findings[0],
                evidence={**findings[0].evidence, "val_frozen_value": float(frozen[1])},
            )
            continue
        start, value = frozen
        step, epoch = locate(series, start)
        which = "training" if key == TRAIN_LOSS else "validation"
        evidence: dict[str, float | int | str] = {
            "series": key,
            "frozen_value": value,
            "frozen_points": len(series) - start,
            "points": len(series),
        }
        sat = _saturation(value)
        classes = _log_classes(value)
        if sat is not None and classes is not None and sat[1] < 1.0:
            sat = None  # exactly ln C beats "a fraction of a saturation constant"
        if sat is not None:
            constant, fraction = sat
            evidence.update(
                saturation_constant=round(constant.value, 4),
                signature=constant.source,
                saturated_fraction=round(fraction, 4),
            )
            partial = fraction < 0.999
            findings.append(
                make_finding(
                    "softmax-overflow",
                    step=step,
                    epoch=epoch,
                    evidence=evidence,
                    title=(
                        f"The {which} loss is frozen at {value:.4f} = {fraction:.2f} x "
                        f"{constant.value:.4f}: softmax overflow on part of the data"
                        if partial
                        else f"The {which} loss is frozen at {constant.value:.4f}: "
                        f"softmax overflow"
                    ),
                    explanation=(
                        (
                            f"{value:.4f} is {fraction:.2f} x {constant.value:.4f}, and "
                            f"{constant.value:.4f} is {constant.source}: about "
                            f"{fraction:.0%} of the samples sit at that clamp while the "
                            "rest are predicted exactly right."
                            if partial
                            else f"{value:.4f} is {constant.source}."
                        )
                        + " The predicted probability of the true class became exactly "
                        "zero, so the loss is pinned at the clamp that keeps log(0) finite; "
                        "a saturated softmax passes back no gradient, so it stays there. "
                        "The logits overflowed: weights initialized too large, a learning "
                        "rate too high, BatchNorm frozen on data whose statistics differ, "
                        "or abnormal samples or labels."
                    ),
                )
            )
            continue
        if classes is not None:
            evidence["classes"] = classes
            title = (
                f"The {which} loss is frozen at {value:.4f} = ln({classes}): the network "
                f"outputs a uniform distribution over {classes} classes"
            )
            explanation = (
                f"A cross-entropy of exactly ln({classes}) means every class gets "
                f"probability 1/{classes}: the output does not depend on the input. "
                "The weights are not moving (learning rate zero, gradients not reaching "
                "them, a zero-initialized or dead last layer) or the inputs carry no "
                "signal."
            )
        else:
            title = f"The {which} loss is frozen at {value:.6g}"
            explanation = (
                f"The {which} loss has not changed in {len(series) - start} consecutive "
                "points. Either the weights stopped moving (zero learning rate, no "
                "gradient reaching them, all units dead), or the loss no longer depends "
                "on them."
            )
        findings.append(
            make_finding(
                "constant-loss",
                step=step,
                epoch=epoch,
                evidence=evidence,
                title=title,
                explanation=explanation,
            )
        )
    return findings
