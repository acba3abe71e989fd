"""Seed 001: FeatureDistributionAdjust, GroupExcitation, ThresholdSign, binary ResNet-18, recipe."""

import numpy as np
import pytest

from keras_wreg import (ActivationBalance, FeatureDistributionAdjust, GroupExcitation,
                        ThresholdSign, activation_balance, recipes)
from keras_wreg._compat import keras, lq, tf
from keras_wreg.layers import extra_flops, fda_unit
from keras_wreg.models import MODELS, resnet18, resnet18_fp


def random_features(shape=(3, 5, 4, 8), seed=0):
    rng = np.random.default_rng(seed)
    shift = rng.normal(0, 3, size=shape[-1])
    scale = rng.uniform(0.1, 4.0, size=shape[-1])
    return (rng.normal(size=shape) * scale + shift).astype(np.float32)


# -- FeatureDistributionAdjust ---------------------------------------------------------------
def test_fda_output_has_instance_mean_beta_and_std_gamma():
    x = random_features()
    layer = FeatureDistributionAdjust()
    y = layer(x).numpy()
    np.testing.assert_allclose(y.mean(axis=(1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.std(axis=(1, 2)), 1.0, atol=1e-3)
    gamma = np.linspace(0.5, 2.0, 8).astype(np.float32)
    beta = np.linspace(-1.0, 1.0, 8).astype(np.float32)
    layer.gamma.assign(gamma)
    layer.beta.assign(beta)
    y = layer(x).numpy()
    np.testing.assert_allclose(y.mean(axis=(1, 2)), np.broadcast_to(beta, (3, 8)), atol=1e-5)
    np.testing.assert_allclose(y.std(axis=(1, 2)), np.broadcast_to(gamma, (3, 8)), rtol=1e-3)


def test_fda_matches_numpy_with_partial_mean_removal():
    x = random_features()
    layer = FeatureDistributionAdjust(epsilon=1e-3)
    layer.build(x.shape)
    rho = np.linspace(0.0, 1.0, 8).astype(np.float32)
    layer.rho.assign(rho)
    mu = x.mean(axis=(1, 2), keepdims=True)
    sigma = x.std(axis=(1, 2), keepdims=True)
    expected = (x - rho * mu) / (sigma + 1e-3)
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-4, atol=1e-5)


def test_fda_gradient_matches_finite_differences():
    x = random_features((2, 3, 3, 2)).astype(np.float64)
    layer = FeatureDistributionAdjust(epsilon=1e-2, dtype="float64")
    layer.build(x.shape)
    layer.rho.assign([0.7, 0.3])
    layer.gamma.assign([1.5, 0.8])
    weights = np.random.default_rng(1).normal(size=x.shape)

    def loss(value):
        return float(tf.reduce_sum(layer(tf.constant(value)) * weights))

    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        out = tf.reduce_sum(layer(xt) * weights)
    grad = tape.gradient(out, xt).numpy()
    numeric = np.zeros_like(x)
    h = 1e-6
    for idx in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[idx] += h
        minus[idx] -= h
        numeric[idx] = (loss(plus) - loss(minus)) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-6)


def test_fda_constant_channel_gives_beta_and_finite_gradients():
    x = random_features((2, 4, 4, 3))
    x[..., 1] = 2.5  # sigma = 0 in channel 1
    layer = FeatureDistributionAdjust()
    layer.build(x.shape)
    layer.beta.assign([0.0, 0.3, 0.0])
    xt = tf.constant(x)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(xt)
        y = layer(xt)
        out = tf.reduce_sum(y * y)
    assert np.all(np.isfinite(y.numpy()))
    np.testing.assert_allclose(y.numpy()[..., 1], 0.3, atol=1e-6)
    for g in [tape.gradient(out, xt)] + tape.gradient(out, layer.trainable_weights):
        assert np.all(np.isfinite(g.numpy()))


