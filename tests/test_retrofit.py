"""keras_wreg.apply: a method attached to an existing Larq model (issue 15)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import keras_wreg as kw
from keras_wreg._compat import keras, lq

ROOT = Path(__file__).resolve().parent.parent


def _example():
    spec = importlib.util.spec_from_file_location(
        "retrofit_binarynet", ROOT / "examples" / "retrofit_binarynet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def binarynet():
    model = _example().binarynet((8, 8, 1), 10, width=2)
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 8, 8, 1)).astype("float32"), rng.integers(0, 10, 64)
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)  # non-initial weights, BN stats
    return model, x, y


def _quantized(model):
    return [l for l in model.layers if isinstance(l, (lq.layers.QuantConv2D,
                                                      lq.layers.QuantDense))]


def test_apply_attaches_wreg_keeps_weights_trains_and_round_trips(binarynet, tmp_path):
    model, x, y = binarynet
    reg = kw.WReg(strength=1e-3)
    copy = kw.apply(model, kernel_regularizer=reg,
                    kernel_constraint=lq.constraints.WeightClip(2.0))
    assert copy is not model and len(copy.matched_layers) == len(_quantized(model)) == 9
    for a, b in zip(model.get_weights(), copy.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(model(x, training=False), copy(x, training=False), atol=1e-6)
    assert not model.losses  # the original is untouched
    layers = _quantized(copy)
    assert all(isinstance(l.kernel_regularizer, kw.WReg) for l in layers)
    assert len({id(l.kernel_regularizer) for l in layers}) == len(layers)  # one per layer
    assert all(l.kernel_constraint.clip_value == 2.0 for l in layers)
    expected = [float(reg(l.kernel)) for l in layers]
    assert len(copy.losses) == len(layers)
    np.testing.assert_allclose([float(v) for v in copy.losses], expected, rtol=1e-6)
    assert min(expected) > 0

    copy.compile(kw.CosineMomentum(keras.optimizers.Adam(1e-2)),
                 "sparse_categorical_crossentropy")
    before = [w.copy() for w in copy.get_weights()]
    history = copy.fit(x, y, epochs=2, batch_size=32, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert any(not np.array_equal(a, b) for a, b in zip(before, copy.get_weights()))

    path = tmp_path / "copy.keras"
    copy.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded(x, training=False), copy(x, training=False), atol=1e-6)
    assert isinstance(_quantized(loaded)[0].kernel_regularizer, kw.WReg)
    np.testing.assert_allclose([float(v) for v in loaded.losses],
                               [float(v) for v in copy.losses], rtol=1e-6)


def test_apply_selects_layers_and_gives_each_its_own_cluster_centres(binarynet):
    model, x, _ = binarynet
    names = [l.name for l in _quantized(model)][:2]
    copy = kw.apply(model, kernel_regularizer=kw.ClusterReg(4), layers=names)
    assert list(copy.matched_layers) == names
    regs = [copy.get_layer(n).kernel_regularizer for n in names]
    assert all(isinstance(r, kw.ClusterReg) for r in regs) and regs[0] is not regs[1]
    assert copy.get_layer(_quantized(model)[2].name).kernel_regularizer is None
    centres = [v for v in copy.trainable_variables if "centers" in v.name]
    assert len(centres) == 2  # the centres train
    np.testing.assert_allclose(model(x, training=False), copy(x, training=False), atol=1e-6)
    regex = kw.apply(model, kernel_quantizer="magnitude_aware_sign", layers=r"quant_dense.*")
    assert len(regex.matched_layers) == 3
    assert type(regex.get_layer(regex.matched_layers[0]).kernel_quantizer).__name__ == \
        "MagnitudeAwareSign"
    fn = kw.apply(model, kernel_constraint=None,
                  layers=lambda l: isinstance(l, lq.layers.QuantConv2D))
    assert len(fn.matched_layers) == 6
    assert all(fn.get_layer(n).kernel_constraint is None for n in fn.matched_layers)


def test_apply_on_a_functional_model_with_a_nested_sequential():
    inner = keras.Sequential([lq.layers.QuantDense(4, kernel_quantizer="ste_sign",
                                                   input_shape=(6,), name="inner_dense")])
    inputs = keras.Input((6,))
    outputs = keras.layers.Dense(2, name="head")(inner(inputs))
    model = keras.Model(inputs, outputs)
    copy = kw.apply(model, kernel_regularizer=kw.WReg())
    assert list(copy.matched_layers) == ["inner_dense"]
    x = np.ones((2, 6), "float32")
    np.testing.assert_allclose(model(x), copy(x), atol=1e-6)
    assert len(copy.losses) == 1


def test_apply_rejects_bad_arguments(binarynet):
    model, _, _ = binarynet
    with pytest.raises(ValueError, match="at least one"):
        kw.apply(model)
    with pytest.raises(TypeError, match="model"):
        kw.apply("not a model", kernel_regularizer=kw.WReg())
    with pytest.raises(TypeError, match="layers"):
        kw.apply(model, kernel_regularizer=kw.WReg(), layers=3)
    with pytest.raises(ValueError, match="nonexistent"):
        kw.apply(model, kernel_regularizer=kw.WReg(), layers=["nonexistent"])
    with pytest.raises(ValueError, match="regex"):
        kw.apply(model, kernel_regularizer=kw.WReg(), layers="(")
    with pytest.raises(ValueError, match="No layer"):
        kw.apply(model, kernel_regularizer=kw.WReg(), layers="nothing_matches")
    with pytest.raises(TypeError, match="kernel_regularizer"):
        kw.apply(model, kernel_regularizer=3.0)
    with pytest.raises(TypeError, match="kernel_constraint"):
        kw.apply(model, kernel_constraint=kw.WReg())
    with pytest.raises(ValueError, match="no `kernel_quantizer`"):
        kw.apply(model, kernel_quantizer="ste_sign", layers=r"batch_normalization.*")


@pytest.mark.slow
def test_retrofit_example_runs(capsys):
    _example().main(["--dataset", "digits", "--width", "2", "--epochs", "1",
                     "--train-subset", "256"])
    out = capsys.readouterr().out
    assert "weights kept: True" in out and "regularization terms: 9" in out
