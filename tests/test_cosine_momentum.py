import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from keras_wreg import CosineMomentum, binary_kernel_names
from keras_wreg._compat import keras, lq, tf
from keras_wreg.optimizers import cosine_ramp
from tiny import batch, small_model


def numpy_step(w, v, eta, mu, alpha, D, region):
    d = np.abs(np.abs(w) - alpha)
    kappa = 0.5 * (1 - np.cos(np.pi * np.minimum(d, D) / D))
    s = np.sign(alpha * np.sign(w) - w)
    mask = (np.abs(w) > alpha) if region == "tail" else np.ones_like(w)
    v = mu * v + mask * kappa * s
    return w + eta * v, v


def test_cosine_ramp_shape():
    d = tf.constant([0.0, 0.25, 0.5, 1.0, 3.0])
    np.testing.assert_allclose(cosine_ramp(d, 1.0).numpy(),
                               [0.0, (1 - math.cos(math.pi / 4)) / 2, 0.5, 1.0, 1.0], atol=1e-6)
    x = tf.Variable(0.0)
    with tf.GradientTape() as tape:
        y = cosine_ramp(x, 1.0)
    assert tape.gradient(y, x).numpy() == pytest.approx(0.0)  # C1 at the grid


@pytest.mark.parametrize("inner", ["adam", "sgd_momentum", "rmsprop"])
@pytest.mark.parametrize("off", [dict(eta=0.0), dict(mode="coefficient", mu_min=0.0, mu_max=0.0)])
def test_equals_wrapped_optimizer_when_extra_term_is_off(inner, off):
    make = {
        "adam": lambda: keras.optimizers.Adam(1e-2),
        "sgd_momentum": lambda: keras.optimizers.SGD(0.05, momentum=0.9),
        "rmsprop": lambda: keras.optimizers.RMSprop(1e-2),
    }[inner]
    a, b = small_model(), small_model()
    a.compile(make(), "sparse_categorical_crossentropy")
    b.compile(CosineMomentum(make(), region="both", **off), "sparse_categorical_crossentropy")
    for step in range(5):
        x, y = batch(step)
        a.train_on_batch(x, y)
        b.train_on_batch(x, y)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


@pytest.mark.parametrize("region", ["tail", "both"])
def test_extra_step_matches_formula_far_weights_move_more(region):
    w0 = np.array([1.05, 1.5, 1.9, -1.8, -1.02, 0.5, -0.2, 1.0], np.float32)
    var = tf.Variable(w0, name="w")
    opt = CosineMomentum(keras.optimizers.SGD(0.0), eta=0.1, momentum=0.5, max_distance=1.0,
                         region=region, select="^w$", alpha=1.0)
    v = np.zeros_like(w0)
    w = w0.copy()
    for _ in range(3):
        opt.apply_gradients([(tf.zeros_like(var), var)])
        w, v = numpy_step(w, v, 0.1, 0.5, 1.0, 1.0, region)
        np.testing.assert_allclose(var.numpy(), w, rtol=1e-5, atol=1e-6)
    moved = np.abs(var.numpy() - w0)
    # towards the grid, farther weights moved more
    assert np.all(np.abs(np.abs(var.numpy()[:5]) - 1) <= np.abs(np.abs(w0[:5]) - 1))
    assert moved[2] > moved[1] > moved[0] > 0 and moved[3] > moved[4] > 0
    assert moved[7] == 0  # on the grid
    if region == "tail":
        assert moved[5] == 0 and moved[6] == 0
    else:
        assert var.numpy()[5] > w0[5] and var.numpy()[6] < w0[6]  # pushed outward


def test_alpha_channel_and_decay():
    w0 = np.array([[2.0, 0.4], [-2.0, 0.1]], np.float32)  # channel means 2.0, 0.25
    var = tf.Variable(w0, name="quant_dense/kernel")
    opt = CosineMomentum(keras.optimizers.SGD(0.0), eta=0.2, alpha="channel", decay_steps=4,
                         region="tail", select="quant_dense")
    opt.apply_gradients([(tf.zeros_like(var), var)])
    # column 0 is on its grid (±2): no move; column 1: 0.4 is in the tail of alpha=0.25
    assert var.numpy()[0, 0] == 2.0 and var.numpy()[1, 0] == -2.0
    assert var.numpy()[0, 1] < 0.4 and var.numpy()[1, 1] == pytest.approx(0.1)
    etas = []
    for _ in range(5):
        etas.append(float(opt.current_eta()))
        opt.apply_gradients([(tf.zeros_like(var), var)])
    np.testing.assert_allclose(etas, [0.2 * 0.5 * (1 + math.cos(math.pi * min(t, 4) / 4))
                                      for t in range(1, 6)], atol=1e-6)


def test_unselected_variables_untouched():
    model = small_model()
    opt = CosineMomentum(keras.optimizers.SGD(0.0), eta=0.5, region="both")
    model.compile(opt, "sparse_categorical_crossentropy")
    before = {v.name: v.numpy().copy() for v in model.trainable_weights}
    model.train_on_batch(*batch())
    changed = {n for n, w in before.items()
               if not np.array_equal(w, model.get_layer(n.split("/")[0]).get_weights()[
                   [x.name for x in model.get_layer(n.split("/")[0]).weights].index(n)])}
    assert changed == {model.layers[1].kernel.name}
    assert binary_kernel_names(model) == [model.layers[1].kernel.name.split(":")[0]]


