"""`cannot-overfit-small-batch`: a copy of the model, regularization off, must memorize
a few dozen samples.

Any network with enough parameters can memorize 16-64 samples. When a copy trained
with Adam on one fixed batch does not reach 100% training accuracy and a loss near
zero within the budget, the fault is in the implementation, not in the
hyperparameters. How it failed points at the bug:

* `error`: no gradient reaches the parameters at all (detached graph, frozen model);
* `nan`: the loss became NaN/Inf;
* `frozen`: the loss did not move (learning rate zero, dead network);
* `stuck-at-chance`: the loss stayed at the chance level (ln C): the output ignores
  the input, or the labels are not what the loss expects;
* `too-slow`: the loss falls but too slowly (a part of the network does not learn,
  or the capacity is far too small).
"""

from __future__ import annotations

import math

from lossdoctor.checks._probe import TrainTrace
from lossdoctor.findings import Finding, make_finding

# Memorized: classification at 100% training accuracy with loss below this, or a
# regression loss below REGRESSION_FRACTION of where it started.
CLASSIFICATION_LOSS = 0.05
REGRESSION_FRACTION = 0.01


def success_threshold(initial: float, classification: bool) -> float:
    return CLASSIFICATION_LOSS if classification else REGRESSION_FRACTION * initial


def how_it_failed(trace: TrainTrace, chance: float | None) -> str:
    if trace.error is not None:
        return "error"
    if any(not math.isfinite(v) for v in trace.losses):
        return "nan"
    first, last = trace.losses[0], trace.losses[-1]
    if abs(first - last) <= 1e-6 * max(abs(first), 1e-12):
        return "frozen"
    if chance is not None and abs(last - chance) <= 0.1 * chance:
        return "stuck-at-chance"
    return "too-slow"


def verdict(
    trace: TrainTrace,
    *,
    samples: int,
    steps: int,
    lr: float,
    accuracy: float | None,
    chance: float | None,
) -> Finding | None:
    classification = accuracy is not None
    initial = trace.losses[0] if trace.losses else float("nan")
    threshold = success_threshold(initial, classification)
    if trace.error is None and trace.losses and math.isfinite(trace.final):
        memorized = trace.final <= threshold and (accuracy is None or accuracy >= 1.0)
        if memorized:
            return None
    mode = how_it_failed(trace, chance)
    evidence: dict[str, float | int | str] = {
        "samples": samples,
        "steps": len(trace.losses) - 1 if trace.losses else 0,
        "budget_steps": steps,
        "lr": lr,
        "failure": mode,
        "trainable_parameters": trace.trainable,
    }
    if trace.losses:
        evidence["first_loss"] = initial
        evidence["final_loss"] = trace.final
    if accuracy is not None:
        evidence["final_accuracy"] = accuracy
    head = f"A copy of the model could not memorize {samples} samples"
    common_tail = (
        "Train on the same small batch yourself with regularization off and watch the "
        "loss; fix the bug before tuning anything else.",
    )
    if mode == "error":
        evidence["error"] = trace.error or ""
        return make_finding(
            "cannot-overfit-small-batch",
            title=f"{head}: training could not even take a step",
            evidence=evidence,
            explanation=f"Training stopped at the first step with: {trace.error}. No "
            "gradient reaches the parameters: the forward pass leaves the autograd "
            "graph (.detach(), .item(), .numpy(), torch.no_grad, a tf.stop_gradient) "
            "or every layer is frozen (trainable=False / requires_grad=False).",
            fixes=(
                "Keep the forward pass in framework ops from input to loss; remove "
                "detach/numpy round trips.",
                "Check that the layers you mean to train are trainable.",
                *common_tail,
            ),
        )
    if mode == "nan":
        first_bad = next(i for i, v in enumerate(trace.losses) if not math.isfinite(v))
        evidence["nan_at_step"] = first_bad
        return make_finding(
            "cannot-overfit-small-batch",
            step=first_bad,
            title=f"{head}: the loss became NaN/Inf at step {first_bad}",
            evidence=evidence,
            explanation=f"With Adam at lr {lr:g} on a single batch the loss should fall "
            "smoothly. It became NaN/Inf instead, so a computation in the model or the "
            "loss is numerically unsafe (log of zero, division by a small number, "
            "exp overflow) or the inputs hold NaN/Inf.",
            fixes=(
                "Compute the loss from logits with the framework's built-in loss.",
                "Check the inputs and labels for NaN/Inf.",
                "Add epsilons to hand-written logs, divisions and square roots.",
            ),
        )
    if mode == "frozen":
        return make_finding(
            "cannot-overfit-small-batch",
            title=f"{head}: the loss did not change at all in {evidence['steps']} steps "
            f"(stayed at {trace.final:.6g})",
            evidence=evidence,
            explanation="Steps were taken but the loss did not move, so the updated "
            "weights do not affect the output: the trainable layers do not feed the "
            "output, every unit is dead, or the gradients are exactly zero.",
            fixes=(
                "Check that gradients reach each layer (print their norms).",
                "Check that the trainable weights are the ones used in forward.",
                *common_tail,
            ),
        )
    if mode == "stuck-at-chance":
        return make_finding(
            "cannot-overfit-small-batch",
            title=f"{head}: the loss stayed at the chance level {chance:.4g} "
            f"({trace.final:.4g} after {evidence['steps']} steps)",
            evidence=evidence,
            explanation="The loss did not leave the value of a uniform prediction "
            "(ln C), so the output does not depend on the input in a learnable way: "
            "the input is lost on the way (zeroed, detached, overwritten), the layers "
            "that see it are frozen, or the labels do not match what the loss expects.",
            fixes=(
                "Check that the input reaches the output (feed two different samples "
                "and compare outputs).",
                "Check which parameters receive a gradient.",
                *common_tail,
            ),
        )
    acc_text = f", accuracy {accuracy:.0%}" if accuracy is not None else ""
    return make_finding(
        "cannot-overfit-small-batch",
        title=f"{head}: loss {initial:.4g} -> {trace.final:.4g}{acc_text} after "
        f"{evidence['steps']} steps (needed <= {threshold:.3g})",
        evidence=evidence,
        explanation="The loss falls, but far too slowly to memorize a handful of "
        "samples, which any working network of this size does easily. Part of the "
        "network may not be learning (frozen or detached layers), the capacity may be "
        "tiny (a bottleneck of 1-2 units), or the labels may not match the loss.",
        fixes=(
            "Check which layers' weights change during training.",
            "Look for a bottleneck layer or an activation that squashes everything.",
            *common_tail,
        ),
    )
