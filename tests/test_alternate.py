"""The fast AlternateUpdate (cached prefix, compiled per-layer steps, suffix-only task loss) does
exactly what the implementation before it did (``tests/alternate_reference.py``): same weights
bit for bit and the same reports, on a chain and on a network with a skip connection."""

import numpy as np
import pytest

import keras_wreg as kw
import larq as lq
from keras_wreg._compat import keras, tf

from alternate_reference import ReferenceAlternateUpdate


def _chain():
    recipe = kw.recipes.get("hwgq")
    model = recipe.build_model("vgg_small_hwgq", (8, 8, 3), 10, recipe.params(), width=2)
    recipe.compile(model, recipe.params(), total_steps=10)
    return model


def _skip():
    """Binary convolutions around a residual add: the later layers' inputs need the skip
    branch, so the cached prefix falls back to the model's input there."""
    inputs = keras.Input((8, 8, 3))
    kwargs = dict(kernel_quantizer=kw.ScaledSign(), input_quantizer=kw.HWGQ(2),
                  padding="same", use_bias=False)
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    y = lq.layers.QuantConv2D(4, 3, **kwargs)(x)
    y = keras.layers.BatchNormalization()(y)
    y = lq.layers.QuantConv2D(4, 3, **kwargs)(y)
    x = keras.layers.Add()([x, keras.layers.BatchNormalization()(y)])
    x = lq.layers.QuantConv2D(4, 3, **kwargs)(x)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.BatchNormalization()(x))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


_WEIGHTS = {}


def _trained(build):
    """A model of ``build`` with weights trained once per builder and copied into every fresh
    copy, so both implementations start from the same bits whatever the machine's threads do."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 10, 48)
    keras.utils.set_random_seed(3)
    model = build()
    if build not in _WEIGHTS:
        model.fit(x, y, epochs=1, batch_size=16, verbose=0)
        _WEIGHTS[build] = model.get_weights()
    model.set_weights(_WEIGHTS[build])
    return model, tf.data.Dataset.from_tensor_slices((x, y)).batch(16)


def _numbers(report):
    """The report without wall time and without names (each model gets its own layer names)."""
    out = {k: v for k, v in report.items() if k not in ("seconds", "action", "layer")}
    out["bn_recalibrated"] = len(out.get("bn_recalibrated", []))
    return out


@pytest.mark.parametrize("build", [_chain, _skip], ids=["chain", "skip"])
@pytest.mark.parametrize("variant", ["A", "B"])
def test_fast_update_equals_the_reference_bit_for_bit(build, variant):
    results = []
    for impl in (ReferenceAlternateUpdate, kw.AlternateUpdate):
        model, data = _trained(build)
        reports = impl(variant=variant, iterations=2, steps=3, num_batches=3,
                       learning_rate=1e-2).run(model, data)
        results.append((model.get_weights(), [_numbers(r) for r in reports]))
    (ref_w, ref_r), (new_w, new_r) = results
    assert len(ref_w) == len(new_w)
    for a, b in zip(ref_w, new_w):
        np.testing.assert_array_equal(a, b)
    assert new_r == ref_r
    assert any(r["sign_flip_fraction"] > 0 for r in new_r)  # the update did something


def test_weight_steps_restart_adam_every_call():
    """Each call of the compiled steps starts from a fresh Adam, as a new optimizer would."""
    model, data = _trained(_chain)
    layer = kw.alternate.binary_layers(model)[1]
    xs = kw.AlternateUpdate.layer_inputs(model, layer, [x for x, _ in data.take(2)])
    w0 = tf.identity(kw.alternate.latent_kernel(layer))
    ys = [kw.alternate.linear(layer, x, w0) for x in xs]
    ref = ReferenceAlternateUpdate(steps=4, learning_rate=1e-2)
    new = kw.AlternateUpdate(steps=4, learning_rate=1e-2)
    kernel = kw.alternate.latent_kernel(layer)
    start = kernel.numpy()
    for au in (ref, new):
        kernel.assign(start)
        for _ in range(2):
            au._weight_steps(layer, xs, ys)
        au.result = kernel.numpy()
    np.testing.assert_array_equal(ref.result, new.result)
    assert np.any(ref.result != start)