# -- GroupExcitation ---------------------------------------------------------------------------
def test_group_excitation_in_unit_interval_one_per_group_and_matches_numpy():
    x = random_features((3, 5, 4, 8))
    layer = GroupExcitation(groups=4, reduction=2, pool="group")
    e = layer(x).numpy()
    assert e.shape == (3, 4)
    assert np.all(e > 0) and np.all(e < 1)
    z = x.mean(axis=(1, 2)).reshape(3, 4, 2).mean(-1)
    w1, b1, w2, b2 = (w.numpy() for w in (layer.w1, layer.b1, layer.w2, layer.b2))
    assert w1.shape == (4, 2)
    expected = 1 / (1 + np.exp(-(np.maximum(z @ w1 + b1, 0) @ w2 + b2)))
    np.testing.assert_allclose(e, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pool", ["group", "channel"])
def test_group_excitation_changes_with_input(pool):
    layer = GroupExcitation(groups=2, reduction=1, pool=pool)
    a = layer(random_features(seed=1)).numpy()
    b = layer(random_features(seed=2)).numpy()
    assert a.shape == (3, 2)
    assert np.max(np.abs(a - b)) > 1e-3
    # and per example within a batch
    assert np.max(np.abs(a[0] - a[1])) > 1e-3


# -- ThresholdSign ---------------------------------------------------------------------------
def _threshold_sign_setup():
    rng = np.random.default_rng(3)
    x = rng.uniform(-1.5, 1.5, size=(2, 3, 3, 4)).astype(np.float32)
    e = rng.uniform(0.1, 0.9, size=(2, 2)).astype(np.float32)
    layer = ThresholdSign(groups=2)
    layer.build([x.shape, e.shape])
    tau = np.array([0.2, -0.3, 0.5, 0.0], np.float32)
    delta = np.array([0.4, -0.6, 0.1, 0.8], np.float32)
    layer.tau.assign(tau)
    layer.delta.assign(delta)
    return x, e, layer, tau, delta


def test_threshold_sign_forward_moves_zero_point():
    x, e, layer, tau, delta = _threshold_sign_setup()
    e_c = np.repeat(e, 2, axis=-1)[:, None, None, :]
    threshold = tau + delta * e_c
    expected = np.where(x - threshold >= 0, 1.0, -1.0)
    out = layer([x, e]).numpy()
    np.testing.assert_array_equal(out, expected)
    # raising the static threshold of channel 0 above every input makes that channel all -1
    layer.tau.assign([5.0, -0.3, 0.5, 0.0])
    out = layer([x, e]).numpy()
    assert np.all(out[..., 0] == -1) and np.array_equal(out[..., 1:], expected[..., 1:])
    # and a different excitation moves the input-dependent part
    layer.tau.assign(tau)
    assert not np.array_equal(layer([x, 1.0 - e]).numpy(), expected)


def test_threshold_sign_gradient_is_approx_sign_and_reaches_threshold():
    x, e, layer, tau, delta = _threshold_sign_setup()
    dy = np.random.default_rng(4).normal(size=x.shape).astype(np.float32)
    xt, et = tf.constant(x), tf.constant(e)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([xt, et])
        out = tf.reduce_sum(layer([xt, et]) * dy)
    e_c = np.repeat(e, 2, axis=-1)[:, None, None, :]
    u = x - (tau + delta * e_c)
    surrogate = np.maximum(2 - 2 * np.abs(u), 0)
    np.testing.assert_allclose(tape.gradient(out, xt).numpy(), dy * surrogate, rtol=1e-5,
                               atol=1e-6)
    g_tau = tape.gradient(out, layer.tau).numpy()
    np.testing.assert_allclose(g_tau, -(dy * surrogate).sum(axis=(0, 1, 2)), rtol=1e-5,
                               atol=1e-5)
    g_delta = tape.gradient(out, layer.delta).numpy()
    np.testing.assert_allclose(g_delta, -(dy * surrogate * e_c).sum(axis=(0, 1, 2)),
                               rtol=1e-5, atol=1e-5)
    assert np.all(np.abs(g_tau) > 0)
    g_e = tape.gradient(out, et).numpy()
    expected_e = -(dy * surrogate * delta).sum(axis=(1, 2)).reshape(2, 2, 2).sum(-1)
    np.testing.assert_allclose(g_e, expected_e, rtol=1e-5, atol=1e-5)


def test_static_threshold_sign_and_balance_penalty():
    x = np.random.default_rng(5).normal(size=(4, 3, 3, 2)).astype(np.float32)
    layer = ThresholdSign(input_dependent=False, balance_penalty=0.5)
    layer.build(x.shape)
    layer.tau.assign([0.5, -0.2])
    b = layer(x).numpy()
    expected = np.where(x >= np.array([0.5, -0.2]), 1.0, -1.0)
    np.testing.assert_array_equal(b, expected)
    penalty = 0.5 * np.sum(expected.reshape(-1, 2).mean(0) ** 2)
    np.testing.assert_allclose(float(layer.losses[-1]), penalty, rtol=1e-5)
    assert np.all(np.isfinite(b))
    # sign(0) = +1 and a finite gradient exactly at the zero point
    zero = tf.zeros((1, 1, 1, 2)) + tf.constant([0.5, -0.2])
    with tf.GradientTape() as tape:
        tape.watch(zero)
        out = layer(zero)
    np.testing.assert_array_equal(out.numpy(), 1.0)
    np.testing.assert_allclose(tape.gradient(out, zero).numpy(), 2.0)


# -- errors ------------------------------------------------------------------------------------
def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="groups"):
        GroupExcitation(groups=3)(tf.zeros((1, 2, 2, 8)))
    with pytest.raises(ValueError, match="groups"):
        GroupExcitation(groups=0)
    with pytest.raises(ValueError, match="reduction"):
        GroupExcitation(groups=2, reduction=0.5)
    with pytest.raises(ValueError, match="pool"):
        GroupExcitation(pool="max")
    for eps in (0.0, -1e-5):
        with pytest.raises(ValueError, match="epsilon"):
            FeatureDistributionAdjust(epsilon=eps)
    with pytest.raises(ValueError, match="groups"):
        ThresholdSign(groups=3)([tf.zeros((1, 2, 2, 8)), tf.zeros((1, 3))])
    with pytest.raises(ValueError, match="balance_penalty"):
        ThresholdSign(balance_penalty=-1.0)
    with pytest.raises(ValueError, match="groups"):
        resnet18((32, 32, 3), 10, width=6, fda="full", groups=4)
    with pytest.raises(ValueError, match="fda"):
        resnet18((32, 32, 3), 10, width=8, fda="sometimes")
    recipe = recipes.get("fda")
    with pytest.raises(ValueError, match="variant"):
        recipe.params({"variant": "half"})
    with pytest.raises(ValueError, match="model"):
        recipe.build_model("vgg_small", (28, 28, 1), 10, recipe.params())


