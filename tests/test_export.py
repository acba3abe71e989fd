"""Deployment: every method's model converts to TFLite (LCE) and computes what Keras computes.

Tiny networks (width 8) trained a few steps on real data: MNIST from ../shared/data when it
exists, else scikit-learn's 8x8 digits (so the tests pass in a clone without ../shared).
"""

import math

import numpy as np
import pytest

from keras_wreg import cli, data, export, recipes
from keras_wreg._compat import keras, lq, tf

pytestmark = pytest.mark.slow

#: methods whose default network LCE bit-packs, with the expected number of LceBconv2d
#: (VGG-small: 5 binary convs + the classifier as a 1x1 binary conv; the first conv sees
#: the real-valued image; the binary ResNet-18 of ``fda``: its 16 binary convolutions, the
#: learnable thresholds exported as a shift before Larq's sign)
PACKED = {"larq": 6, "wreg": 6, "fda": 16, "hwgq": 6}  # hwgq: thermometer planes (multilevel)

_CACHE = {}


@pytest.fixture(scope="module")
def splits():
    return data.load_dataset(data.default_dataset(), batch_size=64, train_subset=256,
                             test_subset=64, seed=0)


@pytest.fixture(scope="module")
def images(splits):
    return np.concatenate([np.asarray(x) for x, _ in splits.test])[:64]


def trained(method, splits, key=None, overrides=None):
    """A width-8 model of ``method`` trained one short epoch with its recipe (cached)."""
    key = method if key is None else key
    if key not in _CACHE:
        keras.utils.set_random_seed(0)
        recipe = recipes.get(method)
        params = recipe.params(overrides)
        model = recipe.build_model(recipe.default_model, splits.input_shape,
                                   splits.num_classes, params, width=8)
        recipe.compile(model, params, len(splits.train))
        callbacks = recipe.callbacks(params, len(splits.train), model)
        recipe.fit(model, splits.train, 1, callbacks=callbacks, params=params, verbose=0)
        _CACHE[key] = model
    return _CACHE[key]


def _tree(flatbuffer):
    from tensorflow.lite.python import schema_py_generated as schema

    return schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(flatbuffer, 0))


def float_conv_kernels(flatbuffer):
    """The constant float32 filters of every CONV_2D / FULLY_CONNECTED op, as arrays."""
    tree = _tree(flatbuffer)
    kernels = []
    for graph in tree.subgraphs:
        for op in graph.operators:
            code = tree.operatorCodes[op.opcodeIndex]
            if max(code.builtinCode, code.deprecatedBuiltinCode) not in (3, 9):  # conv, fc
                continue
            tensor = graph.tensors[op.inputs[1]]
            buffer = tree.buffers[tensor.buffer].data
            if tensor.type == 0 and buffer is not None:
                kernels.append(np.frombuffer(bytes(buffer), np.float32).reshape(tensor.shape))
    return kernels


def constant_buffers(flatbuffer):
    return [bytes(b.data) for b in _tree(flatbuffer).buffers if b.data is not None]


@pytest.mark.parametrize("method", sorted(recipes.RECIPES))
def test_every_method_converts_and_agrees(method, splits, images):
    model = trained(method, splits)
    # the float twin has nothing quantized: it converts as float ops when asked to
    flatbuffer = export.tflite_bytes(model, "lce", require_quantized=method != "float")
    result = export.parity(model, flatbuffer, images)
    assert result["n"] == 64
    assert result["agreement"] >= 0.99, result
    report = export.flatbuffer_report(flatbuffer)
    assert len(report["binary_convolutions"]) == PACKED.get(method, 0), report["ops"]
    for conv in report["binary_convolutions"]:  # 1-bit weights, 32 per int32 word
        assert conv["filter_type"] == "INT32"
    if method in ("ternary", "ste_tern"):  # float convolutions with three levels
        for kernel in float_conv_kernels(flatbuffer):
            per_channel = kernel.reshape(kernel.shape[0], -1)
            assert max(len(np.unique(row)) for row in per_channel) <= 3


def _binary_conv_model(height, width, kernel_size, strides=1, dilation_rate=1, seed=0):
    """One binary QuantConv2D (sign input, zero "same" padding, +-1 kernel) and its inputs."""
    rng = np.random.default_rng(seed)
    inputs = keras.Input((height, width, 16))
    conv = lq.layers.QuantConv2D(8, kernel_size, strides=strides, dilation_rate=dilation_rate,
                                 padding="same", input_quantizer="ste_sign",
                                 kernel_quantizer="ste_sign", kernel_constraint="weight_clip",
                                 use_bias=True, activation="relu")
    model = keras.Model(inputs, conv(inputs))
    conv.kernel.assign(rng.normal(size=conv.kernel.shape).astype(np.float32))
    conv.bias.assign(rng.normal(size=conv.bias.shape).astype(np.float32))
    return model, rng.normal(size=(8, height, width, 16)).astype(np.float32)


