"""DecoupledRegularization (the W-pull as its own step) and the Ramp strength schedule."""

import functools
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from keras_wreg import CosineMomentum, DecoupledRegularization, WReg
from keras_wreg._compat import keras, lq, tf
from keras_wreg.schedules import Ramp
from tiny import batch, small_model as _small_model

small_model = functools.partial(_small_model, init=1.5)  # latent kernel in U(-1.5, 1.5)


def wreg_grad_numpy(w, alpha):
    """d/dw of sum_i R(w_i) for WReg(inner=l1, outer=l2, strength=1, alpha per channel)."""
    gap = np.abs(w) - alpha
    return np.where(gap < 0, -np.sign(w), 0.0) + np.where(gap > 0, 2 * gap * np.sign(w), 0.0)


# ----------------------------------------------------------------------------------- Ramp
@pytest.mark.parametrize("shape", ["linear", "cosine"])
def test_ramp_values(shape):
    ramp = Ramp(10, 20, shape=shape, initial=0.0, final=2.0)
    steps = [0, 10, 15, 20, 100]
    got = [float(ramp(s)) for s in steps]
    mid = 1.0  # p = 0.5: linear 0.5 * 2, cosine (1 - cos(pi/2)) / 2 * 2
    assert got == pytest.approx([0.0, 0.0, mid, 2.0, 2.0], abs=1e-6)
    quarter = float(ramp(12.5))
    expected = 2 * (0.25 if shape == "linear" else 0.5 * (1 - math.cos(math.pi * 0.25)))
    assert quarter == pytest.approx(expected, abs=1e-6)


def test_ramp_step_and_fractions_and_config():
    step = Ramp(5, 5)
    assert float(step(4)) == 0.0 and float(step(5)) == 1.0
    ramp = Ramp.over_training(300, start=2 / 3)
    assert (ramp.start_step, ramp.end_step) == (200, 300)
    clone = Ramp.from_config(ramp.get_config())
    assert clone.get_config() == ramp.get_config()
    restored = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(ramp))
    assert isinstance(restored, Ramp) and float(restored(250)) == pytest.approx(float(ramp(250)))


@pytest.mark.parametrize("kwargs, name", [
    (dict(start_step=-1, end_step=3), "start_step"),
    (dict(start_step=5, end_step=3), "end_step"),
    (dict(start_step=0, end_step=3, shape="exp"), "shape"),
    (dict(start_step=0, end_step=3, final=float("nan")), "final"),
    (dict(start_step=0, end_step=3, initial=-1.0), "initial"),
])
def test_ramp_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        Ramp(**kwargs)


# ----------------------------------------------------------------------- the decoupled step
def test_step_matches_formula_with_sgd_and_schedule():
    """w_new = w - lr * g_task - lr * s(t) * dR/dw, with s read at the wrapper's step."""
    lr = 0.1
    model = small_model()
    kernel = model.layers[1].kernel
    schedule = Ramp(1, 3, shape="linear", final=0.5)  # s(0)=0, s(1)=0, s(2)=0.25, s(3)=0.5
    opt = DecoupledRegularization(keras.optimizers.SGD(lr), WReg(strength=1.0, alpha="channel"),
                                  schedule=schedule)
    model.compile(opt, "sparse_categorical_crossentropy")
    x, y = batch()
    for step in range(4):
        w = kernel.latent_variable.numpy().copy()
        with tf.GradientTape() as tape:
            loss = keras.losses.sparse_categorical_crossentropy(y, model(x, training=True))
            loss = tf.reduce_mean(loss)
        grad = tape.gradient(loss, kernel.latent_variable).numpy()
        model.train_on_batch(x, y)
        after_inner = w - lr * grad
        alpha = np.mean(np.abs(after_inner), axis=(0, 1, 2), keepdims=True)
        s = float(schedule(step))
        expected = after_inner - lr * s * wreg_grad_numpy(after_inner, alpha)
        np.testing.assert_allclose(kernel.latent_variable.numpy(), expected, atol=2e-5,
                                   err_msg=f"step {step}, s={s}")
    assert int(opt.iterations.numpy()) == 4


def test_pull_moves_weights_towards_grid():
    model = small_model()
    kernel = model.layers[1].kernel
    opt = DecoupledRegularization(keras.optimizers.SGD(0.0, momentum=0.0), WReg(0.01, alpha=1.0),
                                  scale_by_learning_rate=False)
    model.compile(opt, "sparse_categorical_crossentropy")
    x, y = batch()
    before = np.abs(np.abs(kernel.latent_variable.numpy()) - 1.0)
    for _ in range(3):
        model.train_on_batch(x, y)
    after = np.abs(np.abs(kernel.latent_variable.numpy()) - 1.0)
    assert after.mean() < before.mean()
    # only the binary kernel moves (SGD with lr 0 leaves everything else as it was)
    assert np.all(model.layers[-1].kernel.numpy() == small_model().layers[-1].kernel.numpy())