# -- serialization -----------------------------------------------------------------------------
def _small_fda_model(seed=6):
    inputs = keras.Input((6, 6, 8))
    b = fda_unit(inputs, groups=4, reduction=2, name="u")
    outputs = keras.layers.GlobalAveragePooling2D()(b)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(seed)
    for w in model.weights:  # move every weight off its init value
        w.assign(w.numpy() + rng.normal(0, 0.3, size=w.shape).astype(np.float32))
    return model


def test_layers_round_trip_through_keras_file_and_checkpoint(tmp_path):
    model = _small_fda_model()
    x = random_features((4, 6, 6, 8), seed=7)
    expected = model(x).numpy()
    path = tmp_path / "fda.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded(x).numpy(), expected)
    kinds = {type(layer).__name__ for layer in loaded.layers}
    assert {"FeatureDistributionAdjust", "GroupExcitation", "ThresholdSign"} <= kinds

    ckpt = tf.train.Checkpoint(model=model)
    saved = ckpt.save(str(tmp_path / "ckpt"))
    other = _small_fda_model(seed=9)  # different weights
    assert not np.array_equal(other(x).numpy(), expected)
    tf.train.Checkpoint(model=other).restore(saved).assert_consumed()
    np.testing.assert_array_equal(other(x).numpy(), expected)
    for w_a, w_b in zip(model.weights, other.weights):
        np.testing.assert_array_equal(w_a.numpy(), w_b.numpy())


