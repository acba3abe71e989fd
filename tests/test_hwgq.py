"""Seed 002: HWGQ activations, ScaledSign weights, AlternateUpdate, compression ratio."""

import numpy as np
import pytest

import keras_wreg
from keras_wreg import AlternateUpdate, HWGQ, ScaledSign, compression_ratio, recipes
from keras_wreg._compat import keras, lq, tf
from keras_wreg.alternate import binary_layers, latent_kernel, linear
from keras_wreg.models import vgg_small_hwgq
from keras_wreg.quantizers.hwgq import HWGQ_STEPS, hwgq_levels, hwgq_thresholds


def numpy_hwgq(x, bits):
    """Independent reference: 0 for x <= 0, else the nearest of i*step (ties -> lower)."""
    levels = HWGQ_STEPS[bits] * np.arange(1, 2**bits)
    nearest = levels[np.argmin(np.abs(x[..., None] - levels), axis=-1)]
    return np.where(x > 0, nearest, 0.0)


# -- HWGQ -------------------------------------------------------------------------------
def test_published_levels_and_thresholds():
    np.testing.assert_allclose(hwgq_levels(2), [0.538, 1.076, 1.614])
    np.testing.assert_allclose(hwgq_thresholds(2), [0.807, 1.345])
    np.testing.assert_allclose(hwgq_levels(1), [0.799])
    assert hwgq_thresholds(1) == []
    np.testing.assert_allclose(hwgq_levels(3)[:2], [0.3217, 0.6434])
    assert len(hwgq_levels(4)) == 15 and hwgq_levels(4)[-1] == pytest.approx(15 * 0.185)


def test_hwgq_2bit_boundaries_and_negatives():
    x = np.array([-3.0, -1e-6, -0.0, 0.0, 1e-7, 0.5, 0.807, 0.8071, 1.0, 1.345, 1.3451, 1.614,
                  1.7, 100.0], np.float32)
    expected = [0, 0, 0, 0, 0.538, 0.538, 0.538, 1.076, 1.076, 1.076, 1.614, 1.614, 1.614,
                1.614]
    np.testing.assert_allclose(HWGQ(2)(tf.constant(x)).numpy(), expected, rtol=0, atol=1e-7)


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_hwgq_forward_matches_numpy(bits):
    x = np.random.RandomState(bits).normal(0, 1.5, size=(64, 33)).astype(np.float32)
    out = HWGQ(bits)(tf.constant(x)).numpy()
    np.testing.assert_allclose(out, numpy_hwgq(x, bits), atol=1e-6)
    assert len(np.unique(out)) == 2**bits  # 0 plus every positive level is hit


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_hwgq_gradient_is_clipped_relu(bits):
    top = hwgq_levels(bits)[-1]
    x = np.concatenate([np.random.RandomState(0).normal(0, 2, 200),
                        [0.0, -0.0, top, np.nextafter(np.float32(top), np.float32(9))]])
    x = tf.constant(x.astype(np.float32))
    dy = tf.constant(np.random.RandomState(1).normal(size=x.shape).astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = HWGQ(bits)(x)
    grad = tape.gradient(y, x, output_gradients=dy).numpy()
    xn = x.numpy()
    np.testing.assert_array_equal(grad, np.where((xn > 0) & (xn <= np.float32(top)), dy, 0.0))
    assert grad[-2] == dy.numpy()[-2] and grad[-1] == 0 and grad[-4] == 0
    assert np.all(np.isfinite(grad))


def test_hwgq_string_alias_and_precision():
    q = lq.quantizers.get("hwgq")
    assert isinstance(q, HWGQ) and q.precision == 2
    assert lq.quantizers.get({"class_name": "hwgq", "config": {"bits": 3}}).bits == 3


@pytest.mark.parametrize("bits", [0, 5, -1, 2.5, True, "2"])
def test_hwgq_bad_bits(bits):
    with pytest.raises(ValueError, match="bits"):
        HWGQ(bits)


# -- ScaledSign -------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(7, 5), (3, 3, 4, 6)])
def test_scaled_sign_per_channel(shape):
    w = np.random.RandomState(0).normal(size=shape).astype(np.float32)
    w.reshape(-1, shape[-1])[0, 1] = 0.0  # sign(0) = +1
    q = ScaledSign()(tf.constant(w)).numpy()
    alpha = np.abs(w.reshape(-1, shape[-1])).mean(axis=0)
    np.testing.assert_allclose(q, alpha * np.where(w >= 0, 1.0, -1.0), rtol=1e-6)
    for c in range(shape[-1]):  # exactly two values +-alpha_c per channel
        np.testing.assert_allclose(np.unique(np.abs(q[..., c])), [alpha[c]], rtol=1e-6)
    assert q.reshape(-1, shape[-1])[0, 1] == pytest.approx(alpha[1])


def test_scaled_sign_gradient_reaches_latent_weight():
    w = tf.Variable(np.random.RandomState(0).normal(size=(4, 3)).astype(np.float32) * 2)
    dy = np.random.RandomState(1).normal(size=(4, 3)).astype(np.float32)
    with tf.GradientTape(persistent=True) as tape:
        q = ScaledSign()(w)
        qc = ScaledSign(clip_value=1.0)(w)
    np.testing.assert_allclose(tape.gradient(q, w, output_gradients=dy).numpy(), dy)
    np.testing.assert_allclose(tape.gradient(qc, w, output_gradients=dy).numpy(),
                               np.where(np.abs(w.numpy()) <= 1.0, dy, 0.0))
    # through a Larq layer: the latent kernel gets a non-zero gradient
    layer = lq.layers.QuantDense(3, kernel_quantizer="scaled_sign", use_bias=False,
                                 kernel_constraint=None)
    x = tf.constant(np.random.RandomState(2).normal(size=(8, 4)).astype(np.float32))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(layer(x)))
    grad = tape.gradient(loss, layer.trainable_variables)[0]
    assert grad is not None and float(tf.reduce_sum(tf.abs(grad))) > 0


