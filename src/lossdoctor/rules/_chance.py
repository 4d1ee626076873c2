"""A plateau at chance level: the run never learned anything about its inputs, which
calls for other fixes than a plateau above chance (where the step size or the
capacity sets the floor)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lossdoctor.rules._lr import lr_summary
from lossdoctor.rules._stats import accuracy_fractions
from lossdoctor.run import TRAIN_ACC, TRAIN_LOSS, VAL_ACC, VAL_LOSS, Run

# The first loss must be ln C within this relative tolerance: a uniform guess over C
# classes (neighbouring ln C are more than 2% apart up to C = 50 or so, and a real
# first epoch sits a little above or below).
CHANCE_LOSS_RTOL = 0.02
MAX_CLASSES = 1000
# "Never above chance": no logged accuracy rose by more than this share of the way
# from chance to 100% (for 10 classes, above 19%) ...
CHANCE_MARGIN = 0.1
# ... and no logged loss fell more than this share below ln C (learning the class
# frequencies alone lowers it a little when they are uneven).
CHANCE_LOSS_FLOOR = 0.05


@dataclass(frozen=True)
class ChanceLevel:
    classes: int
    best_accuracy: float

    @property
    def chance(self) -> float:
        return 1.0 / self.classes


def _classes_of_loss(loss: float, rtol: float = CHANCE_LOSS_RTOL) -> int:
    """C when `loss` is ln C for a whole C >= 2 (within `rtol`), else 0."""
    c = round(math.exp(loss)) if 0.5 < loss <= (1 + rtol) * math.log(MAX_CLASSES) else 0
    if c < 2 or abs(math.log(c) - loss) > rtol * math.log(c):
        return 0
    return c


def _accuracies_and_losses(run: Run) -> tuple[list[np.ndarray], list[np.ndarray]] | None:
    """The logged accuracies (validation's first) and the finite losses (validation's
    first), or None when either is missing."""
    accuracies = [a for key in (VAL_ACC, TRAIN_ACC)
                  if (s := run.get(key)) is not None and (a := accuracy_fractions(s)).size]
    losses = [v[np.isfinite(v)] for key in (VAL_LOSS, TRAIN_LOSS)
              if (s := run.get(key)) is not None and np.isfinite(v := s.values).any()]
    return (accuracies, losses) if accuracies and losses else None


def never_learned(run: Run) -> ChanceLevel | None:
    """C and the best accuracy when the run stayed at chance: its first validation (or
    else training) loss is ln C for the nearest whole C (a uniform guess over C
    classes) and no loss it logged fell more than `CHANCE_LOSS_FLOOR` below that, the
    typical accuracy is at least half of 1/C (the chance level fits the accuracies: a
    loss can sit near ln C for some C by coincidence), and no accuracy it logged,
    training or validation, rose above chance by more than `CHANCE_MARGIN` of the way
    to 100%. None without accuracies."""
    logged = _accuracies_and_losses(run)
    if logged is None:
        return None
    accuracies, losses = logged
    best = max(float(a.max()) for a in accuracies)
    typical = float(np.median(accuracies[0]))  # validation's, when logged
    lowest = min(float(v.min()) for v in losses)
    for c in (_classes_of_loss(float(v[0])) for v in losses):
        if not c:
            continue
        uniform, chance = math.log(c), 1.0 / c
        if (lowest >= (1.0 - CHANCE_LOSS_FLOOR) * uniform
                and typical >= 0.5 * chance
                and best <= chance + CHANCE_MARGIN * (1.0 - chance)):
            return ChanceLevel(c, best)
    return None


# barely-learning: after at least this many epochs (or, in a log without epochs, this
# many validation passes) ...
BARELY_MIN_EVALUATIONS = 20
# ... the lowest loss logged is still less than this share below ln C ...
BARELY_LOSS_SHARE = 0.10
# ... and no accuracy rose more than this share of the way from chance to 100%.
BARELY_ACCURACY_MARGIN = 0.5


@dataclass(frozen=True)
class NearChance:
    classes: int
    lowest_loss: float
    best_accuracy: float
    evaluations: int
    unit: str  # "epochs", or "validation passes" when the log has no epochs

    @property
    def reduction(self) -> float:
        """How much of a uniform guess's loss the run has removed (0: none, 1: all)."""
        return 1.0 - self.lowest_loss / math.log(self.classes)


