"""Seed 003: TernaryReg, RescaledSigmoidTernary, TemperatureScheduler and the ternary recipe."""

import math

import numpy as np
import pytest

import keras_wreg
from keras_wreg import recipes
from keras_wreg._compat import keras, lq, tf
from keras_wreg.callbacks import TemperatureScheduler, temperature_at, ternary_stats
from keras_wreg.quantizers import RescaledSigmoidTernary, rescaled_sigmoid_ternary
from keras_wreg.regularizers import TernaryReg


# ---------------------------------------------------------------- independent numpy references
def np_twn(w, delta=0.7):
    w = np.asarray(w, np.float64)
    thr = delta * np.mean(np.abs(w))
    t = np.sign(w) * (np.abs(w) > thr)
    alpha = np.abs(w)[t != 0].mean() if np.any(t != 0) else 0.0
    return t, alpha, thr


def np_cosine_gap(w, delta=0.7):
    w = np.asarray(w, np.float64).ravel()
    t, _, _ = np_twn(w, delta)
    return 1.0 - w @ t / (np.linalg.norm(w) * np.linalg.norm(t))


def np_factor(w, temperature, thr, r_min):
    def dsig(z):
        s = 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free logistic
        return s * (1.0 - s)

    r = 4.0 * (dsig(temperature * (w - thr)) + dsig(temperature * (w + thr)))
    return np.clip(r, r_min, 1.0)


def random_ternary(shape, rng, zero_fraction=0.4):
    t = rng.choice([-1.0, 1.0], size=shape)
    t[rng.random(shape) < zero_fraction] = 0.0
    return t


def value_and_grad(fn, w):
    w = tf.Variable(w)
    with tf.GradientTape() as tape:
        y = fn(w)
    return y.numpy(), tape.gradient(y, w).numpy()


# --------------------------------------------------------------------------------- TernaryReg
@pytest.mark.parametrize("alpha", [0.5, 0.25, 2.0, 0.0625])
def test_ternary_reg_exactly_zero_on_scaled_ternary(alpha):
    rng = np.random.default_rng(1)
    w = (alpha * random_ternary((3, 3, 4, 8), rng)).astype(np.float32)
    assert float(TernaryReg(strength=1.0)(w)) == 0.0
    assert float(TernaryReg(strength=1.0, variant="multiwell")(w)) == 0.0
    assert float(TernaryReg(strength=1.0, variant="multiwell", power=1)(w)) == 0.0


@pytest.mark.parametrize("alpha", [0.3, 1.7, 0.013])
def test_ternary_reg_zero_up_to_rounding_for_any_scale(alpha):
    rng = np.random.default_rng(2)
    w = (alpha * random_ternary((200,), rng)).astype(np.float32)
    assert 0.0 <= float(TernaryReg(strength=1.0)(w)) < 1e-6


def test_ternary_reg_positive_otherwise_and_matches_numpy():
    rng = np.random.default_rng(3)
    for _ in range(5):
        w = rng.normal(size=(5, 5, 3, 6))
        expected = np_cosine_gap(w)
        got = float(TernaryReg(strength=1.0)(w.astype(np.float64)))
        assert got > 1e-3
        np.testing.assert_allclose(got, expected, rtol=1e-9)
    # a small perturbation of alpha * t is small but strictly positive
    t = random_ternary((64,), rng)
    w = 0.5 * t + 1e-3 * rng.normal(size=64)
    got = float(TernaryReg(strength=1.0)(w))
    assert got > 0.0
    np.testing.assert_allclose(got, np_cosine_gap(w), rtol=1e-6)
    # strength scales linearly
    np.testing.assert_allclose(float(TernaryReg(strength=0.25)(w)), 0.25 * got, rtol=1e-12)


def test_ternary_reg_is_scale_free():
    w = np.random.default_rng(4).normal(size=(300,))
    reg = TernaryReg(strength=1.0)
    np.testing.assert_allclose(float(reg(w)), float(reg(17.0 * w)), rtol=1e-9)