@pytest.mark.parametrize("height, width, kernel_size, strides, dilation_rate", [
    (1, 1, 3, 1, 1), (2, 2, 3, 1, 1), (2, 6, 3, 1, 1), (6, 2, 3, 1, 1), (3, 3, 3, 1, 1),
    (4, 4, 5, 1, 1), (2, 2, 3, 2, 1), (4, 4, 3, 1, 2), (6, 6, 3, 1, 1)])
def test_zero_padded_binary_conv_on_small_maps(height, width, kernel_size, strides,
                                               dilation_rate):
    """LCE 0.16's zero-padding correction is wrong when the map is smaller than the (dilated)
    kernel (outputs off by up to the number of padded taps); the export must still compute
    exactly what Keras computes there, and keep the convolution bit-packed."""
    model, x = _binary_conv_model(height, width, kernel_size, strides, dilation_rate)
    flatbuffer = export.tflite_bytes(model, "lce")
    predicted = export.tflite_predict(flatbuffer, x)
    np.testing.assert_allclose(predicted, model.predict(x, verbose=0), atol=1e-4)
    assert export.flatbuffer_report(flatbuffer)["ops"].get("LceBconv2d") == 1
    stripped = export.strip_for_inference(model)
    small = min(height, width) < (kernel_size - 1) * dilation_rate + 1
    assert isinstance(stripped.layers[1], export.OnePaddedBinaryConv2D) == small



def _tied_batchnorm_model(pool, center):
    """Binary conv -> (max pool) -> BatchNormalization at its initial state -> binary conv:
    the normalised accumulators are integers scaled by 1/sqrt(1 + eps), exactly 0 often."""
    keras.utils.set_random_seed(0)
    binary = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign", use_bias=False,
                  kernel_constraint="weight_clip", padding="same")
    x = inputs = keras.Input((8, 8, 4))
    x = lq.layers.QuantConv2D(8, 3, **binary)(x)
    if pool:
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.BatchNormalization(center=center)(x)
    x = lq.layers.QuantConv2D(8, 3, **binary)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x))


@pytest.mark.parametrize("pool, center, flip", [(False, True, False), (True, False, False),
                                               (False, True, True)])
def test_sign_ties_after_batchnorm_binarize_as_in_keras(pool, center, flip):
    """Larq's sign gives +1 at 0; LCE's bit-packed output compares strictly and gives -1 (89 %
    agreement on this model before the fix). strip_for_inference moves the boundary of tied
    channels half-way between two accumulators: same Keras outputs, exact LCE outputs
    (``flip``: negative gammas on half the channels, where the boundary moves the other way)."""
    model = _tied_batchnorm_model(pool, center)
    if flip:
        model.layers[2].gamma.assign(np.array([1.0, -1.0] * 4, np.float32))
    x = np.random.default_rng(0).normal(size=(64, 8, 8, 4)).astype(np.float32)
    stripped = export.strip_for_inference(model)
    np.testing.assert_array_equal(stripped.predict(x, verbose=0), model.predict(x, verbose=0))
    moved = stripped.layers[3 if pool else 2].moving_mean.numpy()
    assert np.all(moved != 0.0)  # every channel was tied at its initial state
    assert np.all(np.abs(moved) == np.float32(0.5))  # half an accumulator step (scale ~ 1)
    flatbuffer = export.tflite_bytes(model, "lce")
    np.testing.assert_allclose(export.tflite_predict(flatbuffer, x), model.predict(x, verbose=0),
                               atol=1e-4)
    assert export.flatbuffer_report(flatbuffer)["ops"].get("LceBconv2d") == 2


def test_untied_batchnorm_is_left_alone():
    model = _tied_batchnorm_model(False, True)
    bn = model.layers[2]
    bn.moving_mean.assign(np.full(8, 0.3, np.float32))  # threshold 0.3: no accumulator on it
    stripped = export.strip_for_inference(model)
    np.testing.assert_array_equal(stripped.layers[2].moving_mean.numpy(), np.full(8, 0.3,
                                                                                   np.float32))


def test_one_padded_conv_round_trip(tmp_path):
    model, x = _binary_conv_model(2, 2, 3)
    stripped = export.strip_for_inference(model)
    expected = model.predict(x, verbose=0)
    np.testing.assert_allclose(stripped.predict(x, verbose=0), expected, atol=1e-5)
    layer = stripped.layers[1]
    assert export.float32_size(model) == 4 * model.count_params()  # C is derived, not stored
    clone = export.OnePaddedBinaryConv2D.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert layer.get_config()["activation"] == "relu"
    path = tmp_path / "stripped.keras"
    stripped.save(path)
    reloaded = keras.models.load_model(path)
    assert isinstance(reloaded.layers[1], export.OnePaddedBinaryConv2D)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), expected, atol=1e-5)


