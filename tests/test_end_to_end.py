"""A small binary VGG with WReg + CosineMomentum learns real MNIST and moves towards the grid."""

import pytest

from keras_wreg import callbacks, recipes
from keras_wreg._compat import keras

pytestmark = pytest.mark.slow


def train(method, overrides, splits, epochs=2):
    keras.utils.set_random_seed(0)
    recipe = recipes.get(method)
    params = recipe.params(overrides)
    model = recipe.build_model("vgg_small", splits.input_shape, splits.num_classes, params,
                               width=8)
    recipe.compile(model, params, epochs * len(splits.train))
    start = callbacks.grid_stats(model, alpha="channel")
    recipe.fit(model, splits.train, epochs, params=params, verbose=0)
    end = callbacks.grid_stats(model, alpha="channel")
    accuracy = model.evaluate(splits.test, verbose=0)[1]
    return model, accuracy, start, end


def test_wreg_cosine_momentum_learns_and_pulls_weights_to_grid(mnist_small):
    overrides = dict(use_wreg=True, strength=1e-4, eta=1e-3, alpha="channel")
    model, accuracy, start, end = train("wreg", overrides, mnist_small)
    _, _, base_start, base_end = train("larq", {}, mnist_small)
    assert accuracy > 0.25  # chance is 0.10
    assert type(model.optimizer).__name__ == "CosineMomentum"
    # latent weights end closer to their ±alpha_c grid than they started, and than plain Larq
    assert end["quant_error"] < 0.97 * start["quant_error"]
    assert end["quant_error"] < base_end["quant_error"]
    assert end["near_grid"] > base_end["near_grid"]