def test_ternary_reg_gradient_matches_finite_differences():
    rng = np.random.default_rng(5)
    w = rng.normal(size=(4, 4, 2, 3))
    reg = TernaryReg(strength=0.7)
    _, grad = value_and_grad(reg, w)
    eps = 1e-6
    numeric = np.zeros_like(w)
    flat = w.ravel()
    for i in range(flat.size):
        plus, minus = flat.copy(), flat.copy()
        plus[i] += eps
        minus[i] -= eps
        numeric.ravel()[i] = (float(reg(plus.reshape(w.shape)))
                              - float(reg(minus.reshape(w.shape)))) / (2 * eps)
    # the pattern t is piecewise constant: no weight sits within eps of the threshold here
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-9)
    assert np.abs(grad).max() > 1e-3


def test_ternary_reg_multiwell_gradient_is_pull_to_assigned_level():
    rng = np.random.default_rng(6)
    w = rng.normal(size=(50,))
    t, alpha, _ = np_twn(w)
    _, grad = value_and_grad(TernaryReg(strength=1.0, variant="multiwell", power=2), w)
    np.testing.assert_allclose(grad, 2.0 * (w - alpha * t) / (w.size * alpha ** 2), rtol=1e-9)
    _, grad1 = value_and_grad(TernaryReg(strength=1.0, variant="multiwell", power=1), w)
    np.testing.assert_allclose(grad1, np.sign(w - alpha * t) / (w.size * alpha), rtol=1e-9)


@pytest.mark.parametrize("variant", ["cosine", "multiwell"])
@pytest.mark.parametrize("case", ["zeros", "none_above_fixed", "none_above_twn"])
def test_ternary_reg_no_nan_on_empty_support(variant, case):
    if case == "zeros":
        w, reg = np.zeros((3, 3, 2, 2), np.float32), TernaryReg(1.0, variant=variant)
    elif case == "none_above_fixed":
        w = np.random.default_rng(7).normal(scale=0.01, size=(20,)).astype(np.float32)
        reg = TernaryReg(1.0, threshold_value=5.0, variant=variant)
    else:  # every |w| equal and delta = 1: nothing strictly above the mean
        w = 0.3 * np.sign(np.random.default_rng(8).normal(size=(20,))).astype(np.float32)
        reg = TernaryReg(1.0, delta=1.0, variant=variant)
    value, grad = value_and_grad(reg, w)
    assert value == 0.0
    assert np.all(np.isfinite(grad)) and np.all(grad == 0.0)


def test_ternary_reg_config_round_trip():
    reg = TernaryReg(strength=0.3, delta=0.5, variant="multiwell", power=1)
    again = keras.regularizers.deserialize(keras.regularizers.serialize(reg))
    assert isinstance(again, TernaryReg) and again.get_config() == reg.get_config()
    w = np.random.default_rng(9).normal(size=(40,))
    assert float(again(w)) == float(reg(w))


@pytest.mark.parametrize("kwargs, argname", [
    ({"delta": 0.0}, "delta"), ({"delta": -0.7}, "delta"), ({"strength": -1.0}, "strength"),
    ({"threshold_value": 0.0}, "threshold_value"), ({"variant": "l2"}, "variant"),
    ({"power": 3}, "power"),
])
def test_ternary_reg_bad_arguments(kwargs, argname):
    with pytest.raises(ValueError, match=argname):
        TernaryReg(**kwargs)


# ------------------------------------------------------------------- RescaledSigmoidTernary
def test_quantizer_forward_is_scaled_ternary():
    rng = np.random.default_rng(10)
    w = rng.normal(scale=0.05, size=(3, 3, 8, 16)).astype(np.float32)
    q = RescaledSigmoidTernary()(w).numpy()
    t, alpha, _ = np_twn(w)
    values = np.unique(np.abs(q))
    assert len(values) == 2 and values[0] == 0.0
    np.testing.assert_allclose(values[1], alpha, rtol=1e-6)
    np.testing.assert_array_equal(np.sign(q), t)
    # scale=False is the plain {-1, 0, 1} pattern; a fixed threshold is honoured
    np.testing.assert_array_equal(RescaledSigmoidTernary(scale=False)(w).numpy(), t)
    fixed = RescaledSigmoidTernary(scale=False, threshold_value=0.05)(w).numpy()
    np.testing.assert_array_equal(fixed, np.sign(w) * (np.abs(w) > 0.05))


