"""HWGQ-Net and DoReFa models deploy bit-packed: a binary-weight layer fed by a multi-level
activation becomes one LCE binary convolution over the activation's thermometer planes, with
the same outputs as the Keras model."""

import numpy as np
import pytest

import keras_wreg as kw
from keras_wreg._compat import keras, lq, tf
from keras_wreg.export import MultiLevelBinaryConv2D, MultiLevelBinaryDense
from keras_wreg.export.multilevel import activation_levels


def _spread_batchnorms(model, rng):
    """Moving statistics that spread the quantizers' inputs over every level."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(size=layer.moving_mean.shape) * 0.3)
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, layer.moving_variance.shape))


@pytest.mark.parametrize("activation", ["hwgq", "dorefa"])
def test_vgg_small_hwgq_exports_every_binary_layer_bit_packed(activation, tmp_path):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    quantizer = (kw.HWGQ(2) if activation == "hwgq"
                 else lq.quantizers.DoReFa(2, mode="activations"))
    kernel = kw.ScaledSign() if activation == "hwgq" else "magnitude_aware_sign"
    model = kw.models.vgg_small_hwgq((16, 16, 3), 10, width=4, input_quantizer=quantizer,
                                     kernel_quantizer=kernel)
    _spread_batchnorms(model, rng)
    x = rng.uniform(-1, 1, (48, 16, 16, 3)).astype("float32")
    stripped = kw.export.strip_for_inference(model)
    kinds = [type(layer).__name__ for layer in stripped.layers]
    assert kinds.count("MultiLevelBinaryConv2D") == 5 and kinds.count("MultiLevelBinaryDense") == 1
    np.testing.assert_allclose(stripped.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-5)
    path = tmp_path / "hwgq.tflite"
    kw.export.to_tflite(model, path)
    report = kw.export.deploy_report(model, path, x)
    assert report["binary_convolutions"] == 6  # before: 0 (float convolutions with +-alpha)
    assert report["parity"]["agreement"] == 1.0 and report["parity"]["max_abs_diff"] < 1e-4


@pytest.mark.parametrize("padding,strides", [("same", 1), ("valid", 1), ("same", 2)])
def test_planes_give_the_zero_padded_convolution_of_the_levels(padding, strides):
    """Non-uniform levels, a per-channel +-alpha kernel, a bias and zero padding: the stacked
    one-padded binary convolution equals Conv2D on the level values."""
    rng = np.random.default_rng(1)
    levels = (0.0, 0.5, 2.0, 2.25)
    a = rng.choice(levels, size=(3, 5, 5, 4)).astype("float32")
    kernel = (np.sign(rng.normal(size=(3, 3, 4, 6))) * rng.uniform(0.1, 2, 6)).astype("float32")
    bias = rng.normal(size=6).astype("float32")
    layer = MultiLevelBinaryConv2D(6, 3, padding=padding, strides=strides, levels=levels,
                                   activation="relu")
    layer(a)
    layer.kernel.assign(kernel)
    layer.bias.assign(bias)
    layer.set_derived_weights()
    expected = tf.nn.relu(tf.nn.conv2d(a, kernel, strides, padding.upper()) + bias)
    np.testing.assert_allclose(layer(a).numpy(), expected.numpy(), atol=1e-5)


def test_dense_planes_equal_the_dense_layer_on_levels():
    rng = np.random.default_rng(2)
    levels = activation_levels(kw.HWGQ(3))
    a = rng.choice(levels, size=(5, 12)).astype("float32")
    kernel = np.sign(rng.normal(size=(12, 3))).astype("float32")
    layer = MultiLevelBinaryDense(3, levels, use_bias=True)
    layer(a)
    layer.kernel.assign(kernel[None, None])
    layer.bias.assign([0.5, -1.0, 0.0])
    layer.set_derived_weights()
    np.testing.assert_allclose(layer(a).numpy(), a @ kernel + [0.5, -1.0, 0.0], atol=1e-5)


def test_an_input_quantizer_with_levels_is_packed_too():
    """``QuantConv2D(input_quantizer=HWGQ)`` / ``QuantDense(input_quantizer=DoReFa)``: the
    replacement quantizes its input first."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    x = lq.layers.QuantConv2D(4, 3, padding="same", input_quantizer=kw.HWGQ(2),
                              kernel_quantizer="ste_sign", kernel_constraint="weight_clip")(inputs)
    x = keras.layers.Flatten()(x)
    y = lq.layers.QuantDense(3, input_quantizer=lq.quantizers.DoReFa(2, mode="activations"),
                             kernel_quantizer="ste_sign", kernel_constraint="weight_clip")(x)
    model = keras.Model(inputs, y)
    stripped = kw.export.strip_for_inference(model)
    assert [type(la).__name__ for la in stripped.layers[1:]] == [
        "MultiLevelBinaryConv2D", "Flatten", "MultiLevelBinaryDense"]
    x = np.random.default_rng(3).normal(size=(8, 6, 6, 3)).astype("float32")
    np.testing.assert_allclose(stripped(x).numpy(), model(x).numpy(), atol=1e-5)


def test_layers_that_cannot_be_packed_keep_their_float_form():
    """A float kernel, a ternary kernel, or a layer between the quantizer and the convolution
    that changes values (BatchNormalization): no replacement."""
    inputs = keras.Input((6, 6, 3))
    a = kw.HWGQ(2)(inputs)
    float_kernel = lq.layers.QuantConv2D(4, 3, padding="same")(a)
    ternary = lq.layers.QuantConv2D(4, 3, padding="same", kernel_quantizer="ste_tern")(a)
    after_bn = lq.layers.QuantConv2D(4, 3, padding="same", kernel_quantizer="ste_sign")(
        keras.layers.BatchNormalization()(a))
    model = keras.Model(inputs, [float_kernel, ternary, after_bn])
    kinds = [type(la).__name__ for la in kw.export.strip_for_inference(model).layers]
    assert "MultiLevelBinaryConv2D" not in kinds


@pytest.mark.parametrize("levels", [(0.0,), (0.5, 1.0), (0.0, 1.0, 1.0), (0.0, np.inf),
                                    "abc", None])
def test_bad_levels_are_refused(levels):
    with pytest.raises(ValueError, match="`levels`"):
        MultiLevelBinaryConv2D(4, 3, levels=levels)
    with pytest.raises(ValueError, match="`levels`"):
        MultiLevelBinaryDense(4, levels)


def test_bad_units_are_refused():
    with pytest.raises(ValueError, match="`units`"):
        MultiLevelBinaryDense(0, (0.0, 1.0))


def test_the_stripped_model_saves_and_loads(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    x = kw.HWGQ(2)(inputs)
    x = lq.layers.QuantConv2D(4, 3, padding="same", kernel_quantizer=kw.ScaledSign())(x)
    x = keras.layers.Flatten()(kw.HWGQ(2)(x))
    y = lq.layers.QuantDense(3, kernel_quantizer=kw.ScaledSign(), use_bias=True)(x)
    stripped = kw.export.strip_for_inference(keras.Model(inputs, y))
    for layer in stripped.layers:
        if isinstance(layer, (MultiLevelBinaryConv2D, MultiLevelBinaryDense)):
            clone = type(layer).from_config(layer.get_config())
            assert clone.get_config() == layer.get_config()
    path = tmp_path / "stripped.keras"
    stripped.save(path)
    loaded = keras.models.load_model(path)
    x = np.random.default_rng(4).normal(size=(4, 6, 6, 3)).astype("float32")
    np.testing.assert_allclose(loaded(x).numpy(), stripped(x).numpy(), atol=1e-6)
