"""Custom Keras layers that apply an activation in their `call` (a layer with weights
of its own, a weightless one), and a model of them with a faulty twin: the sigmoids
saturated and the ReLU layer dead from the first step. Imports Keras only (the torch
backend's tests use it too)."""

from __future__ import annotations

from typing import Any

import keras

WIDTH = 32


class DenseThen(keras.layers.Layer):  # type: ignore[misc]
    """Weights of its own and an activation applied in `call`."""

    def __init__(self, activation: Any, kernel: Any = "glorot_uniform", bias: Any = "zeros",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.activation_fn, self.kernel_init, self.bias_init = activation, kernel, bias

    def build(self, input_shape: Any) -> None:
        self.kernel = self.add_weight(shape=(input_shape[-1], WIDTH),
                                      initializer=self.kernel_init)
        self.bias = self.add_weight(shape=(WIDTH,), initializer=self.bias_init)

    def call(self, x: Any) -> Any:
        return self.activation_fn(keras.ops.matmul(x, self.kernel) + self.bias)


class Sigmoid(keras.layers.Layer):  # type: ignore[misc]
    """A weightless custom activation layer."""

    def call(self, x: Any) -> Any:
        return keras.ops.sigmoid(x)


def model(faulty: bool) -> keras.Model:
    # Faulty: pre-activations of std ~30 pin the sigmoids at 0 or 1, and a bias of -50
    # keeps every unit of the ReLU layer off for every input from the first step.
    big = keras.initializers.RandomNormal(stddev=5.0, seed=1)
    return keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(WIDTH, name="dense_0"),
        DenseThen(keras.ops.sigmoid, kernel=big if faulty else "glorot_uniform",
                  name="custom_sigmoid"),
        DenseThen(keras.ops.relu, bias=keras.initializers.Constant(-50.0) if faulty
                  else "zeros", name="custom_relu"),
        keras.layers.Dropout(0.1, name="dropout"),
        keras.layers.Dense(WIDTH, name="dense_1"),
        Sigmoid(name="act_sigmoid"),
        keras.layers.Dense(10, name="logits"),
    ])
