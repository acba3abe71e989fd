"""Issue 16, seed 003: decoupled and ramped TernaryReg in stage 1 of the ternary recipe."""

import numpy as np
import pytest

from keras_wreg import recipes
from keras_wreg._compat import keras, tf
from keras_wreg.optimizers import DecoupledRegularization
from keras_wreg.schedules import Ramp


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8, 8, 1)).astype("float32")
    y = (x.mean(axis=(1, 2, 3)) > 0).astype("int64")
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(16)


def _kernels(model):
    return [layer.kernel for layer in model.layers
            if getattr(layer, "kernel_quantizer", None) is not None]


def test_decoupled_stage1_has_no_loss_term_and_a_ramped_wrapper():
    recipe = recipes.get("ternary")
    params = recipe.params({"decoupled": True, "ramp": "cosine", "ramp_start": 0.25,
                            "strength": 5.0})
    model = recipe.build_model("vgg_small", (8, 8, 1), 2, params, width=4)
    clone = recipe.stage1_model(model, params)
    assert not clone.losses
    select = [la.name for la in model.layers if getattr(la, "kernel_quantizer", None) is not None]
    opt = recipe.stage1_optimizer(clone, params, 100, select=select)
    assert isinstance(opt, DecoupledRegularization)
    assert isinstance(opt.schedule, Ramp)
    assert (opt.schedule.start_step, opt.schedule.end_step) == (25, 100)
    assert opt.regularizer.strength == 5.0
    chosen = [v for v in clone.trainable_variables if opt.is_selected(v)]
    assert len(chosen) == 7


def test_ramp_needs_decoupled():
    recipe = recipes.get("ternary")
    params = recipe.params({"ramp": "linear", "decoupled": False})
    model = recipe.build_model("vgg_small", (8, 8, 1), 2, params, width=4)
    with pytest.raises(ValueError, match="`ramp`"):
        recipe.stage1_optimizer(recipe.stage1_model(model, params), params, 10)
    with pytest.raises(ValueError, match="ramp"):
        recipe.params({"ramp": "exp"})


def _ternary_distance(model):
    """Mean over kernels of the cosine distance to the TWN projection."""
    from keras_wreg.regularizers.ternary_reg import TernaryReg

    reg = TernaryReg(strength=1.0)
    return float(np.mean([float(reg(tf.convert_to_tensor(getattr(k, "latent_variable", k))))
                          for k in _kernels(model)]))


def test_decoupled_stage1_pulls_kernels_towards_ternary():
    recipe = recipes.get("ternary")
    out = {}
    for name, overrides in (("off", {"strength": 0.0}),
                            ("on", {"strength": 200.0, "decoupled": True, "ramp": "linear"})):
        params = recipe.params({"stage1_fraction": 0.5, **overrides})
        keras.utils.set_random_seed(0)
        model = recipe.build_model("vgg_small", (8, 8, 1), 2, params, width=4)
        recipe.fit(model, _data(), 2, params=params, verbose=0)
        out[name] = _ternary_distance(model)
    assert out["on"] < out["off"]
