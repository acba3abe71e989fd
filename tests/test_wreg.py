import numpy as np
import pytest

from keras_wreg import WReg
from keras_wreg._compat import keras, lq, tf


def penalty_grad(reg, w):
    w = tf.Variable(np.asarray(w, np.float64))
    with tf.GradientTape() as tape:
        loss = reg(w)
    return float(loss), tape.gradient(loss, w).numpy()


@pytest.mark.parametrize("alpha", [1.0, 0.5, 2.0])
@pytest.mark.parametrize("inner,outer", [("l1", "l1"), ("l1", "l2"), ("l2", "l1"), ("l2", "l2")])
def test_zero_on_grid_and_inner_max_at_zero(alpha, inner, outer):
    reg = WReg(strength=1.0, alpha=alpha, inner=inner, outer=outer)
    r = reg.pointwise(tf.constant([-alpha, alpha, 0.0, 0.3 * alpha, 0.7 * alpha, -0.5 * alpha]))
    r = r.numpy()
    assert r[0] == 0 and r[1] == 0
    inside = r[2:]
    assert inside[0] == inside.max() > 0
    # strictly decreasing from 0 towards alpha
    assert r[2] > r[3] > r[4] > 0


@pytest.mark.parametrize("inner,outer", [("l1", "l1"), ("l1", "l2"), ("l2", "l1"), ("l2", "l2")])
@pytest.mark.parametrize("reduce", ["sum", "mean"])
def test_gradient_matches_finite_differences(inner, outer, reduce):
    rng = np.random.default_rng(1)
    w = rng.uniform(-2.5, 2.5, size=40)
    w = w[(np.abs(np.abs(w) - 1.0) > 0.05) & (np.abs(w) > 0.05)]  # away from kinks
    reg = WReg(strength=0.3, alpha=1.0, inner=inner, outer=outer, inner_weight=1.5,
               outer_weight=0.7, reduce=reduce)
    _, grad = penalty_grad(reg, w)
    eps = 1e-6
    numeric = np.array([
        (penalty_grad(reg, w + eps * e)[0] - penalty_grad(reg, w - eps * e)[0]) / (2 * eps)
        for e in np.eye(len(w))
    ])
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("inner,outer", [("l1", "l1"), ("l2", "l2")])
@pytest.mark.parametrize("alpha", [1.0, "mean", "channel"])
def test_no_nan_at_kinks(inner, outer, alpha):
    w = np.array([[0.0, 1.0], [-1.0, 0.0], [1.0, -1.0]], np.float32)  # mean|W| per column = 2/3
    reg = WReg(strength=1.0, alpha=alpha, inner=inner, outer=outer)
    value, grad = penalty_grad(reg, w)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    if alpha == 1.0:
        np.testing.assert_array_equal(grad, np.zeros_like(grad))  # zero sub-gradient at 0, ±1


def test_options_change_value_as_specified():
    w = tf.constant([0.5, 3.0])  # inside gap 0.5, tail gap 2.0
    base = dict(strength=1.0, alpha=1.0)
    assert WReg(inner="l1", outer="l1", **base)(w).numpy() == pytest.approx(0.5 + 2.0)
    assert WReg(inner="l2", outer="l1", **base)(w).numpy() == pytest.approx(0.25 + 2.0)
    assert WReg(inner="l1", outer="l2", **base)(w).numpy() == pytest.approx(0.5 + 4.0)
    assert WReg(inner="l2", outer="l2", **base)(w).numpy() == pytest.approx(0.25 + 4.0)
    assert WReg(inner_weight=2.0, outer_weight=0.5, **base)(w).numpy() == pytest.approx(1.0 + 2.0)
    assert WReg(reduce="mean", **base)(w).numpy() == pytest.approx((0.5 + 4.0) / 2)
    assert WReg(strength=0.1, alpha=1.0)(w).numpy() == pytest.approx(0.45)
    assert WReg(strength=1.0, alpha=0.5)(w).numpy() == pytest.approx(0.0 + 2.5 ** 2)


