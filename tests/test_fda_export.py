"""FDA models deploy whole: every ThresholdSign becomes a float shift plus Larq's sign (the same
outputs, ties at the threshold included), so Larq Compute Engine bit-packs all 16 binary
convolutions of the FDA ResNet-18 and the flatbuffer agrees with the Keras model."""

import numpy as np
import pytest

import keras_wreg as kw
from keras_wreg._compat import keras, tf
from keras_wreg.export import PackableThresholdSign


@pytest.mark.parametrize("input_dependent", [False, True])
def test_packable_sign_equals_threshold_sign_ties_included(input_dependent):
    keras.utils.set_random_seed(0)
    original = kw.ThresholdSign(groups=2, input_dependent=input_dependent)
    x = tf.constant(np.random.default_rng(0).normal(size=(3, 4, 4, 4)).astype("float32"))
    e = tf.constant([[0.0, 0.5], [0.25, 1.0], [1.0, 0.0]])
    inputs = [x, e] if input_dependent else x
    original(inputs)
    original.tau.assign([0.5, -0.25, 0.0, 1.0])
    if input_dependent:
        original.delta.assign([1.0, 2.0, -1.0, 0.5])
    tau = original.threshold(inputs)
    x_tie = tf.concat([x[:, :2], tf.broadcast_to(tau, (3, 2, 4, 4))], axis=1)  # x == tau
    inputs = [x_tie, e] if input_dependent else x_tie
    packable = PackableThresholdSign.from_config(original.get_config())
    packable(inputs)
    packable.set_weights(original.get_weights())
    np.testing.assert_array_equal(packable(inputs).numpy(), original(inputs).numpy())
    assert np.all(packable(inputs).numpy()[:, 2:] == 1.0)  # sign(0) = +1 on both


@pytest.mark.parametrize("variant", ["none", "static", "full"])
def test_fda_resnet_exports_with_every_binary_convolution_bit_packed(variant, tmp_path):
    """16x16 inputs put the last stage's 3x3 binary convolutions on 2x2 maps, where LCE's
    zero-padding correction is wrong: a convolution fed by a separate sign layer must take the
    one-padded form too (before that fix the plain Larq ResNet agreed on 53 % of images)."""
    keras.utils.set_random_seed(0)
    recipe = kw.recipes.get("fda")
    params = recipe.params({"variant": variant})
    model = recipe.build_model("resnet18", (16, 16, 3), 10, params, width=4)
    recipe.compile(model, params, 4)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 16, 16, 3)).astype("float32")
    model.fit(x, rng.integers(0, 10, 32), epochs=1, batch_size=16, verbose=0)
    stripped = kw.export.strip_for_inference(model)
    packable = sum(isinstance(la, PackableThresholdSign) for la in stripped.layers)
    assert packable == (0 if variant == "none" else 16)
    # exact up to float rounding (the one-padded convolutions add their correction separately)
    np.testing.assert_allclose(stripped.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-5)
    path = tmp_path / "fda.tflite"
    kw.export.to_tflite(model, path)
    report = kw.export.deploy_report(model, path, x)
    assert report["binary_convolutions"] == 16  # fda: 0 before PackableThresholdSign
    assert report["parity"]["agreement"] == 1.0
    assert report["parity"]["max_abs_diff"] < 1e-4


def _digits_model(method, model_name):
    splits = kw.data.load_dataset("digits", batch_size=64)
    keras.utils.set_random_seed(0)
    recipe = kw.recipes.get(method)
    params = recipe.params()
    model = recipe.build_model(model_name, splits.input_shape, 10, params, width=8)
    recipe.compile(model, params, 2 * len(splits.train))
    model.fit(splits.train, epochs=2, verbose=0)
    images = np.concatenate([x.numpy() for x, _ in splits.test.take(2)])
    calibration = np.concatenate([x.numpy() for x, _ in splits.train.take(2)])
    return model, images, calibration


def test_int8_edges_convert_to_int8_next_to_bit_packed_convolutions():
    model, images, calibration = _digits_model("larq", "vgg_small")
    stripped = kw.export.strip_for_inference(model, int8=calibration)
    kinds = [type(layer).__name__ for layer in stripped.layers]
    assert kinds.count("Int8Conv2D") == 1  # the first convolution, which reads the image
    flatbuffer = kw.export.tflite_bytes(model, "lce", int8=calibration)
    report = kw.export.flatbuffer_report(flatbuffer)
    assert report["int8_ops"] == {"CONV_2D": 1}
    assert len(report["binary_convolutions"]) == 6  # the binary ones stay bit-packed
    plain = kw.export.flatbuffer_report(kw.export.tflite_bytes(model, "lce"))
    assert plain["int8_ops"] == {} and len(plain["binary_convolutions"]) == 6
    # no agreement threshold here: post-training int8 of the first convolution moves values
    # across the next layer's sign, and how many predictions change depends on the model
    # (measured in the closing note of issue 24); the structure is what is tested


