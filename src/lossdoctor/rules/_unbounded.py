"""A loss that falls without a floor: far below zero, and no slower at the end than at
the start. Cross-entropy and squared error cannot go below zero, so such a run is not
fitting the data but running down an objective with no bottom (binary cross-entropy
on targets outside [0, 1], a flipped sign, a collapsing variance, an unconstrained
critic). A loss that converges to a negative value (a log-likelihood, a cosine
similarity) slows down on its way there."""

from __future__ import annotations

from lossdoctor.rules._stats import Binned, Trend

# The loss ended this many times further below zero than where it started ...
UNBOUNDED_GROWTH = 100.0
# ... and fell in the second half of the run at least this share of what it fell in
# the first (a steady fall is 1; one nearing its floor, a small fraction).
NO_FLOOR_HALVES = 0.75
MIN_POINTS = 6  # binned points, to tell the halves of the run apart


def unbounded_fall(tb: Binned, late: Trend) -> dict[str, float] | None:
    """Evidence when the binned training loss `tb` ended below zero, at least
    `UNBOUNDED_GROWTH` times as far from zero as its first point, fell about as much in
    the second half of the run as in the first (`NO_FLOOR_HALVES`: no sign of a floor),
    and is still falling late (`late`); None otherwise."""
    n = tb.y.size
    if n < MIN_POINTS or late.direction != "falling":
        return None
    first, mid, last = float(tb.y[0]), float(tb.y[n // 2]), float(tb.y[-1])
    if last >= 0 or -last < UNBOUNDED_GROWTH * max(abs(first), 1e-12):
        return None
    first_half, second_half = first - mid, mid - last
    if second_half < NO_FLOOR_HALVES * first_half:
        return None
    return {"first_loss": first, "middle_loss": mid, "last_loss": last,
            "growth": -last / max(abs(first), 1e-12),
            "second_half_drop_over_first": second_half / first_half if first_half > 0
            else float("inf")}


TITLE = ("The loss fell without a floor: from {first:.4g} to {last:.4g}, and about as fast "
         "in the second half of the run as in the first")

EXPLANATION = (
    "Cross-entropy and squared-error losses cannot go below zero. This one keeps "
    "falling further and further below it, at an undiminished pace, so the optimizer is "
    "running down an objective with no bottom instead of fitting the data: the falling "
    "loss means nothing. Usual causes: binary cross-entropy on targets outside [0, 1] "
    "(class indices or unscaled values instead of 0/1 indicators), a hand-written loss "
    "with its sign flipped (maximizing a likelihood), a predicted variance or scale "
    "shrinking toward zero in a likelihood loss, or a GAN critic without a Lipschitz "
    "constraint."
)

FIXES = (
    "Check the targets against the loss: binary cross-entropy needs targets in [0, 1] "
    "(one 0/1 indicator per output); class indices need a (sparse) categorical "
    "cross-entropy.",
    "Check the sign of any hand-written loss: minimize the negative log-likelihood.",
    "If the model predicts a variance or scale, keep it away from zero (softplus plus a "
    "small floor).",
    "For a GAN critic, add a gradient penalty or spectral normalization.",
)
