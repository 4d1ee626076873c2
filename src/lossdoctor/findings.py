"""The finding catalog: stable codes, their severity, and what each means.

Other tools and tests key on the codes; a code keeps its meaning once published.
The explanation and fixes here are the defaults; a rule may replace them with text
that uses the numbers of the run at hand.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


class Severity(enum.Enum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls(text.lower())
        except ValueError:
            names = ", ".join(s.value for s in cls)
            raise ValueError(f"severity must be one of {names}, but got {text!r}") from None


_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}

Evidence = Mapping[str, float | int | str]


@dataclass(frozen=True)
class Finding:
    code: str
    severity: Severity
    title: str
    step: int | None = None
    epoch: int | None = None
    layer: str | None = None
    evidence: Evidence = field(default_factory=dict)
    explanation: str = ""
    fixes: tuple[str, ...] = ()

    def where(self) -> str:
        """Where the finding starts, in words: "epoch 4, step 174, layer fc1"."""
        parts = []
        if self.epoch is not None:
            parts.append(f"epoch {self.epoch}")
        if self.step is not None:
            parts.append(f"step {self.step}")
        if self.layer is not None:
            parts.append(f"layer {self.layer}")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity.value,
            "title": self.title,
            "step": self.step,
            "epoch": self.epoch,
            "layer": self.layer,
            "evidence": {k: _json_number(v) for k, v in self.evidence.items()},
            "explanation": self.explanation,
            "fixes": list(self.fixes),
        }


def _json_number(value: float | int | str) -> float | int | str | None:
    # JSON has no NaN/inf; say them as strings rather than emit invalid JSON.
    if isinstance(value, float) and value != value:
        return "nan"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    return value


@dataclass(frozen=True)
class CatalogEntry:
    code: str
    family: str
    severity: Severity
    title: str
    explanation: str
    fixes: tuple[str, ...]


def _entry(
    code: str, family: str, severity: Severity, title: str, explanation: str, fixes: Sequence[str]
) -> CatalogEntry:
    return CatalogEntry(code, family, severity, title, explanation, tuple(fixes))


W, C, INFO = Severity.WARNING, Severity.CRITICAL, Severity.INFO

CATALOG: dict[str, CatalogEntry] = {
    e.code: e
    for e in [
        # --- curves -------------------------------------------------------------------
        _entry(
            "overfitting", "curves", W,
            "Validation loss stopped improving while training loss keeps falling",
            "The model is fitting details of the training set that do not carry over to "
            "new data: capacity is large relative to the data, regularization is weak, or "
            "training ran past the point where validation was best.",
            [
                "Keep the weights from the epoch where validation loss was lowest "
                "(early stopping / best checkpoint).",
                "Add regularization: weight decay (L2), dropout, or data augmentation.",
                "Get more training data, or reduce model capacity.",
            ],
        ),
        _entry(
            "data-problem", "curves", C,
            "One split improves while the other does not move",
            "What the model learns on one split does not show on the other, so the two do "
            "not measure the same thing. Validation improving while training does not: "
            "validation overlaps training or leaks the labels, or the training labels are "
            "noisy or shuffled. Training improving while validation stays where it "
            "started: the splits are preprocessed differently, the validation labels are "
            "encoded differently, or validation comes from another distribution.",
            [
                "Check that training inputs and labels line up (no shuffling of one without "
                "the other).",
                "Make sure both splits go through the same preprocessing and label "
                "encoding: score a few training samples through the validation pipeline; "
                "they should do as well as in training.",
                "Look for samples shared by training and validation, and for features that "
                "give the label away.",
            ],
        ),
        _entry(
            "plateau", "curves", W,
            "Training and validation loss have both stopped falling",
            "Learning has reached a bottleneck: the step size is too large to settle "
            "into a better minimum, or the model has no capacity left to use.",
            [
                "Decay the learning rate (step, exponential or 1/t decay), or lower it by "
                "a factor of 3-10.",
                "Try a smaller batch size for more gradient noise.",
                "If loss is still high, increase model capacity.",
            ],
        ),
        _entry(
            "diverging", "curves", C,
            "Training and validation loss are both rising",
            "Updates are making the model worse: the learning rate is too high for this "
            "model and data, the architecture or hyperparameters are unsuitable, or the "
            "data holds corrupt samples.",
            [
                "Lower the learning rate by 10x and restart from the last good checkpoint.",
                "Add gradient clipping.",
                "Check the data for corrupt samples or labels; revisit the architecture.",
            ],
        ),
        _entry(
            "lr-too-high", "curves", W,
            "The learning rate looks too high",
            "The loss dropped quickly at first and then stopped at a high level, bouncing "
            "around it (or blew up): steps overshoot the minimum instead of settling in.",
            [
                "Lower the learning rate by 3-10x.",
                "Use a decay schedule so the step size shrinks as training goes on.",
                "Add warm-up or gradient clipping if the blow-up happens early.",
            ],
        ),
        _entry(
            "lr-too-low", "curves", W,
            "The learning rate looks too low",
            "The loss is falling slowly and almost along a straight line: each step moves "
            "the weights too little, so training would need far more steps.",
            [
                "Raise the learning rate by 3-10x (an LR range test finds a good value).",
                "Keep the new rate with a decay schedule so late training stays stable.",
            ],
        ),
        _entry(
            "barely-learning", "curves", W,
            "After many epochs the model is still close to a uniform guess",
            "The loss has come down only a little from ln C, the loss of guessing every "
            "class equally, and the accuracy is not far above chance: the model learns, "
            "but too slowly or too little to become useful. Usual causes: a learning rate "
            "too small to move the weights, inputs that say little about the labels (a "
            "preprocessing or alignment bug, or a genuinely hard task), too few samples "
            "for the model, or a network that passes a weak signal (frozen layers, heavy "
            "regularization, saturated units).",
            [
                "Raise the learning rate 3-10x for a few epochs (an LR range test finds "
                "the largest stable value).",
                "Check that the model can overfit a handful of samples (`lossdoctor check`, "
                "or train on 10 samples until the loss is near 0): if it cannot, the "
                "model, the loss or the labels are at fault.",
                "Check that inputs and labels line up after loading, shuffling and "
                "augmentation, and that the inputs are scaled to about unit range.",
                "Loosen regularization (weight decay, dropout) and unfreeze layers left "
                "frozen; if all of that holds, the inputs may carry little about the "
                "labels: more data or better features.",
            ],
        ),
        _entry(
            "generalization-gap", "curves", W,
            "Training accuracy is far above validation accuracy",
            "A large gap between training and validation accuracy means the model has "
            "memorized training samples; a small gap is normal.",
            [
                "Add regularization (weight decay, dropout, augmentation).",
                "Use more training data or a smaller model.",
                "Stop training at the epoch of best validation accuracy.",
            ],
        ),
        _entry(
            "loss-spike", "curves", W,
            "The loss jumped far above its running level",
            "A single large step sent the weights somewhere bad: a batch with extreme or "
            "mislabeled samples, a learning rate at the edge of stability, or an "
            "adaptive optimizer whose second-moment estimate became tiny.",
            [
                "Clip gradients (by global norm).",
                "Inspect the batches around the spike for abnormal samples or labels.",
                "Lower the learning rate or raise Adam's epsilon.",
            ],
        ),
        # --- numerics -----------------------------------------------------------------
        _entry(
            "nan-loss", "numerics", C,
            "The loss became NaN or infinite",
            "A computation overflowed or divided by zero: the learning rate is too high, "
            "a log or division met zero, the inputs hold NaN/Inf, or float16 ran out "
            "of range.",
            [
                "Lower the learning rate and add gradient clipping.",
                "Check inputs and labels for NaN/Inf.",
                "Use numerically stable losses (from logits) and add epsilons to logs "
                "and divisions.",
            ],
        ),
        _entry(
            "softmax-overflow", "numerics", C,
            "The loss is frozen at a numeric saturation constant",
            "The predicted probability of the true class became exactly zero and the loss "
            "sits at the clamp that guards log(0): the inputs to the softmax overflowed.",
            [
                "Shrink the initial weights (use a standard initializer).",
                "Lower the learning rate.",
                "If fine-tuning with BatchNorm, let it update its statistics on the new data.",
                "Look for abnormal samples or labels.",
            ],
        ),
        _entry(
            "skipped-steps", "numerics", W,
            "Optimizer steps were skipped: their gradients were not finite",
            "A step whose gradients hold Inf or NaN is dropped without an update. A "
            "mixed-precision loss scaler (torch.amp.GradScaler, Keras' "
            "LossScaleOptimizer) drops a step when the scaled gradients overflow float16 "
            "and halves its scale; a few drops at the start, while the scale comes down, "
            "and a rare one when it tries a larger scale are expected. Many drops leave "
            "the model barely trained: the gradients overflow float16 even at a small "
            "scale (an activation or gradient beyond 65504), the scaler is set to grow its "
            "scale too often, or the loop's own guard drops steps whose loss or gradients "
            "went bad.",
            [
                "Find where the overflow starts: run a few hundred steps in float32 with "
                "the Doctor attached and look for exploding-gradients or nan-origin.",
                "Keep the scaler's growth settings at their defaults (growth_factor 2, "
                "growth_interval 2000); a very large init_scale only adds drops at the "
                "start.",
                "Use bfloat16 autocast where the hardware has it: it has float32's range "
                "and needs no loss scaling.",
                "Lower the learning rate, and compute softmax, logs and the loss in "
                "float32 (cast custom ops with .float()).",
            ],
        ),
        _entry(
            "constant-loss", "numerics", C,
            "The loss does not change at all",
            "The weights are not changing, or the output does not depend on them: the "
            "learning rate is zero, gradients do not reach the parameters (detached graph, "
            "frozen layers), or every unit is dead.",
            [
                "Check that the optimizer holds the model's parameters and the learning "
                "rate is not zero.",
                "Check that gradients reach the weights (no detach, layers trainable).",
                "Check inputs and labels: are they right, and do they match?",
            ],
        ),
        # --- layers (live) ------------------------------------------------------------
        _entry(
            "update-ratio-high", "layers", W,
            "Updates are large relative to the weights",
            "Each step changes this layer's weights by a large fraction of their size "
            "(a healthy ratio of update norm to weight norm is around 1e-3). Steps that "
            "big overshoot: the loss bounces or blows up, and ReLU units can be knocked "
            "dead. The learning rate is too high for this layer, or its gradients are "
            "abnormally large.",
            [
                "Lower the learning rate (by 3-10x) until the ratio is near 1e-3.",
                "Add warm-up and gradient clipping if the ratio is high only early on.",
                "If one layer stands out, give it a smaller learning rate or normalize its "
                "inputs.",
            ],
        ),
        _entry(
            "update-ratio-low", "layers", W,
            "Updates are tiny relative to the weights",
            "Each step moves this layer's weights by a vanishing fraction of their size "
            "(far below the healthy ~1e-3), so it barely learns: the learning rate is "
            "too low, its gradients are vanishing, or it is effectively frozen.",
            [
                "Raise the learning rate (an LR range test finds a good value).",
                "If only early layers are slow, see whether their gradients vanish "
                "(activations, initialization, normalization).",
                "Check the layer is meant to train (not frozen by mistake).",
            ],
        ),
        _entry(
            "vanishing-gradients", "layers", W,
            "Gradients vanish toward the input",
            "The gradient reaching the first layers is orders of magnitude smaller than "
            "at the last ones, so the early layers hardly learn. Saturating activations "
            "(sigmoid, tanh) multiply the gradient by small derivatives layer after "
            "layer; deep stacks without normalization or skip connections make it worse.",
            [
                "Use ReLU-family activations in hidden layers.",
                "Add normalization (BatchNorm/LayerNorm) or residual connections.",
                "Use a fan-in scaled initializer (He for ReLU, Glorot for tanh).",
            ],
        ),
        _entry(
            "exploding-gradients", "layers", C,
            "Gradients explode",
            "Gradient norms grow by orders of magnitude, so single steps throw the "
            "weights far away; NaN usually follows. Typical causes are a learning rate "
            "too high, initial weights too large, unnormalized inputs, or deep/recurrent "
            "paths that multiply the gradient many times.",
            [
                "Clip gradients by global norm.",
                "Lower the learning rate.",
                "Standardize inputs; use a standard initializer; add normalization.",
            ],
        ),
        _entry(
            "no-gradient", "layers", W,
            "A layer receives no gradient: nothing connects its weights to the loss",
            "Every reading found this layer's gradient exactly zero while the "
            "layers around it had gradients, so the optimizer has nothing to move its "
            "weights with. The forward pass cuts the layer off from the loss: its output "
            "is detached (.detach(), .data, torch.no_grad(), tf.stop_gradient, a round "
            "trip through numpy or .item()), goes through an operation without a "
            "gradient (argmax, rounding, a cast to integers, a comparison), or is not "
            "used at all.",
            [
                "Follow the layer's output to the loss and remove what cuts the graph; "
                "for argmax or rounding use a differentiable stand-in (softmax, a "
                "straight-through estimator).",
                "Check it directly: after loss.backward() the layer's weight.grad should "
                "not be None (in Keras, tape.gradient should not return None for it).",
                "If the layer is meant to stay fixed, freeze it (requires_grad=False or "
                "trainable=False) or leave it out of the optimizer.",
            ],
        ),
        _entry(
            "dead-units", "layers", W,
            "Many ReLU units never activate",
            "A ReLU unit whose input is negative for every sample outputs zero and gets "
            "zero gradient, so it never recovers. Large negative biases, a learning rate "
            "high enough to push weights into that region, or badly scaled inputs "
            "kill units.",
            [
                "Lower the learning rate.",
                "Initialize biases at zero (or slightly positive) with a He initializer.",
                "Use LeakyReLU/GELU, or add normalization before the activation.",
            ],
        ),
        _entry(
            "saturated-activations", "layers", W,
            "tanh/sigmoid units are saturated",
            "Most of this layer's tanh/sigmoid units sit at their flat ends, where the "
            "derivative is nearly zero, so little gradient passes through. Inputs that "
            "are too large (unnormalized data, large weights) push them there.",
            [
                "Standardize the inputs and use Glorot initialization.",
                "Add normalization before the activation, or use ReLU-family units.",
                "Lower the learning rate if saturation grows during training.",
            ],
        ),
        _entry(
            "poor-initialization", "layers", W,
            "Activation scale collapses or explodes with depth",
            "At the start of training the spread of activations shrinks toward zero or "
            "grows layer after layer: the initial weights are not scaled to each layer's "
            "fan-in. Signals (and gradients) then fade or blow up before learning starts, "
            "so training is slow or unstable from the first step.",
            [
                "Use a fan-in scaled initializer: He for ReLU, Glorot for tanh/sigmoid.",
                "Add normalization layers.",
                "Check custom initialization code for a wrong scale.",
            ],
        ),
        _entry(
            "nan-origin", "layers", C,
            "Where NaN/Inf first appeared",
            "This layer is the first, in forward order (or, for gradients, nearest the "
            "output), whose output or gradient held NaN or Inf at the step named. The "
            "problem starts there: an overflow in its computation, a log/division/sqrt "
            "of zero or a negative number, weights that already blew up, or bad input "
            "reaching it.",
            [
                "Inspect the named layer's inputs, weights and any log/exp/division in it "
                "at that step.",
                "Lower the learning rate and clip gradients if weights grew before it.",
                "Add epsilons to logs and divisions; use numerically stable fused losses.",
            ],
        ),
        _entry(
            "frozen-batchnorm", "layers", W,
            "BatchNorm statistics frozen on data that differs",
            "BatchNorm layers run in inference mode with statistics from another data "
            "set while the new data's mean and variance differ: activations are "
            "mis-scaled, and logits can overflow.",
            [
                "Let BatchNorm update its statistics on the new data (train mode), or "
                "recompute them before fine-tuning.",
                "If they must stay frozen, normalize the new inputs like the original data.",
            ],
        ),
        # --- pre-flight ---------------------------------------------------------------
        _entry(
            "initial-loss-mismatch", "pre-flight", W,
            "The initial loss is not what an untrained model should give",
            "With small random weights and regularization off, a model is unsure of "
            "everything, so its first loss is predictable: about ln C for softmax "
            "cross-entropy over C classes, ln 2 for binary cross-entropy, about the "
            "targets' mean square for MSE. Far above it, the initial outputs are large "
            "(unscaled inputs, large initial weights, a summed loss); far below, the "
            "model already knows the labels or the loss is scaled down.",
            [
                "Standardize the inputs and use a standard initializer.",
                "Check the loss's reduction and what it expects (logits or probabilities).",
            ],
        ),
        _entry(
            "regularization-not-increasing-loss", "pre-flight", W,
            "Regularization is declared but does not raise the loss",
            "A weight penalty is positive, so the loss with it must be higher than "
            "without it. When it is not, the penalty never reaches the minimized loss: "
            "a regularizer attached after the layer was built, a custom training step "
            "that drops the model's extra losses, or a penalty over an empty list.",
            [
                "Declare regularizers when building the layers (or rebuild from config).",
                "Add the penalty terms to the loss in custom training steps.",
            ],
        ),
        _entry(
            "cannot-overfit-small-batch", "pre-flight", C,
            "The model cannot memorize a tiny subset",
            "Any working network memorizes a few dozen samples with regularization "
            "off. When a copy cannot, the implementation is wrong: gradients do not "
            "reach the weights (detached graph, frozen layers), the loss is unsafe "
            "(NaN), or the output ignores the input.",
            [
                "Check that gradients reach every layer you mean to train.",
                "Use the framework's built-in loss on logits.",
                "Fix the bug before tuning hyperparameters.",
            ],
        ),
        _entry(
            "gradient-check-failed", "pre-flight", C,
            "Analytic and numeric gradients disagree",
            "Backpropagation's gradient differs from the loss slope measured by "
            "central differences, so a hand-written gradient (custom autograd "
            "Function, tf.custom_gradient, custom loss) is wrong.",
            [
                "Fix or remove the hand-written gradient below the named parameter.",
                "Test the operation alone with torch.autograd.gradcheck or "
                "tf.test.compute_gradient.",
            ],
        ),
        _entry(
            "logits-probabilities-mismatch", "pre-flight", C,
            "Probabilities fed to a loss that expects logits (or the reverse)",
            "The output activation and the loss disagree: a softmax/sigmoid output "
            "into a loss that applies its own (from_logits=True, CrossEntropyLoss, "
            "BCEWithLogitsLoss) squashes twice and stalls learning; raw scores into a "
            "loss on probabilities are clipped or undefined.",
            [
                "Output logits and use the loss on logits; apply softmax only to predict.",
                "Or keep the activation and set the loss to expect probabilities.",
            ],
        ),
        _entry(
            "label-problem", "pre-flight", C,
            "The labels look wrong",
            "The labels cannot be right for this loss and output layer (out of range, "
            "wrong encoding, NaN, one class only), or they do not depend on the inputs "
            "(the model learns them no better than shuffled ones).",
            [
                "Check the label range and encoding against the output layer and loss.",
                "Check that inputs and labels stay aligned through shuffling and joins.",
            ],
        ),
        _entry(
            "input-problem", "pre-flight", C,
            "The inputs look wrong",
            "NaN/Inf in the inputs poisons every update; inputs far from unit scale "
            "saturate or starve the first layers; samples shared by training and "
            "validation make validation measure memory.",
            [
                "Remove or impute NaN/Inf samples.",
                "Standardize inputs with the training set's statistics.",
                "Deduplicate before splitting train and validation.",
            ],
        ),
        _entry(
            "outlier-samples", "pre-flight", W,
            "Some samples have extreme loss",
            "A few samples cost far more than the rest: corrupted inputs or wrong "
            "labels. Each batch holding one is dominated by it.",
            [
                "Inspect the listed samples and their labels; fix or drop bad ones.",
                "Clip gradients if they are genuine rare cases.",
            ],
        ),
        _entry(
            "check-skipped", "pre-flight", INFO,
            "A pre-flight check could not run",
            "The check needs something that was not given or does not apply to this "
            "model (a loss, regularization, enough layers or samples); it says which.",
            ["Give what the check names (e.g. loss=...) to run it."],
        ),
        # --- search / self ------------------------------------------------------------
        _entry(
            "search-best-at-boundary", "search", W,
            "The best value sits at the edge of the search range",
            "When the best trial's value lies at one end of the range searched, the true "
            "optimum is probably beyond that end: the range was chosen wrong.",
            ["Widen the range past that edge (in log space for scale parameters) and "
             "search again."],
        ),
        _entry(
            "monitor-error", "self", INFO,
            "A signal could not be computed; training went on",
            "lossdoctor failed to compute one of its signals (the error is in the "
            "evidence). The signal is skipped from then on; training and the other "
            "signals are unaffected.",
            ["Report the error with the evidence to lossdoctor's issue tracker."],
        ),
    ]
}

REGIMES = (
    "still-learning",
    "converged",
    "overfitting",
    "data-problem",
    "plateau",
    "diverging",
    "unknown",
)


def make_finding(
    code: str,
    *,
    step: int | None = None,
    epoch: int | None = None,
    layer: str | None = None,
    evidence: Evidence | None = None,
    title: str | None = None,
    explanation: str | None = None,
    fixes: Sequence[str] | None = None,
    severity: Severity | None = None,
) -> Finding:
    """A finding for `code` with the catalog's defaults for whatever is not given."""
    entry = CATALOG[code]
    return Finding(
        code=code,
        severity=severity or entry.severity,
        title=title or entry.title,
        step=step,
        epoch=epoch,
        layer=layer,
        evidence=dict(evidence or {}),
        explanation=explanation or entry.explanation,
        fixes=tuple(fixes) if fixes is not None else entry.fixes,
    )


def worst_first(findings: Sequence[Finding]) -> list[Finding]:
    """Most severe first; within a severity, earliest first (stable otherwise)."""
    big = 2**62
    return sorted(
        findings,
        key=lambda f: (-f.severity.rank, f.step if f.step is not None else big),
    )