@pytest.mark.parametrize("relative", [True, False])
@pytest.mark.parametrize("temperature, r_min", [(1.0, 0.01), (10.0, 0.05), (100.0, 0.01)])
def test_quantizer_gradient_matches_numpy(relative, temperature, r_min):
    rng = np.random.default_rng(11)
    w = rng.normal(scale=0.3, size=(400,))
    dy = rng.normal(size=(400,))
    quantizer = RescaledSigmoidTernary(temperature=temperature, r_min=r_min,
                                       relative_temperature=relative)
    wv = tf.Variable(w)
    with tf.GradientTape() as tape:
        out = quantizer(wv)
        loss = tf.reduce_sum(out * dy)
    grad = tape.gradient(loss, wv).numpy()
    _, _, thr = np_twn(w)
    t_abs = temperature / np.std(w) if relative else temperature
    np.testing.assert_allclose(grad, dy * np_factor(w, t_abs, thr, r_min), rtol=1e-6, atol=1e-12)


def test_quantizer_higher_temperature_concentrates_around_threshold():
    w = np.random.default_rng(12).normal(size=(5000,))
    _, _, thr = np_twn(w)
    gap = np.abs(np.abs(w) - thr)
    near = gap < 0.001 * np.std(w)
    far = gap > 0.5 * np.std(w)
    means_near, means_far, active, widths = [], [], [], []
    for temperature in (1.0, 3.0, 10.0, 30.0, 100.0):
        _, g = value_and_grad(lambda v, T=temperature: tf.reduce_sum(
            rescaled_sigmoid_ternary(v, temperature=T)), w)
        means_near.append(g[near].mean())
        means_far.append(g[far].mean())
        active.append(np.mean(g > 0.5))
        widths.append(gap[g > 0.5].max())
    assert near.sum() >= 5
    assert means_far[0] > 0.9  # tau = 1: almost the plain STE
    assert all(a > b for a, b in zip(means_far[:3], means_far[1:3]))
    assert all(a > b for a, b in zip(active, active[1:]))  # fewer weights get a large factor
    assert all(a > b for a, b in zip(widths, widths[1:]))  # ... and they sit closer to +-Delta
    assert min(means_near) > 0.95  # the peak stays ~1 at +-Delta
    assert means_far[-1] == pytest.approx(0.01, abs=1e-6)  # far weights at the floor r_min


def test_quantizer_no_nan_on_zero_weights():
    value, grad = value_and_grad(lambda v: tf.reduce_sum(RescaledSigmoidTernary(100.0)(v)),
                                 np.zeros((3, 3, 2, 4), np.float32))
    assert value == 0.0 and np.all(np.isfinite(grad))


def test_quantizer_string_alias_and_larq_layer():
    for alias in ("rescaled_sigmoid_ternary", "ste_tern_sigmoid", "RescaledSigmoidTernary"):
        layer = lq.layers.QuantConv2D(4, 3, kernel_quantizer=alias)
        assert isinstance(layer.kernel_quantizer, RescaledSigmoidTernary)
    inputs = keras.Input((8, 8, 2))
    out = lq.layers.QuantConv2D(4, 3, kernel_quantizer=RescaledSigmoidTernary(),
                                kernel_constraint=None, use_bias=False)(inputs)
    model = keras.Model(inputs, out)
    profile = lq.models.ModelProfile(model)
    assert [p.bitwidth for p in profile.layer_profiles[1].weight_profiles] == [2]


