"""The tf-keras optimizer contract, kept through keras_wreg's optimizer wrappers.

Every option a plain tf-keras optimizer takes is applied (or refused) through the wrapper and
round-trips through ``get_config``; the wrapped optimizer's state goes wherever the wrapper goes
(``set_weights``, ``.h5``, ``.keras``, SavedModel); with the extra term off the wrapper produces
the wrapped optimizer's weights.
"""

import numpy as np
import pytest

import keras_wreg as kw
from keras_wreg._compat import keras, lq, optimizer_own_variables, tf

INNER = {
    "adam": lambda: keras.optimizers.Adam(1e-2),
    "sgd_momentum": lambda: keras.optimizers.SGD(0.05, momentum=0.9),
    "rmsprop": lambda: keras.optimizers.RMSprop(1e-2),
    "adafactor": lambda: keras.optimizers.Adafactor(0.05),
    "lion": lambda: keras.optimizers.Lion(1e-3),
}

# a wrapper whose extra term is off, for each wrapper class
OFF = {
    "cosine_eta0": lambda inner, **kw_: kw.CosineMomentum(inner, eta=0.0, region="both", **kw_),
    "decoupled_0": lambda inner, **kw_: kw.DecoupledRegularization(
        inner, kw.WReg(strength=0.0, reduce="sum"), **kw_),
}


def model(seed=0, constraint=None, init=(-2, 2)):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6, 6, 1))
    x = lq.layers.QuantConv2D(4, 3, kernel_quantizer="ste_sign", kernel_constraint=constraint,
                              kernel_initializer=keras.initializers.RandomUniform(*init))(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))


def batch(seed=0, n=16):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6, 6, 1)).astype("float32"), rng.integers(0, 3, n)


def train(m, steps, start=0):
    for step in range(start, start + steps):
        m.train_on_batch(*batch(step))


def assert_same_weights(a, b, **tol):
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        if tol:
            np.testing.assert_allclose(wa, wb, **tol)
        else:
            np.testing.assert_array_equal(wa, wb)


# ------------------------------------------------------------------ equals the wrapped optimizer
@pytest.mark.parametrize("wrapper", sorted(OFF))
@pytest.mark.parametrize("inner", sorted(INNER))
def test_extra_term_off_is_the_wrapped_optimizer(inner, wrapper):
    a, b = model(), model()
    a.compile(INNER[inner](), "sparse_categorical_crossentropy")
    b.compile(OFF[wrapper](INNER[inner]()), "sparse_categorical_crossentropy")
    train(a, 4)
    train(b, 4)
    assert_same_weights(a, b)
    assert int(b.optimizer.inner_optimizer.iterations) == int(a.optimizer.iterations) == 4


# ------------------------------------------------------------------ options applied, not dropped
def test_clipnorm_clips_the_wrapped_update():
    v = tf.Variable([1.0, 1.0])
    opt = kw.CosineMomentum(keras.optimizers.SGD(1.0), clipnorm=0.1)
    opt.apply_gradients([(tf.constant([3.0, 4.0]), v)])
    np.testing.assert_allclose(v.numpy(), [1 - 0.06, 1 - 0.08], rtol=1e-6)


OPTIONS = [
    dict(clipnorm=0.05),
    dict(clipvalue=0.01),
    dict(global_clipnorm=0.05),
    dict(weight_decay=0.5),
    dict(use_ema=True, ema_momentum=0.5, ema_overwrite_frequency=2),
]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: next(iter(o)))
@pytest.mark.parametrize("wrapper", sorted(OFF))
def test_every_option_is_applied_and_round_trips(options, wrapper):
    plain, wrapped = model(), model()
    plain.compile(keras.optimizers.Adam(1e-2, **options), "sparse_categorical_crossentropy")
    opt = OFF[wrapper](keras.optimizers.Adam(1e-2), **options)
    wrapped.compile(opt, "sparse_categorical_crossentropy")
    train(plain, 4)
    train(wrapped, 4)
    assert_same_weights(plain, wrapped, rtol=1e-6, atol=1e-7)
    # the option changes the result (so the comparison above is not vacuous)
    bare = model()
    bare.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    train(bare, 4)
    assert any(not np.allclose(x, y) for x, y in zip(bare.get_weights(), plain.get_weights()))
    config = opt.get_config()
    for key, value in options.items():
        assert config[key] == value
    clone = type(opt).from_config(config)
    assert clone.get_config() == config
    if options.get("use_ema"):
        plain.optimizer.finalize_variable_values(plain.trainable_variables)
        wrapped.optimizer.finalize_variable_values(wrapped.trainable_variables)
        assert_same_weights(plain, wrapped, rtol=1e-6, atol=1e-7)