@pytest.mark.parametrize("method", sorted(PACKED))
def test_binary_methods_agree_on_8x8_digits(method):
    """The clone with no ../shared trains on scikit-learn's 8x8 digits: VGG-small's last
    binary convolutions then see 2x2 maps (the LCE padding case above)."""
    digits = data.load_dataset("digits", batch_size=64, train_subset=256, test_subset=64,
                               seed=0)
    model = trained(method, digits, key=("digits", method))
    x = np.concatenate([np.asarray(x) for x, _ in digits.test])[:64]
    flatbuffer = export.tflite_bytes(model, "lce")
    result = export.parity(model, flatbuffer, x)
    assert result["agreement"] >= 0.99, result
    assert len(export.flatbuffer_report(flatbuffer)["binary_convolutions"]) == PACKED[method]


def test_binary_kernels_are_packed_not_latent(splits, images):
    """Fails if the export kept latent weights: scaling every latent weight by a random
    positive factor (same signs) must give a byte-identical set of constants, while one
    flipped sign must not. The packed filters hold ceil(C_in / 32) words per position."""
    model = trained("larq", splits)
    reference = export.tflite_bytes(model, "lce")
    perturbed = keras.models.clone_model(model)
    perturbed.set_weights(model.get_weights())
    rng = np.random.default_rng(0)
    kernels = [layer.kernel for layer in perturbed.layers
               if getattr(layer, "kernel_quantizer", None) is not None]
    assert len(kernels) == 7
    for kernel in kernels:
        latent = getattr(kernel, "latent_variable", kernel)
        latent.assign(latent.numpy() * rng.uniform(0.2, 0.9, latent.shape).astype(np.float32))
    assert constant_buffers(export.tflite_bytes(perturbed, "lce")) == constant_buffers(reference)
    latent = getattr(kernels[2], "latent_variable", kernels[2])
    value = latent.numpy()
    value.flat[0] = -value.flat[0]
    latent.assign(value)
    assert constant_buffers(export.tflite_bytes(perturbed, "lce")) != constant_buffers(reference)
    for conv in export.flatbuffer_report(reference)["binary_convolutions"]:
        out_channels, kh, kw, words = conv["filter_shape"]
        assert conv["filter_bytes"] == 4 * out_channels * kh * kw * words
    input_depths = [layer.input_shape[-1] for layer in model.layers
                    if getattr(layer, "kernel_quantizer", None) is not None][1:]
    assert [c["filter_shape"][-1] for c in export.flatbuffer_report(reference)
            ["binary_convolutions"]] == [math.ceil(d / 32) for d in input_depths]


def test_float_target_holds_quantized_values(splits, images):
    model = trained("wreg", splits)
    flatbuffer = export.tflite_bytes(model, "tflite")
    assert export.parity(model, flatbuffer, images)["agreement"] >= 0.99
    kernels = float_conv_kernels(flatbuffer)
    assert len(kernels) == 7  # 6 convolutions + the classifier, all float32
    for kernel in kernels:  # ±1 times the BN scale TFLite folds in per output channel
        magnitudes = np.abs(kernel.reshape(kernel.shape[0], -1))
        np.testing.assert_allclose(magnitudes, magnitudes[:, :1].repeat(
            magnitudes.shape[1], axis=1), rtol=1e-6)  # latent weights would vary
    assert not export.flatbuffer_report(flatbuffer)["binary_convolutions"]


def test_strip_for_inference_drops_training_state(splits, images):
    wreg = trained("wreg", splits, key="wreg_in_loss", overrides={"use_wreg": True})
    assert wreg.losses  # WReg penalties
    stripped = export.strip_for_inference(wreg)
    assert not stripped.losses
    for layer in stripped.layers:
        for key, value in layer.get_config().items():
            if key.endswith(("_regularizer", "_constraint")) or key == "kernel_quantizer":
                assert value is None, (layer.name, key)
    np.testing.assert_allclose(stripped.predict(images, verbose=0),
                               wreg.predict(images, verbose=0), atol=1e-5)
    ternary = trained("ternary", splits)
    names = [v.name for v in export.strip_for_inference(ternary).weights]
    assert not [n for n in names if "temperature" in n]  # the schedule variable is gone
    cluster = trained("cluster", splits)
    stripped = export.strip_for_inference(cluster)
    assert len(stripped.weights) < len(cluster.weights)  # centres and warm-up dropped
    assert all(type(layer).__module__.startswith("tf_keras") for layer in stripped.layers)
    kernel = next(layer.kernel for layer in stripped.layers if hasattr(layer, "kernel"))
    assert len(np.unique(kernel.numpy())) <= 4  # snapped by the recipe, kept as they are