def _evaluations(run: Run) -> tuple[int, str]:
    """How long the run trained, in epochs when the log has them, else in validation
    passes (one per epoch in the usual logs); (0, "") when neither is known."""
    for key in (VAL_LOSS, TRAIN_LOSS):
        s = run.get(key)
        if s is not None and s.epochs is not None and s.epochs.size:
            return int(s.epochs.max() - s.epochs.min()) + 1, "epochs"
    val = run.get(VAL_LOSS)
    return (int(val.values.size), "validation passes") if val is not None else (0, "")


def barely_learned(run: Run, lingering: bool = False) -> NearChance | None:
    """A classifier that started as a uniform guess over C classes (first loss ln C)
    and, after `BARELY_MIN_EVALUATIONS` epochs, has removed less than
    `BARELY_LOSS_SHARE` of that loss, with accuracies to match; None otherwise.
    `lingering`: C may also come from a loss whose median over the run is ln C (within
    `BARELY_LOSS_SHARE`) with a typical accuracy of 1/C, for one output of a
    multi-output model, whose first epoch can start above ln C (a sigmoid head's
    random start: 0.77-0.81 where ln 2 = 0.69) while the run's summed loss says
    nothing about that output's classes."""
    logged = _accuracies_and_losses(run)
    evaluations, unit = _evaluations(run)
    if logged is None or evaluations < BARELY_MIN_EVALUATIONS:
        return None
    accuracies, losses = logged
    best = max(float(a.max()) for a in accuracies)
    typical = float(np.median(accuracies[0]))
    lowest = min(float(v.min()) for v in losses)
    # (C, whether the typical accuracy must be chance itself): a loss that merely
    # lingers near some ln C is a weaker sign than a first loss of ln C, so the
    # accuracy must then sit at 1/C too (within CHANCE_MARGIN of the way to 100%).
    candidates = [(_classes_of_loss(float(v[0])), False) for v in losses]
    if lingering:
        candidates += [(_classes_of_loss(float(np.median(v)), BARELY_LOSS_SHARE), True)
                       for v in losses]
    for c, at_chance in candidates:
        if not c:
            continue
        chance = 1.0 / c
        if (lowest >= (1.0 - BARELY_LOSS_SHARE) * math.log(c) and typical >= 0.5 * chance
                and best <= chance + BARELY_ACCURACY_MARGIN * (1.0 - chance)
                and (not at_chance or abs(typical - chance) <= CHANCE_MARGIN * (1 - chance))):
            return NearChance(c, lowest, best, evaluations, unit)
    return None



def title(level: ChanceLevel) -> str:
    return (f"The run never learned: accuracy stayed at chance (best {level.best_accuracy:.1%}"
            f" against {level.chance:.1%} for {level.classes} classes) and the loss "
            f"started at ln {level.classes} = {math.log(level.classes):.4g}, a uniform guess")


EXPLANATION = (
    "The outputs carry no information about the inputs: the model starts as a uniform "
    "guess over the classes and learns at most how common each class is. A step size "
    "or a schedule rarely causes this; something between the inputs, the labels and "
    "the loss is broken, or the network passes no signal forward or back."
)

FIXES = (
    "Check that the model can overfit a handful of samples (`lossdoctor check`, or train "
    "on 10 samples until the loss is near 0): if it cannot, the model or the loss is at "
    "fault, not the data or the schedule.",
    "Check that inputs and labels still line up after loading, shuffling and "
    "augmentation, and that the label format fits the loss (integer labels with a "
    "sparse loss, one-hot labels with a categorical one).",
    "Check that the output layer and the loss agree: raw logits with from_logits=True "
    "(or torch's CrossEntropyLoss), probabilities with from_logits=False; one softmax, "
    "not two.",
    "Look for a network that passes no signal: ReLUs all switched off (a very negative "
    "bias, a huge early step), saturated sigmoid/tanh units, inputs far from unit "
    "scale, layers left frozen (trainable=False, requires_grad=False); the live "
    "doctor's dead-units and saturated-activations findings name the layer.",
)


def fixes(run: Run, evidence: dict[str, float | int | str]) -> Sequence[str]:
    summary = lr_summary(run)
    if summary is None:
        return FIXES
    first, last, constant = summary
    evidence.update(lr_first=first, lr_last=last)
    rate = f"{first:.3g}" if constant else f"{first:.3g} -> {last:.3g}"
    return (*FIXES, f"If all of that holds, the learning rate ({rate}) may be too small to "
            "move the weights off their start: try it 3-10x higher for a few epochs.")