def test_scaled_sign_bad_clip():
    with pytest.raises(ValueError, match="clip_value"):
        ScaledSign(clip_value=-1.0)


@pytest.mark.parametrize("quantizer", [HWGQ(3), ScaledSign(clip_value=1.5)])
def test_quantizer_config_round_trip(quantizer):
    config = lq.quantizers.serialize(quantizer)
    restored = lq.quantizers.get(config)
    assert type(restored) is type(quantizer)
    assert restored.get_config() == quantizer.get_config()
    restored2 = keras.utils.deserialize_keras_object(keras.utils.serialize_keras_object(quantizer))
    assert restored2.get_config() == quantizer.get_config()


# -- model, compression ratio, save/load ------------------------------------------------
def tiny_model(width=4, input_shape=(16, 16, 1), classes=3):
    return vgg_small_hwgq(input_shape, classes, width=width, name="tiny")


def test_compression_ratio_matches_larq_and_hand_count():
    model = vgg_small_hwgq((32, 32, 3), 10, width=32)
    report = compression_ratio(model)
    no_scales = compression_ratio(model, include_scales=False)
    profile = lq.models.ModelProfile(model)
    assert no_scales["bits"] == profile.memory
    assert report["fp32_bits"] == profile.fp_equivalent_memory
    convs = [3 * 32, 32 * 32, 32 * 64, 64 * 64, 64 * 128, 128 * 128]
    binary = 9 * sum(convs) + 4 * 4 * 128 * 10
    channels = [32, 32, 64, 64, 128, 128, 10]
    bn = 2 * sum(channels)  # moving mean/var only (center=False, scale=False; last BN folded)
    assert report["params_by_bits"] == {1: binary, 32: bn}
    assert report["scales"] == sum(channels)
    expected = 32 * (binary + bn) / (binary + 32 * (bn + sum(channels)))
    assert report["ratio"] == pytest.approx(expected)
    assert report["ratio"] >= 25
    assert sum(r["bits"] for r in report["layers"]) == report["bits"]
    fp_classifier = vgg_small_hwgq((32, 32, 3), 10, width=32, binary_classifier=False)
    assert compression_ratio(fp_classifier)["ratio"] < report["ratio"]


def test_model_save_load_and_checkpoint(tmp_path):
    model = tiny_model()
    x = np.random.RandomState(0).normal(size=(5, 16, 16, 1)).astype(np.float32)
    model(x, training=True)  # move BN statistics away from their init
    ref = model(x, training=False).numpy()
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded(x, training=False).numpy(), ref, atol=1e-6)
    assert any(isinstance(layer, HWGQ) for layer in loaded.layers)
    assert isinstance(binary_layers(loaded)[0].kernel_quantizer, ScaledSign)

    tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
    fresh = tiny_model()
    tf.train.Checkpoint(model=fresh).read(str(tmp_path / "ckpt")).assert_consumed()
    np.testing.assert_allclose(fresh(x, training=False).numpy(), ref, atol=1e-6)