def test_alpha_channel_uses_per_output_channel_scale():
    rng = np.random.default_rng(0)
    signs = rng.choice([-1.0, 1.0], size=(3, 3, 4, 2))
    kernel = signs * np.array([0.2, 1.7])  # channel c sits exactly on ±scale_c
    channel = WReg(strength=1.0, alpha="channel")(tf.constant(kernel, tf.float32)).numpy()
    mean = WReg(strength=1.0, alpha="mean")(tf.constant(kernel, tf.float32)).numpy()
    fixed = WReg(strength=1.0, alpha=1.0)(tf.constant(kernel, tf.float32)).numpy()
    assert channel == pytest.approx(0.0, abs=1e-4)  # float32 rounding of the means
    assert mean > 0.1 and fixed > 0.1


def test_alpha_mean_is_stop_gradient():
    w = tf.Variable([0.2, -0.6])  # mean |w| = 0.4
    reg = WReg(strength=1.0, alpha="mean", inner="l1", outer="l1")
    with tf.GradientTape() as tape:
        loss = reg(w)
    # with a constant alpha = 0.4: d/dw |0.4 - |w|| = [-1 (inside, w>0), -1 (tail, w<0)]
    np.testing.assert_allclose(tape.gradient(loss, w).numpy(), [-1.0, -1.0])


@pytest.mark.parametrize("kwargs,name", [
    (dict(strength=-1.0), "strength"), (dict(alpha=0.0), "alpha"), (dict(alpha=-1), "alpha"),
    (dict(alpha="median"), "alpha"), (dict(inner="l3"), "inner"), (dict(outer="huber"), "outer"),
    (dict(reduce="max"), "reduce"), (dict(inner_weight=-0.1), "inner_weight"),
    (dict(outer_weight="a"), "outer_weight"),
])
def test_bad_arguments_raise_value_error_naming_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        WReg(**kwargs)


def test_integer_weights_rejected():
    with pytest.raises(ValueError, match="floating"):
        WReg()(tf.constant([1, 2]))


def test_config_round_trip_and_registered_name():
    reg = WReg(strength=3e-4, alpha="channel", inner="l2", outer="l1", inner_weight=2.0,
               reduce="mean")
    clone = WReg.from_config(reg.get_config())
    assert clone.get_config() == reg.get_config()
    assert keras.saving.get_registered_name(WReg) == "keras_wreg>WReg"
    again = keras.regularizers.deserialize(keras.regularizers.serialize(reg))
    assert isinstance(again, WReg) and again.get_config() == reg.get_config()


def test_model_with_wreg_saves_and_loads(tmp_path):
    inputs = keras.Input((8, 8, 1))
    x = lq.layers.QuantConv2D(4, 3, kernel_quantizer="ste_sign",
                              kernel_regularizer=WReg(strength=1e-3, alpha="mean"))(inputs)
    model = keras.Model(inputs, keras.layers.Flatten()(x))
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    reg = loaded.layers[1].kernel_regularizer
    assert isinstance(reg, WReg) and reg.alpha == "mean" and reg.strength == 1e-3
    assert float(sum(loaded.losses)) == pytest.approx(float(sum(model.losses)))


def test_weight_histograms_are_in_grid_units(tmp_path):
    """Histogram values are w / alpha_c: every channel's mean |value| is 1 (grid at +-1)."""
    from keras_wreg.callbacks import WeightHistograms
    from keras_wreg.callbacks.histograms import _all_kernel_values

    inputs = keras.Input((6, 6, 1))
    x = lq.layers.QuantConv2D(4, 3, kernel_quantizer="ste_sign",
                              kernel_initializer=keras.initializers.RandomUniform(-0.05, 0.05))(
        inputs)
    model = keras.Model(inputs, keras.layers.Flatten()(x))
    scaled = _all_kernel_values(model, "channel").reshape(3, 3, 1, 4)
    np.testing.assert_allclose(np.abs(scaled).mean(axis=(0, 1, 2)), 1.0, rtol=1e-5)
    raw = _all_kernel_values(model, None)
    assert np.abs(raw).max() <= 0.05
    cb = WeightHistograms(tmp_path / "h.png")
    cb.set_model(model)
    cb.on_train_begin()
    cb.on_train_end()
    assert (tmp_path / "h.png").stat().st_size > 0
    with pytest.raises(ValueError, match="scale"):
        WeightHistograms(tmp_path / "x.png", scale="layer")