def test_to_tflite_writes_file_and_checks_arguments(tmp_path, splits):
    model = trained("larq", splits)
    path = export.to_tflite(model, tmp_path / "sub" / "m.tflite")
    assert path.read_bytes()[4:8] == b"TFL3"
    assert export.float32_size(model) == 4 * model.count_params()
    with pytest.raises(ValueError, match="path"):
        export.to_tflite(model, tmp_path / "m.bin")
    with pytest.raises(ValueError, match="target"):
        export.tflite_bytes(model, "onnx")
    with pytest.raises(TypeError, match="model"):
        export.tflite_bytes("model.keras")
    with pytest.raises(ValueError, match="flatbuffer"):
        export.load_interpreter(tmp_path / "missing.tflite")
    with pytest.raises(ValueError, match="images"):
        export.parity(model, path, np.zeros((2, 5, 5, 1), np.float32))


def test_model_without_quantized_layers_is_rejected(splits):
    fp = keras.Sequential([keras.Input(splits.input_shape), keras.layers.Flatten(),
                           keras.layers.Dense(10)], name="plain")
    with pytest.raises(export.ExportError, match="'plain' has no quantized layer"):
        export.tflite_bytes(fp, "lce")
    assert export.tflite_bytes(fp, "tflite", require_quantized=False)[4:8] == b"TFL3"


def test_unsupported_layer_is_named():
    inputs = keras.Input((8, 8, 1))
    x = lq.layers.QuantConv2D(4, 3, kernel_quantizer="ste_sign",
                              kernel_constraint="weight_clip")(inputs)
    x = keras.layers.Lambda(lambda t: tf.numpy_function(lambda a: 2 * a, [t], tf.float32),
                            name="numpy_op")(x)
    model = keras.Model(inputs, keras.layers.Flatten()(x), name="odd")
    for target in ("lce", "tflite"):
        with pytest.raises(export.ExportError, match="unsupported layer 'numpy_op'"):
            export.tflite_bytes(model, target)


def test_subclassed_model_is_rejected():
    class Net(keras.Model):
        def __init__(self):
            super().__init__(name="net")
            self.conv = lq.layers.QuantConv2D(2, 3, kernel_quantizer="ste_sign")

        def call(self, x):
            return self.conv(x)

    net = Net()
    net(np.zeros((1, 8, 8, 1), np.float32))
    with pytest.raises(export.ExportError, match="subclassed"):
        export.tflite_bytes(net)


def test_cli_train_export_eval(tmp_path, capsys):
    run = tmp_path / "run"
    dataset = data.default_dataset()
    cli.main(["train", "--method", "larq", "--dataset", dataset, "--train-subset", "256",
              "--test-subset", "64", "--epochs", "1", "--width", "8", "--out", str(run),
              "--verbose", "0"])
    printed = capsys.readouterr().out
    assert (run / "model.tflite").read_bytes()[4:8] == b"TFL3"
    assert "top-1 agreement" in printed and "bit-packed: 6 binary convolutions" in printed
    assert cli.main(["export", str(run), "--target", "tflite", "--parity-images", "32"]) == 0
    printed = capsys.readouterr().out
    assert (run / "model_float.tflite").is_file()
    assert "KiB" in printed and "smaller" in printed and "on 32 test images" in printed
    for model in (run / "model.tflite", run / "model.keras"):
        assert cli.main(["eval", str(model), "--test-subset", "64"]) == 0
        assert "accuracy" in capsys.readouterr().out
    assert cli.main(["train", "--method", "larq", "--dataset", dataset, "--train-subset", "64",
                     "--test-subset", "64", "--epochs", "1", "--width", "8", "--out",
                     str(tmp_path / "quiet"), "--verbose", "0", "--no-export"]) == 0
    assert not (tmp_path / "quiet" / "model.tflite").exists()


@pytest.mark.parametrize("make_input, problem", [
    (lambda d: d / "missing.keras", "no such file"),
    (lambda d: (d / "notes.txt").write_text("hi") and d / "notes.txt", "not a model"),
    (lambda d: (d / "bad.keras").write_text("hi") and d / "bad.keras", "not a loadable"),
    (lambda d: (d / "m.tflite").write_bytes(b"0000TFL3") and d / "m.tflite",
     "is a TFLite flatbuffer"),
    (lambda d: d, "no model.keras"),
])
def test_cli_export_bad_input(tmp_path, capsys, make_input, problem):
    path = make_input(tmp_path)
    assert cli.main(["export", str(path)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and problem in lines[0], captured.err
    assert "Traceback" not in captured.err


def test_cli_export_model_without_quantized_layers(tmp_path, capsys):
    fp = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                           keras.layers.Dense(10)], name="plain")
    export.save_model(fp, tmp_path / "fp.keras")
    assert cli.main(["export", str(tmp_path / "fp.keras")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fp.keras" in err[0] and "no quantized layer" in err[0]