@pytest.mark.parametrize("kwargs, argname", [
    ({"delta": 0.0}, "delta"), ({"delta": -1.0}, "delta"), ({"r_min": 0.0}, "r_min"),
    ({"r_min": 1.5}, "r_min"), ({"r_min": -0.1}, "r_min"), ({"temperature": 0.0}, "temperature"),
    ({"threshold_value": -0.1}, "threshold_value"),
])
def test_quantizer_bad_arguments(kwargs, argname):
    with pytest.raises(ValueError, match=argname):
        RescaledSigmoidTernary(**kwargs)
    with pytest.raises(ValueError, match="temperature"):
        RescaledSigmoidTernary().set_temperature(-2.0)


def test_quantizer_config_round_trip():
    q = RescaledSigmoidTernary(temperature=3.0, delta=0.6, r_min=0.2, scale=False,
                               relative_temperature=False)
    q.set_temperature(12.5)
    again = lq.quantizers.get(lq.quantizers.serialize(q))
    assert isinstance(again, RescaledSigmoidTernary)
    assert again.get_config() == q.get_config()
    assert float(again.temperature) == 12.5


# -------------------------------------------------------------------- TemperatureScheduler
def test_temperature_at_formulas():
    assert temperature_at(0.0, 1.0, 100.0) == pytest.approx(1.0)
    assert temperature_at(0.5, 1.0, 100.0) == pytest.approx(10.0)
    assert temperature_at(1.0, 1.0, 100.0) == pytest.approx(100.0)
    assert temperature_at(0.25, 2.0, 10.0, "linear") == pytest.approx(4.0)
    assert temperature_at(0.5, 2.0, 10.0, "cosine") == pytest.approx(6.0)
    assert temperature_at(1.0 / 3.0, 2.0, 10.0, "cosine") == pytest.approx(
        10.0 + (2.0 - 10.0) * 0.5 * (1 + math.cos(math.pi / 3)))


def _linear_ternary_model(quantizer):
    inputs = keras.Input((6,))
    out = lq.layers.QuantDense(3, use_bias=False, kernel_quantizer=quantizer,
                               kernel_constraint=None)(inputs)
    return keras.Model(inputs, out)


