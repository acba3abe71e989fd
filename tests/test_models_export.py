import numpy as np
import pytest

from keras_wreg import WReg, export, models
from keras_wreg._compat import keras, lq


def test_vgg_small_layout_and_first_layer_full_precision_input():
    model = models.build("vgg_small", (32, 32, 3), 10, width=8, kernel_regularizer=WReg(1e-5))
    quant = [l for l in model.layers if isinstance(l, (lq.layers.QuantConv2D, lq.layers.QuantDense))]
    assert [l.filters for l in quant[:6]] == [8, 8, 16, 16, 32, 32]
    assert quant[0].input_quantizer is None
    assert all(l.input_quantizer is not None for l in quant[1:])
    regs = [l.kernel_regularizer for l in quant]
    assert all(isinstance(r, WReg) for r in regs) and len({id(r) for r in regs}) == len(regs)
    assert model.output_shape == (None, 10)


def test_full_precision_twin_has_no_quantizers():
    model = models.build("vgg_small_fp", (32, 32, 3), 10, width=8)
    quant = [l for l in model.layers if hasattr(l, "kernel_quantizer")]
    assert quant and all(l.kernel_quantizer is None and l.input_quantizer is None for l in quant)
    assert any(isinstance(l, keras.layers.Activation) and l.get_config()["activation"] == "relu"
               for l in model.layers)


@pytest.mark.parametrize("kwargs,name", [
    (dict(width=0), "width"), (dict(num_classes=1), "num_classes"),
    (dict(input_shape=(32, 32)), "input_shape"),
])
def test_bad_model_arguments(kwargs, name):
    args = dict(input_shape=(32, 32, 3), num_classes=10, width=8)
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        models.vgg_small(args.pop("input_shape"), args.pop("num_classes"), **args)
    with pytest.raises(ValueError, match="model"):
        models.build("resnet1000", (32, 32, 3), 10)


def test_packed_export_round_trip_and_size(tmp_path):
    model = models.build("vgg_small", (8, 8, 1), 10, width=4)
    size = export.export_packed_weights(model, tmp_path / "w.npz")
    weights = export.load_packed_weights(tmp_path / "w.npz")
    quantized = export.quantized_kernels(model)
    assert quantized and set(quantized) <= set(weights)
    for name, value in quantized.items():
        np.testing.assert_array_equal(weights[name], value)
        assert set(np.unique(value)) <= {-1.0, 1.0}
    assert size["packed_bytes"] > 0 and size["compression_ratio"] > 5
    assert "Total" in export.model_summary_text(model)
    with pytest.raises(ValueError, match="path"):
        export.save_model(model, tmp_path / "m.h5")


@pytest.mark.parametrize("quantizer,bits", [("ste_tern", 2), ("scaled_sign", 1)])
def test_packed_export_low_bit_codebooks(tmp_path, quantizer, bits):
    model = models.build("vgg_small", (8, 8, 1), 10, width=4, kernel_quantizer=quantizer)
    size = export.export_packed_weights(model, tmp_path / "w.npz")
    weights = export.load_packed_weights(tmp_path / "w.npz")
    for name, value in export.quantized_kernels(model).items():
        np.testing.assert_allclose(weights[name], value, rtol=0, atol=0)
    n = sum(int(np.prod(v.shape)) for v in export.quantized_kernels(model).values())
    assert size["packed_bytes"] <= n * bits / 8 + 64  # b bits per weight (+ byte padding)