@pytest.mark.parametrize("layer", [
    FeatureDistributionAdjust(epsilon=1e-3, learn_rho=False),
    GroupExcitation(groups=2, reduction=3, pool="channel"),
    ThresholdSign(groups=2, input_dependent=False, balance_penalty=0.1),
])
def test_get_config_from_config(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    assert type(restored) is type(layer) and restored.get_config() == config


# -- diagnostics ------------------------------------------------------------------------------
def test_activation_balance_counts_plus_ones_and_extra_flops():
    inputs = keras.Input((4, 4, 2))
    b1 = ThresholdSign(input_dependent=False, name="t")(inputs)
    b2 = lq.quantizers.SteSign(name="plain")(inputs)
    model = keras.Model(inputs, [b1, b2])
    model.get_layer("t").tau.assign([1.0, -1.0])
    x = np.random.default_rng(8).normal(size=(10, 4, 4, 2)).astype(np.float32)
    stats = activation_balance(model, x, batch_size=3)
    p_t = (x >= np.array([1.0, -1.0])).reshape(-1, 2).mean(0)
    p_plain = (x >= 0).reshape(-1, 2).mean(0)
    assert stats["positive_fraction"]["t"] == pytest.approx(p_t.mean())
    assert stats["channel_imbalance"]["t"] == pytest.approx(np.abs(p_t - 0.5).mean())
    assert stats["positive_fraction"]["plain"] == pytest.approx(p_plain.mean())

    flops = extra_flops(_small_fda_model())
    hidden = 4  # ceil(8 channels / reduction 2)
    fda = 7 * 36 * 8 + 4 * 8
    ge = 36 * 8 + 8 + 2 * 8 * hidden + 2 * hidden + 2 * hidden * 4 + 4 + 4 * 4
    sign = 36 * 8 + 2 * 8
    assert flops["per_layer"] == {"u_fda": fda, "u_ge": ge, "u_sign": sign}
    assert flops["total"] == fda + ge + sign


# -- ResNet-18 -------------------------------------------------------------------------------
def test_resnet18_variants_build_with_16_binary_units():
    assert MODELS["resnet18"] is resnet18 and MODELS["resnet18_fp"] is resnet18_fp
    counts = {}
    for fda in ("none", "static", "full"):
        model = resnet18((32, 32, 3), 10, width=4, fda=fda)
        convs = [l for l in model.layers if isinstance(l, lq.layers.QuantConv2D)]
        assert len(convs) == 16
        counts[fda] = sum(isinstance(l, ThresholdSign) for l in model.layers)
        assert model.output_shape == (None, 10)
    assert counts == {"none": 0, "static": 16, "full": 16}
    fp = resnet18_fp((32, 32, 3), 10, width=4)
    assert not any(isinstance(l, (lq.layers.QuantConv2D, ThresholdSign)) for l in fp.layers)
    assert sum(isinstance(l, keras.layers.Conv2D) for l in fp.layers) == 1 + 16 + 3


def test_resnet18_trains_on_real_data_and_round_trips(mnist_small, tmp_path):
    recipe = recipes.get("fda")
    params = recipe.params()
    model = recipe.build_model("resnet18", mnist_small.input_shape, mnist_small.num_classes,
                               params, width=4)
    recipe.compile(model, params, total_steps=5)
    model.run_eagerly = True  # 5 steps: tracing the 16-unit graph would cost more than running
    before = {w.name: w.numpy().copy() for w in model.trainable_weights}
    model.fit(mnist_small.train.take(5), epochs=1, verbose=0)
    assert np.isfinite(model.history.history["loss"][-1])
    moved = {w.name: not np.array_equal(before[w.name], w.numpy())
             for w in model.trainable_weights}
    # every weight outside the excitations trains: binary kernels, BN, FDA gamma/beta/rho, tau,
    # delta (which starts at 0, so the excitations only get gradient from the second step)
    assert all(v for k, v in moved.items() if "_ge/" not in k)
    assert sum(k.endswith("_ge/b2:0") and v for k, v in moved.items()) == 16
    # the excitation MLPs train too, except where a tiny (width 4) hidden ReLU layer is dead
    assert sum(k.endswith("_ge/w1:0") and v for k, v in moved.items()) >= 12
    x = next(iter(mnist_small.test))[0][:8]
    expected = model(x, training=False).numpy()
    path = tmp_path / "resnet18_fda.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded(x, training=False).numpy(), expected, rtol=1e-5,
                               atol=1e-6)


