"""Larq's contracts kept by keras_wreg's quantizers and regularizers."""

import numpy as np
import pytest

import keras_wreg as kw
from keras_wreg._compat import BaseQuantizer, keras, lq

QUANTIZERS = {
    "scaled_sign": lambda **k: kw.ScaledSign(**k),
    "hwgq": lambda **k: kw.HWGQ(2, **k),
    "ste_tern_sigmoid": lambda **k: kw.RescaledSigmoidTernary(**k),
}


def _fit_quant_dense(quantizer):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8,)),
        lq.layers.QuantDense(4, kernel_quantizer=quantizer, kernel_constraint=None,
                             kernel_initializer=keras.initializers.RandomUniform(-0.01, 0.01)),
    ])
    model.compile(keras.optimizers.SGD(1.0), "mse")
    rng = np.random.default_rng(0)
    history = model.fit(rng.normal(size=(64, 8)), rng.normal(size=(64, 4)), batch_size=16,
                        epochs=1, verbose=0)
    return model, history


@pytest.mark.parametrize("name", sorted(QUANTIZERS))
def test_quantizers_report_flip_ratio_under_metrics_scope(name):
    assert isinstance(QUANTIZERS[name](), BaseQuantizer)
    with lq.context.metrics_scope(["flip_ratio"]):
        model, history = _fit_quant_dense(QUANTIZERS[name]())
    keys = [k for k in history.history if k.startswith("flip_ratio")]
    assert keys, history.history
    # small weights, a large learning rate: signs flip, so the metric is measured, not zero
    assert 0.0 < history.history[keys[0]][-1] <= 1.0


@pytest.mark.parametrize("name", sorted(QUANTIZERS))
def test_quantizers_take_metrics_argument(name):
    _, history = _fit_quant_dense(QUANTIZERS[name](metrics=["flip_ratio"]))
    assert any(k.startswith("flip_ratio") for k in history.history)
    _, history = _fit_quant_dense(QUANTIZERS[name]())  # no scope, no metrics: none reported
    assert not any(k.startswith("flip_ratio") for k in history.history)


REGULARIZERS = {
    "wreg": lambda: kw.WReg(1e-3),
    "ternary": lambda: kw.TernaryReg(1e-2),
}


@pytest.mark.parametrize("fmt", ["h5", "keras"])
@pytest.mark.parametrize("name", sorted(REGULARIZERS))
def test_models_with_regularizers_reload_from_h5_as_from_keras(tmp_path, name, fmt):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((6,)),
        lq.layers.QuantDense(5, kernel_quantizer="ste_sign", input_quantizer="ste_sign",
                             kernel_constraint=lq.constraints.WeightClip(2.0),
                             kernel_regularizer=REGULARIZERS[name]()),
        keras.layers.Dense(3, kernel_regularizer=REGULARIZERS[name]()),
    ])
    model.compile("adam", "mse")
    x = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
    path = tmp_path / f"m.{fmt}"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.layers[0].kernel_regularizer) is type(model.layers[0].kernel_regularizer)
    assert loaded.layers[1].kernel_regularizer.get_config() == \
        model.layers[1].kernel_regularizer.get_config()
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    np.testing.assert_allclose(sum(loaded.losses).numpy(), sum(model.losses).numpy(), rtol=1e-6)
