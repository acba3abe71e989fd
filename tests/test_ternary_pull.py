"""Issue 16, seed 003: TernaryPull, the decoupled proximal pull of ternary latent weights."""

import numpy as np
import pytest

import keras_wreg as kw
from keras_wreg import recipes
from keras_wreg._compat import keras, lq, tf
from keras_wreg.callbacks import TernaryPull
from keras_wreg.callbacks.ternary_pull import _pull
from keras_wreg.schedules import Ramp

LR = 0.05


def _model(quantizer, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6, 6, 1))
    x = lq.layers.QuantConv2D(6, 3, kernel_quantizer=quantizer, use_bias=False,
                              kernel_initializer=keras.initializers.RandomNormal(0, 0.1))(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(LR), loss="sparse_categorical_crossentropy")
    return model


def _data(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6, 6, 1)).astype("float32"), rng.integers(0, 3, n)


def _latent(model):
    return np.asarray(model.layers[1].kernel.numpy(), np.float64)


def _projection(w, threshold):
    t = np.sign(w) * (np.abs(w) > threshold)
    alpha = np.abs(w[t != 0]).mean()
    return alpha * t


QUANTIZERS = {
    "ste_tern_twn": (lambda: lq.quantizers.SteTern(ternary_weight_networks=True),
                     lambda w: 0.7 * np.abs(w).mean()),
    "ste_tern_fixed": (lambda: lq.quantizers.SteTern(threshold_value=0.08),
                       lambda w: 0.08),
    "rescaled_sigmoid": (lambda: kw.RescaledSigmoidTernary(delta=0.5),
                         lambda w: 0.5 * np.abs(w).mean()),
}


@pytest.mark.parametrize("name", sorted(QUANTIZERS))
def test_one_step_is_the_closed_form_proximal_step(name):
    """After the optimizer's step w', the pull gives w' - a/(1+a) (w' - alpha t(w')) with
    a = 2 lr lambda and the quantizer's own threshold rule."""
    make, threshold = QUANTIZERS[name]
    x, y = _data()
    plain = _model(make())
    plain.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    w = _latent(plain)
    pulled = _model(make())
    pulled.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False,
               callbacks=[TernaryPull(3.0)])
    a = 2 * LR * 3.0
    expect = w - a / (1 + a) * (w - _projection(w, threshold(w)))
    np.testing.assert_allclose(_latent(pulled), expect, rtol=0, atol=2e-6)
    assert np.abs(_latent(pulled) - w).max() > 1e-3  # the pull did move the weights


def test_projection_is_a_fixed_point_and_no_nan_on_zero_kernels():
    w = tf.constant([[-0.3, 0.0], [0.3, 0.3]])
    out = _pull(w, tf.constant(0.5), tf.constant(0.7), tf.constant(0.0), tf.constant(False))
    np.testing.assert_allclose(out.numpy(), w.numpy(), atol=1e-7)
    zeros = _pull(tf.zeros((3, 3)), tf.constant(0.5), tf.constant(0.7), tf.constant(0.0),
                  tf.constant(False))
    assert np.all(zeros.numpy() == 0)


def test_zero_strength_and_zero_ramp_are_bit_identical_to_plain_training():
    x, y = _data(32)
    runs = {}
    for key, callbacks in (("plain", []), ("zero", [TernaryPull(0.0)]),
                           ("ramp", [TernaryPull(50.0, schedule=Ramp(100, 200))])):
        model = _model(lq.quantizers.SteTern(ternary_weight_networks=True))
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False, callbacks=callbacks)
        runs[key] = _latent(model)
    np.testing.assert_array_equal(runs["zero"], runs["plain"])
    np.testing.assert_array_equal(runs["ramp"], runs["plain"])


def test_pull_brings_latent_weights_nearer_their_ternary_projection():
    x, y = _data(64)
    err = {}
    for key, strength in (("off", 0.0), ("on", 5.0)):
        model = _model(lq.quantizers.SteTern(ternary_weight_networks=True))
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False,
                  callbacks=[TernaryPull(strength)])
        w = _latent(model)
        err[key] = np.linalg.norm(w - _projection(w, 0.7 * np.abs(w).mean())) / np.linalg.norm(w)
    assert err["on"] < 0.5 * err["off"]


def test_config_round_trip_and_bad_arguments():
    pull = TernaryPull(4.0, schedule=Ramp(10, 20, shape="linear"))
    again = TernaryPull.from_config(pull.get_config())
    assert again.strength == 4.0 and again.schedule.get_config() == pull.schedule.get_config()
    assert again.factor(15) == pytest.approx(0.5)
    assert TernaryPull().factor(10**6) == 1.0
    for bad in (-1.0, float("nan"), float("inf"), "1", None):
        with pytest.raises(ValueError, match="strength"):
            TernaryPull(bad)
    with pytest.raises(ValueError, match="schedule"):
        TernaryPull(1.0, schedule="cosine")
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="no layer with a ternary kernel"):
        model.fit(np.zeros((4, 4)), np.zeros((4, 2)), verbose=0, callbacks=[TernaryPull(1.0)])


def _tiny_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 8, 8, 1)).astype("float32")
    y = (x.mean(axis=(1, 2, 3)) > 0).astype("int64")
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(16)


@pytest.mark.parametrize("method", ["ste_tern", "ternary"])
def test_recipes_add_a_ramped_pull_for_stage_two_only(method):
    recipe = recipes.get(method)
    params = recipe.params({"pull": 10.0, "pull_ramp": "cosine", **(
        {"stage1_fraction": 0.5} if method == "ternary" else {})})
    pulls = [c for c in recipe.callbacks(params, 100) if isinstance(c, TernaryPull)]
    assert len(pulls) == 1 and pulls[0].strength == 10.0
    assert pulls[0].schedule.end_step == (50 if method == "ternary" else 100)
    assert not [c for c in recipe.callbacks(recipe.params({}), 100)
                if isinstance(c, TernaryPull)]
    with pytest.raises(ValueError, match="pull"):
        recipe.params({"pull": -1.0})
    with pytest.raises(ValueError, match="pull_ramp"):
        recipe.params({"pull_ramp": "exp"})
    model = recipe.build_model("vgg_small", (8, 8, 1), 2, params, width=4)
    recipe.compile(model, params, 4)
    # stage 1 of the ternary recipe has no ternary kernel: the pull must not be passed to it
    recipe.fit(model, _tiny_data(), 2, params=params, verbose=0,
               callbacks=recipe.callbacks(params, 4))
