"""Shared by the optimizer tests: a one-QuantConv2D model and a seeded batch for it."""

import numpy as np

from keras_wreg._compat import keras, lq


def small_model(seed=0, init=2.0, regularizer=None, clip=None):
    """``QuantConv2D(4, 3, ste_sign) → BN → Flatten → Dense(3, softmax)`` on 6×6×1 inputs,
    latent kernel drawn from U(−init, init) with ``seed``."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6, 6, 1))
    x = lq.layers.QuantConv2D(
        4, 3, kernel_quantizer="ste_sign", use_bias=True, kernel_regularizer=regularizer,
        kernel_constraint=lq.constraints.WeightClip(clip) if clip else None,
        kernel_initializer=keras.initializers.RandomUniform(-init, init))(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def batch(seed=0, n=16):
    """``n`` standard-normal 6×6×1 inputs and labels in {0, 1, 2}."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6, 6, 1)).astype("float32"), rng.integers(0, 3, n)