def test_explicit_select_list_and_regex():
    a = tf.Variable([1.5], name="conv1/kernel")
    b = tf.Variable([1.5], name="conv2/kernel")
    opt = CosineMomentum(keras.optimizers.SGD(0.0), eta=0.1, select=["conv1/kernel"], alpha=1.0)
    opt.apply_gradients([(tf.zeros_like(a), a), (tf.zeros_like(b), b)])
    assert a.numpy()[0] < 1.5 and b.numpy()[0] == 1.5
    assert CosineMomentum(keras.optimizers.SGD(0.0), select=r"conv2").is_selected(b)


@pytest.mark.parametrize("kwargs,exc,name", [
    (dict(eta=-1.0), ValueError, "eta"), (dict(momentum=1.0), ValueError, "momentum"),
    (dict(max_distance=0.0), ValueError, "max_distance"),
    (dict(max_distance=-2), ValueError, "max_distance"), (dict(alpha=0), ValueError, "alpha"),
    (dict(region="head"), ValueError, "region"), (dict(mode="nesterov"), ValueError, "mode"),
    (dict(mu_min=0.5, mu_max=0.2), ValueError, "mu_min"),
    (dict(decay_steps=0), ValueError, "decay_steps"), (dict(select=3), ValueError, "select"),
])
def test_bad_arguments(kwargs, exc, name):
    with pytest.raises(exc, match=name):
        CosineMomentum(keras.optimizers.Adam(), **kwargs)


@pytest.mark.parametrize("bad", [object(), keras.optimizers.legacy.Adam(), lq.optimizers.Bop()])
def test_non_optimizer_or_legacy_is_type_error(bad):
    with pytest.raises(TypeError, match="optimizer"):
        CosineMomentum(bad)


def _train(model, steps, start=0):
    for step in range(start, start + steps):
        model.train_on_batch(*batch(step))


def test_checkpoint_restores_state_and_resumes_identically(tmp_path):
    def make():
        model = small_model()
        model.compile(CosineMomentum(keras.optimizers.Adam(1e-2), eta=1e-2, region="both"),
                      "sparse_categorical_crossentropy")
        return model

    reference = make()
    _train(reference, 3)
    ckpt = tf.train.Checkpoint(model=reference, optimizer=reference.optimizer)
    path = ckpt.save(str(tmp_path / "ckpt"))
    buffer = reference.optimizer.momentum_for(reference.layers[1].kernel).numpy()
    assert np.abs(buffer).sum() > 0
    _train(reference, 2, start=3)

    restored = make()
    restored.optimizer.build(restored.trainable_variables)
    tf.train.Checkpoint(model=restored, optimizer=restored.optimizer).restore(path)
    np.testing.assert_array_equal(
        restored.optimizer.momentum_for(restored.layers[1].kernel).numpy(), buffer)
    assert int(restored.optimizer.iterations) == 3
    assert int(restored.optimizer.inner_optimizer.iterations) == 3
    _train(restored, 2, start=3)
    for wa, wb in zip(reference.get_weights(), restored.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-6, atol=1e-7)


def test_keras_file_round_trip_keeps_state(tmp_path):
    model = small_model()
    model.compile(CosineMomentum(keras.optimizers.Adam(1e-2), eta=1e-2, region="both",
                                 max_distance=0.7, mode="additive", alpha="channel"),
                  "sparse_categorical_crossentropy")
    _train(model, 3)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    opt = loaded.optimizer
    assert isinstance(opt, CosineMomentum)
    assert opt.get_config() == model.optimizer.get_config()
    assert isinstance(opt.inner_optimizer, keras.optimizers.Adam)
    np.testing.assert_array_equal(opt.momentum_for(loaded.layers[1].kernel).numpy(),
                                  model.optimizer.momentum_for(model.layers[1].kernel).numpy())
    _train(model, 2, start=3)
    _train(loaded, 2, start=3)
    for wa, wb in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-6, atol=1e-7)


def test_learning_rate_is_delegated():
    inner = keras.optimizers.Adam(1e-3)
    opt = CosineMomentum(inner)
    opt.learning_rate = 5e-4
    assert float(inner.learning_rate) == pytest.approx(5e-4)
    assert float(opt.learning_rate) == pytest.approx(5e-4)


MIRRORED = textwrap.dedent("""
    import json, numpy as np
    import keras_wreg
    from keras_wreg._compat import keras, lq, tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        inputs = keras.Input((6, 6, 1))
        x = lq.layers.QuantConv2D(4, 3, kernel_quantizer="ste_sign",
            kernel_initializer=keras.initializers.RandomUniform(-2, 2),
            kernel_regularizer=keras_wreg.WReg(1e-3))(inputs)
        x = keras.layers.Flatten()(x)
        model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
        model.compile(keras_wreg.CosineMomentum(keras.optimizers.Adam(1e-2), eta=1e-2,
                      region="both"), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6, 6, 1)).astype("float32"); y = rng.integers(0, 3, 64)
    hist = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    buf = model.optimizer.momentum_for(model.layers[1].kernel)
    replicas = [v.numpy() for v in buf.values]
    print(json.dumps({"replicas": len(strategy.extended.worker_devices),
        "loss": hist.history["loss"], "buffer_abs": float(np.abs(replicas[0]).sum()),
        "in_sync": bool(np.array_equal(replicas[0], replicas[1])),
        "iterations": int(model.optimizer.iterations.numpy())}))
""")


def test_mirrored_strategy_two_logical_cpus():
    proc = subprocess.run([sys.executable, "-c", MIRRORED], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert all(np.isfinite(result["loss"]))
    assert result["buffer_abs"] > 0 and result["in_sync"]
    assert result["iterations"] == 8