@pytest.mark.slow
def test_fda_recipe_learns_mnist_and_logs_balance(mnist_small):
    keras.utils.set_random_seed(0)
    recipe = recipes.get("fda")
    params = recipe.params()
    model = recipe.build_model("resnet18", mnist_small.input_shape, mnist_small.num_classes,
                               params, width=8)
    epochs = 2
    recipe.compile(model, params, epochs * len(mnist_small.train))
    callbacks = recipe.callbacks(params, epochs * len(mnist_small.train), model)
    history = recipe.fit(model, mnist_small.train, epochs, callbacks=callbacks, params=params,
                         verbose=0)
    accuracy = model.evaluate(mnist_small.test, verbose=0)[1]
    assert accuracy > 0.5  # chance is 0.10
    balance = history.history["act_pos_frac"]
    assert len(balance) == epochs and all(0.0 < v < 1.0 for v in balance)
    logged = [cb for cb in callbacks if isinstance(cb, ActivationBalance)][0].history
    assert len(logged) == epochs + 1 and len(logged[-1]["positive_fraction"]) == 16


def test_activation_balance_callback_logs_only_for_binary_models():
    x = np.random.default_rng(9).normal(size=(6, 4, 4, 2)).astype(np.float32)
    inputs = keras.Input((4, 4, 2))
    binary = keras.Model(inputs, ThresholdSign(input_dependent=False, name="t")(inputs))
    plain = keras.Model(inputs, keras.layers.Activation("relu")(inputs))
    for model, expect in ((binary, True), (plain, False)):
        callback = ActivationBalance(probe=x)
        callback.set_model(model)
        callback.on_train_begin()
        logs = {}
        callback.on_epoch_end(0, logs)
        assert ("act_pos_frac" in logs) is expect
        assert len(callback.history) == (2 if expect else 0)
    assert logs == {}
    with pytest.raises(ValueError, match="every"):
        ActivationBalance(every=0)


def test_probe_from_dataset_takes_the_first_inputs_of_both_diagnostic_callbacks(tmp_path):
    from keras_wreg.callbacks import QuantizationTensorBoard, probe_from_dataset
    x = np.arange(10 * 2, dtype=np.float32).reshape(10, 2)
    ds = tf.data.Dataset.from_tensor_slices((x, np.zeros(10))).batch(3)
    np.testing.assert_array_equal(probe_from_dataset(ds, 7), x[:7])
    np.testing.assert_array_equal(probe_from_dataset(ds, 100), x)
    np.testing.assert_array_equal(ActivationBalance().set_probe_from_dataset(ds, 4).probe, x[:4])
    board = QuantizationTensorBoard(str(tmp_path)).set_probe_from_dataset(ds, 5)
    np.testing.assert_array_equal(board.probe, x[:5])
    for bad in (0, -1, 2.5, "3"):
        with pytest.raises(ValueError, match="max_examples"):
            probe_from_dataset(ds, bad)
    with pytest.raises(ValueError, match="no batch"):
        probe_from_dataset(ds.take(0), 4)