def test_jit_compile_is_forwarded_and_round_trips():
    opt = kw.CosineMomentum(keras.optimizers.Adam(), jit_compile=False)
    assert opt.inner_optimizer.jit_compile is False and opt.get_config()["jit_compile"] is False
    assert type(opt).from_config(opt.get_config()).jit_compile is False
    with pytest.raises(ValueError, match="jit_compile"):
        kw.CosineMomentum(keras.optimizers.Adam(), jit_compile="yes")


def test_conflicting_options_are_refused():
    with pytest.raises(ValueError, match="clipnorm"):
        kw.CosineMomentum(keras.optimizers.SGD(clipnorm=1.0), clipnorm=0.5)
    with pytest.raises(ValueError, match="global_clipnorm"):
        kw.CosineMomentum(keras.optimizers.SGD(clipnorm=1.0), global_clipnorm=0.5)
    with pytest.raises(ValueError, match="ema"):
        kw.CosineMomentum(keras.optimizers.SGD(use_ema=True, ema_momentum=0.9), use_ema=True,
                          ema_momentum=0.5)
    with pytest.raises(TypeError):
        kw.CosineMomentum(keras.optimizers.SGD(), not_an_option=1)


def test_wrapped_optimizer_with_ema_hands_it_to_the_wrapper():
    plain, wrapped = model(), model()
    plain.compile(keras.optimizers.Adam(1e-2, use_ema=True, ema_momentum=0.5),
                  "sparse_categorical_crossentropy")
    opt = kw.CosineMomentum(keras.optimizers.Adam(1e-2, use_ema=True, ema_momentum=0.5), eta=0.0)
    assert opt.use_ema and opt.ema_momentum == 0.5 and not opt.inner_optimizer.use_ema
    wrapped.compile(opt, "sparse_categorical_crossentropy")
    train(plain, 3)
    train(wrapped, 3)
    for m in (plain, wrapped):
        m.optimizer.finalize_variable_values(m.trainable_variables)
    assert_same_weights(plain, wrapped, rtol=1e-6, atol=1e-7)


def test_exclude_from_weight_decay_on_the_wrapper():
    a = tf.Variable([1.0, 2.0], name="decayed")
    b = tf.Variable([1.0, 2.0], name="excluded")
    opt = kw.CosineMomentum(keras.optimizers.SGD(1.0), weight_decay=0.1, select=[])
    opt.exclude_from_weight_decay(var_names=["excluded"])
    opt.apply_gradients([(tf.zeros(2), a), (tf.zeros(2), b)])
    np.testing.assert_allclose(a.numpy(), [0.9, 1.8], rtol=1e-6)
    np.testing.assert_array_equal(b.numpy(), [1.0, 2.0])


# ------------------------------------------------------------------ state goes with the wrapper
def test_variables_hold_wrapped_slots_and_set_weights_transfers_state():
    a, b = model(), model()
    for m in (a, b):
        m.compile(kw.CosineMomentum(keras.optimizers.Adam(1e-2), eta=1e-2, region="both"),
                  "sparse_categorical_crossentropy")
    train(a, 3)
    inner_vars = a.optimizer.inner_optimizer.variables
    assert all(any(v is w for w in a.optimizer.variables) for v in inner_vars)
    assert len(a.optimizer.variables) == len(optimizer_own_variables(a.optimizer)) + len(inner_vars)
    b.optimizer.build(b.trainable_variables)
    b.set_weights(a.get_weights())
    b.optimizer.set_weights(a.optimizer.get_weights())
    assert int(b.optimizer.inner_optimizer.iterations) == 3
    train(a, 2, start=3)
    train(b, 2, start=3)
    assert_same_weights(a, b, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="variables"):
        b.optimizer.set_weights(a.optimizer.get_weights()[:-1])


