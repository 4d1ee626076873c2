"""`poor-initialization`: activation scale collapsing or exploding with depth at init.

The standard deviation of every weighted layer's output is measured on a sample with
the initial weights. A good initializer (He for ReLU, Glorot for tanh) keeps it
within a small factor from the first layer to the last; scales at the deepest layer
below COLLAPSE x or above EXPLODE x the first layer's mean the signal is dying out or
blowing up, and the gradients do the same on the way back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from lossdoctor.findings import Finding, make_finding

COLLAPSE = 1e-2
EXPLODE = 1e2
MIN_LAYERS = 3


def verdict(scales: Sequence[tuple[str, float]]) -> Finding | None:
    usable = [(n, s) for n, s in scales if math.isfinite(s)]
    if len(usable) < MIN_LAYERS:
        return None
    first_name, first = usable[0]
    if first <= 0:
        return None
    ratios = [(n, s / first) for n, s in usable]
    last_name, last_ratio = ratios[-1]
    collapsed = next(((n, r) for n, r in ratios if r < COLLAPSE), None)
    exploded = next(((n, r) for n, r in ratios if r > EXPLODE), None)
    hit = collapsed or exploded
    if hit is None:
        return None
    name, ratio = hit
    trend = "collapses" if collapsed else "explodes"
    profile = ", ".join(f"{n}={s:.3g}" for n, s in usable[:10])
    return make_finding(
        "poor-initialization",
        layer=name,
        title=f"At initialization the activation scale {trend} with depth: "
        f"{first:.3g} at {first_name}, {usable[-1][1]:.3g} at {last_name}",
        evidence={
            "layers": len(usable),
            "first_layer_std": first,
            "last_layer_std": usable[-1][1],
            "ratio_at_layer": ratio,
            "layer": name,
            "profile": profile,
        },
        explanation=f"Each layer scales its input by a factor set by the initial "
        f"weights. Here the output std at {name} is {ratio:.3g}x that of the first "
        "layer, so the signal "
        + ("fades to nothing before the output and gradients vanish on the way back: "
           "the weights were initialized too small for the layer width."
           if collapsed else
           "grows with every layer, saturating units and producing huge gradients: the "
           "weights were initialized too large for the layer width.")
        + f" The deepest layer ends at {last_ratio:.3g}x.",
        fixes=(
            "Use a fan-in scaled initializer: He (kaiming) for ReLU-family units, "
            "Glorot (xavier) for tanh/sigmoid.",
            "Remove custom weight scaling in the initialization code.",
            "Add normalization layers (BatchNorm/LayerNorm) in deep stacks.",
        ),
    )
