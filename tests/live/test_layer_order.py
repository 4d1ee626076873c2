"""run.json's layers put in the order the forward pass called them."""

from __future__ import annotations

from lossdoctor.live.layer_order import in_call_order


def _names(layers: list) -> list[str]:
    return [x["name"] for x in layers]


def test_head_registered_first_moves_behind_the_body() -> None:
    layers = [{"name": "head"}, {"name": "squash"}, {"name": "body.0"}, {"name": "body.1"}]
    ordered = in_call_order(layers, ["body.0", "body.1", "head", "squash"])
    assert _names(ordered) == ["body.0", "body.1", "head", "squash"]


def test_layers_never_called_keep_their_places() -> None:
    layers = [{"name": "b"}, {"name": "unused"}, {"name": "a"}, {"name": "owner"}]
    assert _names(in_call_order(layers, ["a", "b"])) == ["a", "unused", "b", "owner"]


def test_a_function_entry_moves_with_its_layer() -> None:
    layers = [{"name": "fc2"}, {"name": "fc1"},
              {"name": "sigmoid(fc1)", "type": "function"}, {"name": "fc3"}]
    ordered = in_call_order(layers, ["fc1", "fc2", "fc3"])
    assert _names(ordered) == ["fc1", "sigmoid(fc1)", "fc2", "fc3"]


def test_registration_order_that_is_call_order_is_kept() -> None:
    layers = [{"name": "0"}, {"name": "1"}, {"name": "2"}]
    assert in_call_order(layers, ["0", "1", "2"]) == layers
    assert in_call_order(layers, []) == layers
