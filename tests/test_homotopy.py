"""The W-regularizer as the binarizer: latent (full-precision) kernels in the forward pass, a
ramped decoupled W-pull, then the snap to alpha_c·sign(w) and BN re-estimation; the result is a
plain binary model that Larq Compute Engine bit-packs."""

import numpy as np
import pytest

from keras_wreg import export, models, recipes
from keras_wreg._compat import keras, lq
from keras_wreg.regularizers import snap_binary


def test_snap_binary_puts_each_channel_on_plus_minus_its_mean_magnitude():
    keras.utils.set_random_seed(0)
    model = models.build("vgg_small", (8, 8, 1), 10, width=4, kernel_quantizer=None)
    layer = [la for la in model.layers if hasattr(la, "kernel")][2]
    w = layer.kernel.numpy().copy()
    w[0, 0, 0, 0] = 0.0  # sign(0) goes to +alpha
    layer.kernel.assign(w)
    assert snap_binary(model) == 7
    snapped = layer.kernel.numpy()
    alpha = np.mean(np.abs(w), axis=(0, 1, 2))
    np.testing.assert_allclose(snapped, np.where(w >= 0, alpha, -alpha), rtol=1e-6)
    assert snapped[0, 0, 0, 0] == pytest.approx(alpha[0])
    assert snap_binary(model, alpha=0.5) == 7
    assert set(np.unique(layer.kernel.numpy())) == {-0.5, 0.5}
    with pytest.raises(ValueError, match="`alpha`"):
        snap_binary(model, alpha=-1.0)


@pytest.fixture(scope="module")
def digits():
    """Real 8x8 handwritten digits (scikit-learn's copy) at MNIST's shape, 1,500 per epoch."""
    from conftest import _digits_as_mnist

    return _digits_as_mnist(batch_size=64, train_size=1500)


def _fit(splits, pull):
    recipe = recipes.get("wreg")
    params = recipe.params({"forward": "latent", "pull": pull, "pull_start": 0.0,
                            "use_cosine_momentum": False})
    keras.utils.set_random_seed(0)
    model = recipe.build_model("vgg_small", splits.input_shape, splits.num_classes, params,
                               width=8)
    recipe.compile(model, params, 2 * len(splits.train))
    history = recipe.fit(model, splits.train, 2, validation_data=splits.test, params=params,
                         verbose=0)
    return model, history


def test_latent_forward_pull_then_snap_gives_a_bit_packed_binary_model(digits):
    splits = digits
    model, history = _fit(splits, pull=30.0)
    # the forward pass saw the latent kernels: no kernel quantizer anywhere
    assert all(getattr(la, "kernel_quantizer", None) is None for la in model.layers)
    metrics = history.snap_metrics
    assert set(metrics) == {"near_grid", "before_snap", "after_snap_raw", "after_snap"}
    assert metrics["near_grid"] > 0.99  # the ramped pull put the weights on the grid
    _, free = _fit(splits, pull=0.0)
    assert free.snap_metrics["near_grid"] < 0.5  # without it they are not
    for layer in model.layers:
        if isinstance(layer, (lq.layers.QuantConv2D, lq.layers.QuantDense)):
            k = layer.kernel.numpy().reshape(-1, layer.kernel.shape[-1])
            assert max(len(np.unique(k[:, c])) for c in range(k.shape[1])) == 2
    flatbuffer = export.tflite_bytes(model, "lce")
    assert len(export.flatbuffer_report(flatbuffer)["binary_convolutions"]) == 6
    images = np.concatenate([x for x, _ in splits.test])[:64]
    assert export.parity(model, flatbuffer, images)["agreement"] >= 0.99


def test_forward_and_snap_settings_are_checked():
    recipe = recipes.get("wreg")
    with pytest.raises(ValueError, match="forward"):
        recipe.params({"forward": "float"})
    with pytest.raises(ValueError, match="pull_shape"):
        recipe.params({"pull_shape": "square"})
    assert recipe.params()["forward"] == "binary"  # the measured winner is the binary forward