def test_int8_classifier_of_the_resnet_and_bad_calibration():
    model, images, calibration = _digits_model("fda", "resnet18")
    report = kw.export.flatbuffer_report(kw.export.tflite_bytes(model, "lce", int8=calibration))
    assert report["int8_ops"] == {"CONV_2D": 1, "FULLY_CONNECTED": 1}
    assert len(report["binary_convolutions"]) == 16
    for edges, kinds in (("first", ["Int8Conv2D"]), ("classifier", ["Int8Dense"])):
        stripped = kw.export.strip_for_inference(model, int8=calibration, int8_edges=edges)
        assert [type(la).__name__ for la in stripped.layers
                if type(la).__name__.startswith("Int8")] == kinds
    with pytest.raises(ValueError, match="`int8_edges`"):
        kw.export.strip_for_inference(model, int8=calibration, int8_edges="last")
    for bad in (calibration[:, :4], np.full_like(calibration[:2], np.nan), "images"):
        with pytest.raises(ValueError, match="`int8`"):
            kw.export.strip_for_inference(model, int8=bad)
    with pytest.raises(ValueError, match="input_range"):
        kw.export.Int8Dense(2, input_range=(1.0, 2.0))


@pytest.mark.parametrize("variant, adjust, excite, threshold", [
    ("full", 16, 16, 16), ("no_excite", 16, 0, 16), ("no_adjust", 0, 16, 16),
    ("adjust_only", 16, 0, 0), ("static", 0, 0, 16), ("none", 0, 0, 0)])
def test_fda_ablations_keep_the_parts_they_name(variant, adjust, excite, threshold):
    recipe = kw.recipes.get("fda")
    model = recipe.build_model("resnet18", (16, 16, 3), 10, recipe.params({"variant": variant}),
                               width=4)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert (kinds.count("FeatureDistributionAdjust"), kinds.count("GroupExcitation"),
            kinds.count("ThresholdSign")) == (adjust, excite, threshold)
    assert kinds.count("SteSign") == 16 - threshold  # the units without a threshold: Larq's sign
    dependent = [la.input_dependent for la in model.layers if type(la).__name__ == "ThresholdSign"]
    assert all(dependent) == bool(excite) or not dependent


def test_fda_baseline_activation_is_larqs_approx_sign():
    recipe = kw.recipes.get("fda")
    model = recipe.build_model("resnet18", (16, 16, 3), 10,
                               recipe.params({"variant": "none", "activation": "approx_sign"}),
                               width=4)
    assert [type(la).__name__ for la in model.layers].count("ApproxSign") == 16


def test_int8_dense_outputs_lie_on_the_measured_grid_and_near_the_float_layer():
    """8-bit fake quantization: every output is one of 256 levels of ``output_range`` (a grid
    of step ``(high - low) / 255``, nudged so that 0 is a level), and the layer stays within a
    few levels of the float ``Dense`` with the same weights."""
    keras.utils.set_random_seed(0)
    x = tf.random.uniform((64, 16), -1.0, 1.0)
    dense = keras.layers.Dense(8)
    reference = dense(x).numpy()
    low, high = float(reference.min()) - 0.1, float(reference.max()) + 0.1
    int8 = kw.export.Int8Dense(8, input_range=(-1.0, 1.0), output_range=(low, high))
    int8(x)
    int8.set_weights(dense.get_weights())
    out = int8(x).numpy()
    step = (high - low) / 255
    levels = out / step  # 0 is a level, so every level is a multiple of the step
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-2)
    assert len(np.unique(np.round(levels))) <= 256
    assert np.max(np.abs(out - reference)) < 4 * step


def test_larq_recipe_dorefa_activations():
    recipe = kw.recipes.get("larq")
    model = recipe.build_model("vgg_small_hwgq", (8, 8, 3), 10,
                               recipe.params({"activation": "dorefa", "activation_bits": 2}),
                               width=2)
    quantizers = [type(la).__name__ for la in model.layers]
    assert "DoReFa" in quantizers or any(
        type(getattr(la, "input_quantizer", None)).__name__ == "DoReFa" for la in model.layers)


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_int8_layers_survive_save_and_load(tmp_path, fmt):
    x = inputs = keras.Input((6, 6, 3))
    x = kw.export.Int8Conv2D(4, 3, input_range=(-1.0, 1.0), output_range=(-3.0, 3.0))(x)
    x = keras.layers.Flatten()(x)
    outputs = kw.export.Int8Dense(5, input_range=(-3.0, 3.0), output_range=(-5.0, 5.0))(x)
    model = keras.Model(inputs, outputs)
    images = np.random.default_rng(0).uniform(-1, 1, (4, 6, 6, 3)).astype("float32")
    model.save(tmp_path / f"m.{fmt}")
    loaded = keras.models.load_model(tmp_path / f"m.{fmt}")
    assert [type(la).__name__ for la in loaded.layers[1:]] == ["Int8Conv2D", "Flatten", "Int8Dense"]
    assert loaded.layers[1].get_config() == model.layers[1].get_config()
    np.testing.assert_array_equal(loaded.predict(images, verbose=0),
                                  model.predict(images, verbose=0))