@pytest.mark.parametrize("inner", ["adam", "sgd_momentum"])
def test_equals_wrapped_optimizer_when_schedule_is_zero(inner):
    make = {"adam": lambda: keras.optimizers.Adam(1e-2),
            "sgd_momentum": lambda: keras.optimizers.SGD(0.05, momentum=0.9)}[inner]
    a, b = small_model(), small_model()
    a.compile(make(), "sparse_categorical_crossentropy")
    b.compile(DecoupledRegularization(make(), WReg(1.0), schedule=Ramp(100, 200)),
              "sparse_categorical_crossentropy")
    x, y = batch()
    for _ in range(5):
        a.train_on_batch(x, y)
        b.train_on_batch(x, y)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_decoupled_differs_from_loss_penalty_under_adam():
    """Adam normalises a loss penalty's gradient; the decoupled step does not."""
    x, y = batch()
    coupled = small_model(regularizer=WReg(1e-2, alpha=1.0))
    coupled.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    decoupled = small_model()
    decoupled.compile(DecoupledRegularization(keras.optimizers.Adam(1e-2), WReg(1e-2, alpha=1.0)),
                      "sparse_categorical_crossentropy")
    coupled.train_on_batch(x, y)
    decoupled.train_on_batch(x, y)
    assert not np.allclose(coupled.layers[1].kernel.latent_variable.numpy(),
                           decoupled.layers[1].kernel.latent_variable.numpy())


def test_constraint_applied_after_pull():
    model = small_model(clip=1.0)
    kernel = model.layers[1].kernel
    # alpha far outside the clip: the pull pushes every weight outwards
    opt = DecoupledRegularization(keras.optimizers.SGD(0.0), WReg(10.0, alpha=5.0),
                                  scale_by_learning_rate=False)
    model.compile(opt, "sparse_categorical_crossentropy")
    model.train_on_batch(*batch())
    assert np.abs(kernel.latent_variable.numpy()).max() <= 1.0 + 1e-6


def test_nested_in_cosine_momentum_and_keras_round_trip(tmp_path):
    model = small_model()
    opt = CosineMomentum(DecoupledRegularization(keras.optimizers.Adam(1e-2), WReg(0.1),
                                                 schedule=Ramp(0, 4)), eta=1e-2, region="both")
    model.compile(opt, "sparse_categorical_crossentropy")
    x, y = batch()
    for _ in range(3):
        model.train_on_batch(x, y)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    inner = loaded.optimizer.inner_optimizer
    assert isinstance(inner, DecoupledRegularization)
    assert isinstance(inner.schedule, Ramp) and inner.schedule.end_step == 4
    assert inner.regularizer.get_config() == WReg(0.1).get_config()
    assert int(inner.iterations.numpy()) == 3
    model.train_on_batch(x, y)
    loaded.train_on_batch(x, y)
    for wa, wb in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(wa, wb, atol=1e-6)


def test_checkpoint_restores_schedule_position(tmp_path):
    x, y = batch()
    make = lambda: DecoupledRegularization(keras.optimizers.SGD(0.1), WReg(1.0),  # noqa: E731
                                           schedule=Ramp(2, 6, shape="linear"))
    a = small_model()
    a.compile(make(), "sparse_categorical_crossentropy")
    for _ in range(3):
        a.train_on_batch(x, y)
    ckpt = tf.train.Checkpoint(model=a, optimizer=a.optimizer)
    path = ckpt.save(str(tmp_path / "ckpt"))
    b = small_model(seed=1)
    b.compile(make(), "sparse_categorical_crossentropy")
    b.train_on_batch(x, y)  # build the optimizer's variables
    tf.train.Checkpoint(model=b, optimizer=b.optimizer).restore(path)
    assert int(b.optimizer.iterations.numpy()) == 3
    a.train_on_batch(x, y)
    b.train_on_batch(x, y)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, atol=1e-6)


@pytest.mark.parametrize("kwargs, exc, name", [
    (dict(regularizer=None), ValueError, "regularizer"),
    (dict(regularizer=WReg(), schedule=3), ValueError, "schedule"),
    (dict(regularizer=WReg(), scale_by_learning_rate="yes"), ValueError,
     "scale_by_learning_rate"),
    (dict(regularizer=WReg(), select=5), ValueError, "select"),
])
def test_bad_arguments(kwargs, exc, name):
    with pytest.raises(exc, match=name):
        DecoupledRegularization(keras.optimizers.Adam(), **kwargs)


def test_legacy_optimizer_is_type_error():
    with pytest.raises(TypeError, match="optimizer"):
        DecoupledRegularization(lq.optimizers.Bop(), WReg())


MIRRORED = """
import json
import numpy as np
import keras_wreg
from keras_wreg._compat import keras, lq, tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 1))
    x = lq.layers.QuantConv2D(4, 3, kernel_quantizer="ste_sign",
                              kernel_constraint=lq.constraints.WeightClip(2.0))(inputs)
    x = keras.layers.Flatten()(keras.layers.BatchNormalization()(x))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    model.compile(keras_wreg.DecoupledRegularization(
        keras.optimizers.SGD(0.1), keras_wreg.WReg(1.0),
        schedule=keras_wreg.schedules.Ramp(0, 4)), "sparse_categorical_crossentropy")
rng = np.random.default_rng(0)
x = rng.normal(size=(64, 6, 6, 1)).astype("float32"); y = rng.integers(0, 3, 64)
hist = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
values = [v.numpy() for v in model.layers[1].kernel.latent_variable.values]
print(json.dumps({"replicas": len(strategy.extended.worker_devices),
    "loss": hist.history["loss"], "in_sync": bool(np.array_equal(values[0], values[1])),
    "iterations": int(model.optimizer.iterations.numpy())}))
"""


def test_mirrored_strategy_two_logical_cpus():
    proc = subprocess.run([sys.executable, "-c", MIRRORED], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2 and result["in_sync"]
    assert all(np.isfinite(result["loss"]))
    assert result["iterations"] == 8