# -- AlternateUpdate --------------------------------------------------------------------
def test_alpha_step_closed_form_never_increases_error():
    layer = lq.layers.QuantConv2D(5, 3, padding="same", use_bias=False,
                                  kernel_quantizer=ScaledSign(), kernel_constraint=None)
    rng = np.random.RandomState(0)
    xs = [tf.constant(rng.normal(size=(4, 6, 6, 3)).astype(np.float32)) for _ in range(2)]
    layer.build(xs[0].shape)
    w_target = rng.normal(size=(3, 3, 3, 5)).astype(np.float32)
    ys = [linear(layer, x, w_target) for x in xs]
    au = AlternateUpdate(steps=5, learning_rate=1e-2)
    for _ in range(4):
        sign = np.where(latent_kernel(layer).numpy() >= 0, 1.0, -1.0).astype(np.float32)
        before = au.reconstruction_error(layer, xs, ys)
        alpha = au.alpha_step(layer, xs, ys).numpy()
        after = au.reconstruction_error(layer, xs, ys)
        assert after <= before * (1 + 1e-6)
        # independent least squares: alpha_c = <Y_c, Z_c> / <Z_c, Z_c>
        z = np.concatenate([linear(layer, x, sign).numpy().reshape(-1, 5) for x in xs])
        y = np.concatenate([t.numpy().reshape(-1, 5) for t in ys])
        np.testing.assert_allclose(alpha, (y * z).sum(0) / (z * z).sum(0), rtol=1e-4)
        np.testing.assert_allclose(np.abs(latent_kernel(layer).numpy()).reshape(-1, 5).mean(0),
                                   np.abs(alpha), rtol=1e-4)
        # any other scale is worse
        for factor in (0.9, 1.1):
            q = ScaledSign()(latent_kernel(layer)).numpy() * factor
            err = sum(float(tf.reduce_sum(tf.square(t - linear(layer, x, q))))
                      for x, t in zip(xs, ys))
            assert err >= after
        au._weight_steps(layer, xs, ys)  # move the signs, then alternate again


def _train_tiny(data, width=8, epochs=2):
    recipe = recipes.get("hwgq")
    params = recipe.params()
    model = recipe.build_model("vgg_small_hwgq", data.input_shape, data.num_classes, params,
                               width=width)
    recipe.compile(model, params, total_steps=None)
    recipe.fit(model, data.train, epochs=epochs, params=params, verbose=0)
    return recipe, model


@pytest.mark.parametrize("variant", ["A", "B"])
def test_update_layer_touches_only_that_layer_and_model_still_works(mnist_small, tmp_path,
                                                                    variant):
    model = vgg_small_hwgq(mnist_small.input_shape, 10, width=4)
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(mnist_small.train.take(5), epochs=1, verbose=0)
    au = AlternateUpdate(variant=variant, iterations=1 if variant == "B" else 2, steps=3,
                         num_batches=2)
    target = binary_layers(model)[2]
    before = {id(v): v.numpy().copy() for v in model.weights}
    report = au.update_layer(model, target, mnist_small.train)
    changed = [v.name for v in model.weights if not np.array_equal(before[id(v)], v.numpy())]
    assert changed == [latent_kernel(target).name]
    assert report["layer"] == target.name and report["seconds"] > 0
    if variant == "A":
        errs, after_alpha = report["errors"], report["error_after_alpha"]
        assert all(a <= e * (1 + 1e-5) for a, e in zip(after_alpha, errs[:-1]))
    reports = au.run(model, mnist_small.train)
    assert [r["layer"] for r in reports] == [layer.name for layer in binary_layers(model)]
    assert all(r["seconds"] > 0 and "action" in r for r in reports)
    loss, acc = model.evaluate(mnist_small.test.take(2), verbose=0)
    assert np.isfinite(loss)
    model.save(str(tmp_path / "ft.keras"))
    keras.models.load_model(str(tmp_path / "ft.keras"))


def test_alternate_update_config_and_bad_arguments():
    au = AlternateUpdate(variant="b", iterations=2, steps=0, num_batches=3)
    assert au.variant == "B"
    clone = AlternateUpdate.from_config(au.get_config())
    assert clone.get_config() == au.get_config()
    restored = keras.utils.deserialize_keras_object(keras.utils.serialize_keras_object(au))
    assert restored.get_config() == au.get_config()
    with pytest.raises(ValueError, match="variant"):
        AlternateUpdate(variant="C")
    with pytest.raises(ValueError, match="iterations"):
        AlternateUpdate(iterations=0)
    with pytest.raises(ValueError, match="learning_rate"):
        AlternateUpdate(learning_rate=-1)
    with pytest.raises(ValueError, match="ScaledSign"):
        AlternateUpdate().run(keras.Sequential([keras.layers.Dense(2, input_shape=(3,))]),
                              np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="finetune"):
        recipes.get("hwgq").params({"finetune": "sometimes"})
    with pytest.raises(ValueError, match="bits"):
        recipes.get("hwgq").params({"bits": 7})


# -- end to end on real data ------------------------------------------------------------
def test_recipe_end_to_end_with_alternate_finetune(mnist_small):
    recipe = recipes.get("hwgq")
    params = recipe.params({"finetune": "alternate", "variant": "B", "iterations": 1,
                            "steps": 5, "num_batches": 4, "finetune_learning_rate": 1e-3})
    model = recipe.build_model(recipe.default_model, mnist_small.input_shape,
                               mnist_small.num_classes, params, width=8)
    recipe.compile(model, params, total_steps=None)
    history = recipe.fit(model, mnist_small.train, epochs=3, params=params, verbose=0)
    assert history.finetune["kind"] == "alternate"
    assert len(history.finetune["reports"]) == 7
    _, acc = model.evaluate(mnist_small.test, verbose=0)
    assert acc > 0.6, acc  # chance is 0.1
