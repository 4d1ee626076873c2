"""`regularization-not-increasing-loss`: a declared penalty must show up in the loss.

An L2/L1 penalty is positive, so the loss with it on must be higher than with it off.
When it is not, the regularization the user believes in is not applied: in Keras a
regularizer set on a layer after it was built (`layer.kernel_regularizer = ...`)
creates no loss term, a custom `train_step`/`compute_loss` may drop `model.losses`;
in PyTorch a hand-written penalty may sum over an exhausted generator.

PyTorch's `weight_decay` is applied inside `optimizer.step()` and never appears in
the loss value; for it the check instead takes one optimizer step with zero gradients
on a copy and requires the weights to shrink.
"""

from __future__ import annotations

from lossdoctor.checks._probe import RegularizationProbe
from lossdoctor.findings import Finding, make_finding

# The penalty must lift the loss by more than float32 round-off of the loss itself.
MIN_RELATIVE_INCREASE = 1e-6


def verdict(probe: RegularizationProbe) -> Finding | None:
    declared = ", ".join(probe.declared) if probe.declared else "none"
    if probe.loss_on is not None:
        increase = probe.loss_on - probe.loss_off
        if increase > MIN_RELATIVE_INCREASE * max(abs(probe.loss_off), 1e-12):
            return None
        return make_finding(
            "regularization-not-increasing-loss",
            title=f"Regularization is declared ({declared}) but the loss does not go "
            f"up with it: {probe.loss_off:.6g} off, {probe.loss_on:.6g} on",
            evidence={
                "loss_without": probe.loss_off,
                "loss_with": probe.loss_on,
                "increase": increase,
                "declared": declared,
            },
            explanation="A weight penalty is positive, so adding it must raise the loss. "
            "It did not, so the penalty never reaches the loss that is minimized: the "
            "regularizer was attached after the layer was built (Keras then creates no "
            "loss term), a custom train step or loss ignores the model's extra losses, "
            "or the penalty is computed over an empty or exhausted parameter list.",
            fixes=(
                "Declare regularizers when the layers are created, or rebuild the model "
                "from its config after setting them.",
                "In a custom training step, add sum(model.losses) (Keras) or the "
                "penalty term (PyTorch) to the loss before taking gradients.",
                "Compute a PyTorch penalty over list(model.parameters()), not over a "
                "generator that was already consumed.",
            ),
        )
    if probe.decay_active is False:
        return make_finding(
            "regularization-not-increasing-loss",
            title=f"The optimizer declares weight decay ({declared}) but a step does "
            "not shrink the weights",
            evidence={"declared": declared},
            explanation="PyTorch applies weight_decay inside optimizer.step(), not in "
            "the loss. A step with zero gradients should pull every decayed weight "
            "toward zero; here it did not, so the decay does not act on this model's "
            "parameters (the optimizer holds other tensors, or the groups that hold "
            "the weights have weight_decay=0).",
            fixes=(
                "Build the optimizer from this model's parameters, after the model is "
                "final (moved to its device, layers replaced).",
                "Check the weight_decay of every parameter group.",
            ),
        )
    return None
