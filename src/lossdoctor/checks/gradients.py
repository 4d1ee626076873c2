"""`gradient-check-failed`: analytic gradients against central differences.

On a float64 copy of the model (float32 when a float64 copy cannot be made; the
evidence says which), a sample of parameter entries is nudged by +-h and the
numeric slope (L(w+h) - L(w-h)) / 2h is compared with the analytic gradient.
A hand-written backward that is wrong by a factor or a sign gives a relative error
near 1; a correct one gives 1e-7 or less in float64 (kinks of ReLU aside, which a
tiny h rarely crosses).

Relative error of one parameter tensor = |a - n| / max(|a| + |n|, floor), over the
sampled entries as vectors, so tiny gradients do not blow it up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lossdoctor.checks._probe import GradProblem
from lossdoctor.findings import Finding, make_finding

STEP = {"float64": 1e-6, "float32": 1e-2}
TOLERANCE = {"float64": 1e-4, "float32": 5e-2}


@dataclass(frozen=True)
class ParamCheck:
    name: str
    entries: int
    analytic: np.ndarray
    numeric: np.ndarray

    @property
    def relative_error(self) -> float:
        diff = float(np.linalg.norm(self.analytic - self.numeric))
        scale = float(np.linalg.norm(self.analytic) + np.linalg.norm(self.numeric))
        return diff / max(scale, 1e-10)


def run_gradient_check(
    problem: GradProblem, *, max_entries: int = 48, per_param: int = 6, seed: int = 0
) -> list[ParamCheck]:
    rng = np.random.default_rng(seed)
    h = STEP.get(problem.dtype, 1e-6)
    analytic = problem.analytic()
    sizes = [int(np.prod(s)) if len(s) else 1 for s in problem.shapes]
    budget = max(1, max_entries // max(1, len(sizes)))
    take = max(1, min(per_param, budget))
    results: list[ParamCheck] = []
    for i, (name, size) in enumerate(zip(problem.names, sizes, strict=True)):
        if size == 0:
            continue
        idx = rng.choice(size, size=min(take, size), replace=False)
        a = np.asarray(analytic[i], dtype=np.float64).reshape(-1)[idx]
        n = np.empty(len(idx))
        for k, j in enumerate(idx):
            w = problem.value(i, int(j))
            up = problem.loss_at(i, int(j), w + h)
            down = problem.loss_at(i, int(j), w - h)
            n[k] = (up - down) / (2 * h)
        results.append(ParamCheck(name, len(idx), a, n))
    return results


def verdict(checks: list[ParamCheck], dtype: str) -> Finding | None:
    tol = TOLERANCE.get(dtype, 1e-4)
    bad = [c for c in checks if not c.relative_error <= tol]
    if not bad:
        return None
    worst = max(bad, key=lambda c: c.relative_error if np.isfinite(c.relative_error) else 1e300)
    # Gradients flow from the output back; the failing parameter nearest the output
    # sits right below the faulty operation.
    nearest_output = bad[-1]
    ratio = _ratio(worst)
    evidence: dict[str, float | int | str] = {
        "dtype": dtype,
        "checked_parameters": len(checks),
        "failing_parameters": len(bad),
        "worst_parameter": worst.name,
        "worst_relative_error": worst.relative_error,
        "tolerance": tol,
        "nearest_output_failing": nearest_output.name,
        "failing": ", ".join(c.name for c in bad[:8]),
    }
    if ratio is not None:
        evidence["analytic_over_numeric"] = ratio
    if all(not np.any(c.analytic) for c in bad):
        return _cut_off(bad, nearest_output, evidence, dtype)
    return make_finding(
        "gradient-check-failed",
        layer=nearest_output.name,
        title=f"Analytic gradients disagree with numeric ones for {len(bad)} of "
        f"{len(checks)} parameters (worst relative error {worst.relative_error:.3g} at "
        f"{worst.name})",
        evidence=evidence,
        explanation="Backpropagation returned gradients that do not match the slope of "
        f"the loss measured by central differences in {dtype} (tolerance {tol:g}). "
        "Built-in operations are right, so a hand-written gradient is wrong: a custom "
        "autograd Function's backward, a tf.custom_gradient, or a loss with its own "
        "gradient. The wrong operation lies between the failing parameter nearest the "
        f"output ({nearest_output.name}) and the output"
        + (f"; analytic/numeric is about {ratio:.3g}" if ratio is not None else "")
        + ".",
        fixes=(
            f"Check the hand-written backward of the operation just after "
            f"{nearest_output.name}, and test it alone with torch.autograd.gradcheck or "
            "tf.test.compute_gradient.",
            "Replace the custom gradient with the framework's automatic one if it was "
            "only an optimization.",
        ),
    )


def _cut_off(bad: list[ParamCheck], nearest_output: ParamCheck,
             evidence: dict[str, float | int | str], dtype: str) -> Finding:
    """Backpropagation gave exactly zero to parameters the loss does depend on: the
    graph is cut, which is seldom a wrong custom backward."""
    evidence["analytic_all_zero"] = "yes"
    return make_finding(
        "gradient-check-failed",
        layer=nearest_output.name,
        title=f"Backpropagation gives no gradient to {len(bad)} parameters the loss "
        f"depends on (from {nearest_output.name} back)",
        evidence=evidence,
        explanation="Changing these parameters changes the loss (central differences in "
        f"{dtype}), yet backpropagation returns exactly zero for them: the graph "
        f"between {nearest_output.name} and the output is cut. Something there stops "
        "the gradient on purpose or by accident: tf.stop_gradient, .detach(), .data, "
        "torch.no_grad(), a round trip through numpy or .item(), or a custom gradient "
        "that returns zero. Training would never change these weights.",
        fixes=(
            f"Follow the output of {nearest_output.name}'s layer to the loss and remove "
            "what stops the gradient.",
            "If the cut is meant (a frozen feature extractor), freeze those layers "
            "(trainable=False or requires_grad=False) so nothing expects them to learn.",
        ),
    )


def _ratio(check: ParamCheck) -> float | None:
    n = float(np.dot(check.numeric, check.numeric))
    if n <= 0 or not np.isfinite(n):
        return None
    return float(np.dot(check.analytic, check.numeric) / n)