def test_scheduler_drives_temperature_inside_compiled_fit():
    """Each epoch's weight update must use that epoch's scheduled temperature in the graph."""
    rng = np.random.default_rng(13)
    x = rng.normal(size=(16, 6)).astype(np.float32)
    y = rng.normal(size=(16, 3)).astype(np.float32)
    quantizer = RescaledSigmoidTernary(temperature=1.0, r_min=0.01)
    model = _linear_ternary_model(quantizer)
    lr = 0.05
    model.compile(keras.optimizers.SGD(lr), loss="mse")
    assert model.run_eagerly is False

    snapshots = []

    class Snap(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            snapshots.append((model.layers[1].kernel.numpy().copy(), float(quantizer.temperature)))

    scheduler = TemperatureScheduler(1.0, 1000.0, schedule="exponential")
    history = model.fit(x, y, batch_size=16, epochs=4, shuffle=False, verbose=0,
                        callbacks=[scheduler, Snap()])
    final = model.layers[1].kernel.numpy()
    expected_t = [1.0, 10.0, 100.0, 1000.0]
    np.testing.assert_allclose([t for _, t in snapshots], expected_t, rtol=1e-5)
    np.testing.assert_allclose(history.history["temperature"], expected_t, rtol=1e-5)
    kernels = [k for k, _ in snapshots] + [final]
    for epoch, tau in enumerate(expected_t):
        w = kernels[epoch]
        t, alpha, thr = np_twn(w)
        q = alpha * t
        grad_q = x.T @ (2.0 * (x @ q - y) / y.size)  # d mse / d q for the linear model
        factor = np_factor(w, tau / np.std(w), thr, 0.01)
        np.testing.assert_allclose(kernels[epoch + 1], w - lr * grad_q * factor,
                                   rtol=1e-4, atol=1e-6)
    # the factor really changed: at tau=1000 most weights are at the floor
    assert (np_factor(kernels[3], 1000 / np.std(kernels[3]), np_twn(kernels[3])[2], 0.01)
            < 0.5).mean() > 0.5


def test_scheduler_batch_granularity_and_fixed_epochs():
    x = np.random.default_rng(14).normal(size=(32, 6)).astype(np.float32)
    y = np.zeros((32, 3), np.float32)
    quantizer = RescaledSigmoidTernary()
    model = _linear_ternary_model(quantizer)
    model.compile(keras.optimizers.SGD(0.01), loss="mse")
    seen = []

    class Rec(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(float(quantizer.temperature))

    model.fit(x, y, batch_size=8, epochs=2, verbose=0,
              callbacks=[TemperatureScheduler(2.0, 18.0, "linear", granularity="batch"), Rec()])
    np.testing.assert_allclose(seen, np.linspace(2.0, 18.0, 8), rtol=1e-6)
    # `epochs` fixes the span independently of fit(epochs=...)
    sched = TemperatureScheduler(1.0, 16.0, epochs=5)
    assert sched.temperature(4) == pytest.approx(16.0)
    assert sched.temperature(2) == pytest.approx(4.0)


def test_scheduler_needs_a_ternary_quantizer():
    model = _linear_ternary_model("ste_tern")
    model.compile("sgd", loss="mse")
    with pytest.raises(ValueError, match="RescaledSigmoidTernary"):
        model.fit(np.zeros((4, 6)), np.zeros((4, 3)), epochs=1, verbose=0,
                  callbacks=[TemperatureScheduler()])


@pytest.mark.parametrize("kwargs, argname", [
    ({"t0": 0.0}, "t0"), ({"t0": 10.0, "t1": 5.0}, "t1"), ({"schedule": "step"}, "schedule"),
    ({"granularity": "minute"}, "granularity"), ({"epochs": 0}, "epochs"),
])
def test_scheduler_bad_arguments(kwargs, argname):
    with pytest.raises(ValueError, match=argname):
        TemperatureScheduler(**kwargs)


def test_scheduler_config_round_trip():
    sched = TemperatureScheduler(0.5, 50.0, "cosine", epochs=7, granularity="batch")
    again = TemperatureScheduler.from_config(sched.get_config())
    assert again.get_config() == sched.get_config()


def test_save_load_and_checkpoint_keep_config_and_temperature(tmp_path):
    def build():
        inputs = keras.Input((6, 6, 1))
        x = lq.layers.QuantConv2D(4, 3, use_bias=False, kernel_constraint=None,
                                  kernel_quantizer=RescaledSigmoidTernary(2.0, delta=0.6,
                                                                          r_min=0.05))(inputs)
        x = keras.layers.Flatten()(x)
        out = lq.layers.QuantDense(2, kernel_quantizer="rescaled_sigmoid_ternary",
                                   kernel_constraint=None,
                                   kernel_regularizer=TernaryReg(0.2))(x)
        return keras.Model(inputs, out)

    model = build()
    quantizers = keras_wreg.quantizers.ternary_quantizers(model)
    assert len(quantizers) == 2
    quantizers[0].set_temperature(37.5)
    quantizers[1].set_temperature(3.25)
    x = np.random.default_rng(15).normal(size=(2, 6, 6, 1)).astype(np.float32)
    reference = model(x).numpy()

    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    loaded_q = keras_wreg.quantizers.ternary_quantizers(loaded)
    assert [float(q.temperature) for q in loaded_q] == [37.5, 3.25]
    assert loaded_q[0].delta == 0.6 and loaded_q[0].r_min == 0.05
    assert isinstance(loaded.layers[-1].kernel_regularizer, TernaryReg)
    np.testing.assert_allclose(loaded(x).numpy(), reference, rtol=1e-6)

    checkpoint = tf.train.Checkpoint(model=model)
    path = checkpoint.save(str(tmp_path / "ckpt"))
    fresh = build()
    tf.train.Checkpoint(model=fresh).restore(path).assert_existing_objects_matched()
    fresh_q = keras_wreg.quantizers.ternary_quantizers(fresh)
    assert [float(q.temperature) for q in fresh_q] == [37.5, 3.25]
    def no_name(q):
        return {k: v for k, v in q.get_config().items() if k != "name"}

    assert no_name(fresh_q[0]) == no_name(quantizers[0])
    assert no_name(loaded_q[1]) == no_name(quantizers[1])
    np.testing.assert_allclose(fresh(x).numpy(), reference, rtol=1e-6)


# --------------------------------------------------------------------------------- recipes
def test_recipe_stage1_clone_is_full_precision_with_ternary_reg():
    recipe = recipes.get("ternary")
    params = recipe.params({"strength": 0.3, "stage1_fraction": 0.5, "decoupled": False,
                            "ramp": "none"})  # the seed's setting: TernaryReg in the loss
    model = recipe.build_model("vgg_small", (16, 16, 1), 3, params, width=4)
    clone = recipe.stage1_model(model, params)
    quant_layers = [la for la in clone.layers if hasattr(la, "kernel_quantizer")]
    assert len(quant_layers) == 7
    assert all(la.kernel_quantizer is None for la in quant_layers)
    assert all(isinstance(la.kernel_regularizer, TernaryReg) for la in quant_layers)
    assert all(la.kernel_regularizer.strength == 0.3 for la in quant_layers)
    for a, b in zip(clone.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert len(clone.losses) == 7
    with pytest.raises(ValueError, match="stage1_fraction"):
        recipe.stage_epochs(recipe.params({"stage1_fraction": 1.0}), 4)
    assert recipe.stage_epochs(params, 4) == (2, 2)
    assert recipe.stage_epochs(params, 1) == (0, 1)
    with pytest.raises(ValueError, match="activation"):
        recipe.layer_kwargs(recipe.params({"activation": "tanh"}))


def test_ste_tern_recipe_uses_larq_quantizer():
    recipe = recipes.get("ste_tern")
    model = recipe.build_model("vgg_small", (16, 16, 1), 3, recipe.params(), width=4)
    qs = [la.kernel_quantizer for la in model.layers if getattr(la, "kernel_quantizer", None)]
    assert len(qs) == 7 and all(isinstance(q, lq.quantizers.SteTern) for q in qs)
    assert all(q.ternary_weight_networks for q in qs)


def test_end_to_end_two_stage_on_mnist(mnist_small):
    recipe = recipes.get("ternary")
    params = recipe.params({"stage1_fraction": 0.34, "t1": 100.0, "schedule": "exponential"})
    model = recipe.build_model("vgg_small", mnist_small.input_shape, mnist_small.num_classes,
                               params, width=8)
    recipe.compile(model, params, 3 * len(mnist_small.train))
    history = recipe.fit(model, mnist_small.train, 3, callbacks=recipe.callbacks(params, 0),
                         params=params, verbose=0)
    assert history.history["stage"] == [1, 2, 2]
    assert math.isnan(history.history["temperature"][0])  # stage 1 has no quantizer
    assert history.history["temperature"][1:] == pytest.approx([1.0, 100.0])
    assert all(v is not None for vs in history.history.values() for v in vs)  # CLI: float(v)
    _, accuracy = model.evaluate(mnist_small.test, verbose=0)
    assert accuracy > 0.6  # chance is 0.1
    # every deployed kernel is ternary: values {-a, 0, a}, with zeros present
    layers = [la for la in model.layers if isinstance(getattr(la, "kernel_quantizer", None),
                                                      RescaledSigmoidTernary)]
    assert len(layers) == 7
    for layer in layers:
        q = layer.kernel_quantizer(layer.kernel).numpy()
        levels = np.unique(np.abs(q))
        assert len(levels) == 2 and levels[0] == 0.0
    stats = ternary_stats(model)
    assert 0.1 < stats["sparsity"] < 0.9 and stats["levels_max"] == 3