@pytest.mark.parametrize("fmt", ["h5", "keras", "savedmodel"])
def test_saved_model_keeps_the_wrapped_optimizer_state(tmp_path, fmt):
    m = model()
    m.compile(kw.CosineMomentum(keras.optimizers.Adam(1e-2, clipnorm=1.0), eta=1e-2,
                                region="both"), "sparse_categorical_crossentropy")
    train(m, 3)
    path = str(tmp_path / ("m.h5" if fmt == "h5" else "m.keras" if fmt == "keras" else "m_tf"))
    m.save(path, **({"save_format": "tf"} if fmt == "savedmodel" else {}))
    loaded = keras.models.load_model(path)
    opt = loaded.optimizer
    assert isinstance(opt, kw.CosineMomentum) and opt.clipnorm == 1.0
    if fmt == "savedmodel":
        # as for any tf-keras optimizer, load_model on a SavedModel returns a fresh optimizer;
        # the state is in the SavedModel's checkpoint, restored by load_weights
        opt.build(loaded.trainable_variables)
        loaded.load_weights(path + "/variables/variables")
    assert int(opt.iterations) == 3 and int(opt.inner_optimizer.iterations) == 3
    assert len(opt.variables) == len(m.optimizer.variables)
    for saved, restored in zip(m.optimizer.variables, opt.variables):
        np.testing.assert_array_equal(restored.numpy(), saved.numpy())
    train(m, 2, start=3)
    train(loaded, 2, start=3)
    assert_same_weights(m, loaded, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("inner", ["adafactor", "lion"])
def test_wrapping_adafactor_or_lion_reloads(tmp_path, inner):
    m = model()
    m.compile(kw.CosineMomentum(INNER[inner](), eta=1e-2), "sparse_categorical_crossentropy")
    train(m, 2)
    m.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert type(loaded.optimizer.inner_optimizer) is type(m.optimizer.inner_optimizer)
    assert int(loaded.optimizer.inner_optimizer.iterations) == 2


# ------------------------------------------------------------------ what moves
def test_selected_kernel_without_gradient_does_not_move():
    m = model()
    kernel = m.layers[1].kernel
    opt = kw.CosineMomentum(keras.optimizers.SGD(0.1), eta=0.5, region="both")
    before = kernel.numpy().copy()
    dense = m.layers[-1].kernel
    opt.apply_gradients([(None, kernel), (tf.ones_like(dense), dense)])
    np.testing.assert_array_equal(kernel.numpy(), before)
    assert opt.slot_index(kernel) is not None  # it is selected, just not updated


def test_region_both_respects_larq_weight_clip():
    m = model(constraint=lq.constraints.WeightClip(1.0), init=(-0.2, 0.2))
    m.compile(kw.CosineMomentum(keras.optimizers.SGD(1e-3), eta=0.5, momentum=0.9,
                                region="both", alpha=1.0), "sparse_categorical_crossentropy")
    train(m, 4)
    kernel = m.layers[1].kernel.latent_variable.numpy()
    assert np.abs(kernel).max() <= 1.0 + 1e-7
    assert np.isclose(np.abs(kernel), 1.0).mean() > 0.5  # pushed out, then clipped at the bound


@pytest.mark.parametrize("wrapper", sorted(OFF))
def test_load_weights_saved_with_another_optimizer(tmp_path, wrapper):
    """Weights saved from a model trained with plain Adam load into a model compiled with the
    wrapper, as into one compiled with plain Adam: where the optimizer part does not match it
    is skipped with a warning (tf-keras' behaviour), the layers are restored."""
    source = model(seed=1)
    source.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    train(source, 1)
    path = str(tmp_path / "pretrain.weights.h5")
    source.save_weights(path)
    for make in (lambda: keras.optimizers.Adam(1e-2), lambda: OFF[wrapper](INNER["adam"]())):
        target = model(seed=2)
        target.compile(make(), "sparse_categorical_crossentropy")
        train(target, 1)  # builds the optimizer: the file's optimizer part no longer matches
        target.load_weights(path)
        assert_same_weights(target, source)
