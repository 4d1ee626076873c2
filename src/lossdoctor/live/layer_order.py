"""run.json lists layers in depth order, and the layer rules read depth from it (the
first and last layer's gradients, the output layers a saturated sigmoid is expected
at). PyTorch only offers registration order, which is not depth order when a module
registers its head before its body; the forward pass shows the real order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Layer = Mapping[str, Any]


def in_call_order(layers: Sequence[Layer], called: Sequence[str]) -> list[Layer]:
    """`layers` with those named in `called` put in that order, in the places they
    held; the others (never called in training: unused branches, modules holding
    weights for their children) stay where they were. An entry of type "function" (a
    sigmoid applied to a layer's output) moves with the layer before it."""
    rank = {name: k for k, name in enumerate(called)}
    groups: list[list[Layer]] = []
    for layer in layers:
        if layer.get("type") == "function" and groups:
            groups[-1].append(layer)
        else:
            groups.append([layer])
    places = [k for k, group in enumerate(groups) if group[0].get("name") in rank]
    moved = sorted((groups[k] for k in places), key=lambda group: rank[group[0]["name"]])
    for k, group in zip(places, moved, strict=True):
        groups[k] = group
    return [layer for group in groups for layer in group]
