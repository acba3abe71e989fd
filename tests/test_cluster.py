"""Tests of seed 004: ClusterReg, ClusterCallback, snapping, strip and compression report."""

import math

import numpy as np
import pytest

import keras_wreg
from keras_wreg import (ClusterCallback, ClusterReg, compression_report, initialize_centers,
                        kmeans_cluster_model, recipes, snap_weights, strip_clustering)
from keras_wreg._compat import keras, lq, tf
from keras_wreg.regularizers.cluster import initial_centers

FORMS = ("hard", "soft", "product")


def _reg(form, k=3, **kw):
    reg = ClusterReg(k, form=form, strength=1.0, temperature=kw.pop("temperature", 0.05), **kw)
    return reg


def _numpy_penalty(w, c, form, tau):
    d = (np.asarray(w, np.float64).reshape(-1, 1) - np.asarray(c, np.float64)[None]) ** 2
    if form == "hard":
        r = d.min(1)
    elif form == "soft":
        r = -tau * np.log(1.0 - np.prod(1.0 - np.exp(-d / tau), axis=1))
    else:
        r = np.prod(d, axis=1) ** (1.0 / d.shape[1])
    return r.mean()


# -- penalty values ------------------------------------------------------------------
@pytest.mark.parametrize("form", FORMS)
def test_zero_on_centres_positive_elsewhere(form):
    reg = _reg(form)
    reg.centers.assign([-0.5, 0.1, 0.7])
    on = tf.constant([[-0.5, 0.1], [0.7, 0.7], [-0.5, 0.1]])
    assert float(reg(on)) == 0.0
    rng = np.random.default_rng(1)
    for _ in range(5):
        w = rng.uniform(-1, 1, size=(4, 5)).astype("float32")
        assert float(reg(tf.constant(w))) > 0.0
    # one weight off its centre is enough
    off = on.numpy().copy()
    off[0, 0] += 1e-2
    assert float(reg(tf.constant(off))) > 0.0


@pytest.mark.parametrize("form", FORMS)
def test_matches_numpy(form):
    reg = _reg(form, k=4, temperature=0.3)
    c = np.array([-0.6, -0.1, 0.2, 0.9], np.float32)
    reg.centers.assign(c)
    w = np.random.default_rng(2).normal(0, 0.5, size=(6, 7)).astype("float32")
    np.testing.assert_allclose(float(reg.penalty(w)), _numpy_penalty(w, c, form, 0.3),
                               rtol=2e-5)


def test_strength_warmup_and_reduce():
    c = [-0.5, 0.5]
    w = np.array([0.1, -0.2, 0.4], np.float32)
    mean = ClusterReg(2, strength=3.0)
    total = ClusterReg(2, strength=3.0, reduce="sum")
    for reg in (mean, total):
        reg.centers.assign(c)
    base = _numpy_penalty(w, c, "hard", 1.0)
    np.testing.assert_allclose(float(mean(w)), 3.0 * base, rtol=1e-6)
    np.testing.assert_allclose(float(total(w)), 3.0 * 3 * base, rtol=1e-6)
    mean.warmup.assign(0.25)
    np.testing.assert_allclose(float(mean(w)), 0.75 * base, rtol=1e-6)


def test_soft_tends_to_hard():
    c = np.array([-0.4, 0.0, 0.5], np.float32)
    w = np.random.default_rng(3).uniform(-1, 1, 200).astype("float32")
    hard = _reg("hard")
    hard.centers.assign(c)
    h = float(hard.penalty(w))
    gaps = []
    for tau in (1e-1, 1e-2, 1e-3, 1e-4):
        soft = _reg("soft", temperature=tau)
        soft.centers.assign(c)
        s = float(soft.penalty(w))
        assert h - tau * math.log(3) - 1e-6 <= s <= h + 1e-6
        gaps.append(h - s)
    assert gaps == sorted(gaps, reverse=True)
    assert gaps[-1] < 1e-4 * h + 1e-6
    # far from every centre the soft form stays finite (no underflow to log 0)
    soft = _reg("soft", temperature=1e-4)
    soft.centers.assign(c)
    far = float(soft.penalty(np.array([5.0], np.float32)))
    np.testing.assert_allclose(far, 4.5 ** 2, rtol=1e-5)


# -- gradients -------------------------------------------------------------------------
@pytest.mark.parametrize("form", FORMS)
def test_gradients_match_finite_differences(form):
    tf.keras.backend.set_floatx("float32")
    reg = _reg(form, k=3, temperature=0.2)
    c = np.array([-0.5, 0.05, 0.6], np.float64)
    reg.centers.assign(c)
    w = np.random.default_rng(4).uniform(-0.9, 0.9, 12)
    wt = tf.Variable(w.astype("float32"))
    with tf.GradientTape() as tape:
        loss = reg(wt)
    gw, gc = tape.gradient(loss, [wt, reg.centers])
    assert gc is not None, "the centres get no gradient"
    eps = 1e-6

    def f(wv, cv):
        return _numpy_penalty(wv, cv, form, 0.2)

    num_w = np.array([(f(w + eps * e, c) - f(w - eps * e, c)) / (2 * eps)
                      for e in np.eye(w.size)])
    num_c = np.array([(f(w, c + eps * e) - f(w, c - eps * e)) / (2 * eps)
                      for e in np.eye(c.size)])
    np.testing.assert_allclose(gw.numpy(), num_w, rtol=2e-3, atol=1e-5)
    np.testing.assert_allclose(gc.numpy(), num_c, rtol=2e-3, atol=1e-5)


@pytest.mark.parametrize("form", FORMS)
def test_no_nan_at_centres_and_ties(form):
    reg = _reg(form, k=4, temperature=1e-3)
    reg.centers.assign([-0.5, 0.0, 0.0, 0.5])  # duplicate centres
    wt = tf.Variable([-0.5, 0.0, 0.5, 0.25, 3.0])  # on centres, midpoint, far away
    with tf.GradientTape() as tape:
        loss = reg(wt)
    gw, gc = tape.gradient(loss, [wt, reg.centers])
    assert np.isfinite(float(loss))
    assert np.all(np.isfinite(gw.numpy())) and np.all(np.isfinite(gc.numpy()))
    np.testing.assert_allclose(gw.numpy()[:3], 0.0, atol=1e-6)


def test_center_grad_scale():
    a, b = ClusterReg(2), ClusterReg(2, center_grad_scale=0.1)
    w = tf.constant([0.3, -0.2, 0.9])
    grads = []
    for reg in (a, b):
        reg.centers.assign([-0.5, 0.5])
        with tf.GradientTape() as tape:
            loss = reg(w)
        grads.append(tape.gradient(loss, reg.centers).numpy())
        assert float(loss) == pytest.approx(float(a(w)))
    np.testing.assert_allclose(grads[1], 0.1 * grads[0], rtol=1e-6)


# -- initialisation and re-seeding ----------------------------------------------------------
@pytest.mark.parametrize("method", ["linear", "quantile", "kmeans++", "kmeans"])
def test_initial_centers(method):
    rng = np.random.default_rng(5)
    w = np.concatenate([rng.normal(m, 0.01, 300) for m in (-1.0, 0.0, 2.0)])
    c = initial_centers(w, 3, method=method, seed=0)
    assert c.shape == (3,) and np.all(np.diff(c) > 0)
    assert c.min() >= w.min() - 1e-6 and c.max() <= w.max() + 1e-6
    if method == "linear":
        np.testing.assert_allclose(c, [w.min(), (w.min() + w.max()) / 2, w.max()], rtol=1e-5)
    if method == "quantile":
        np.testing.assert_allclose(c, np.quantile(w, [1 / 6, 1 / 2, 5 / 6]), rtol=1e-5)
    if method == "kmeans":
        np.testing.assert_allclose(c, [-1.0, 0.0, 2.0], atol=0.01)
    if method == "kmeans++":  # one seed per well-separated blob
        assert sorted(np.round(c).tolist()) == [-1.0, 0.0, 2.0]


def test_initialize_once_and_reseed_dead_and_duplicates():
    reg = ClusterReg(4, init="linear")
    w = np.array([-1.0, -0.9, 0.0, 0.1, 1.0, 1.1], np.float32)
    np.testing.assert_allclose(reg.initialize(w), np.linspace(-1.0, 1.1, 4), rtol=1e-6)
    reg.initialize(w * 10)  # already initialised: kept
    np.testing.assert_allclose(reg.get_centers(), np.linspace(-1.0, 1.1, 4), rtol=1e-6)
    reg.centers.assign([-0.95, 0.05, 0.05, 5.0])  # a duplicate and a dead centre
    moved = reg.reseed(w)
    assert moved == [2, 3]
    c = reg.get_centers()
    assert np.unique(c).size == 4
    counts = np.bincount(reg.assign(w), minlength=4)
    assert np.all(counts > 0)


# -- bad arguments -----------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, argname", [
    (dict(num_centers=1), "num_centers"), (dict(num_centers=2.5), "num_centers"),
    (dict(num_centers=True), "num_centers"), (dict(form="median"), "form"),
    (dict(temperature=0.0), "temperature"), (dict(temperature=-1.0), "temperature"),
    (dict(strength=-1e-3), "strength"), (dict(strength=float("nan")), "strength"),
    (dict(init="random"), "init"), (dict(center_grad_scale=0), "center_grad_scale"),
    (dict(reduce="max"), "reduce"), (dict(bogus=1), "bogus"),
])
def test_bad_arguments(kwargs, argname):
    kwargs = {"num_centers": 4, **kwargs}
    with pytest.raises(ValueError, match=argname):
        ClusterReg(**kwargs)


@pytest.mark.parametrize("kwargs, argname", [
    (dict(warmup_steps=-1), "warmup_steps"), (dict(min_count=0), "min_count"),
    (dict(snap="always"), "snap"), (dict(duplicate_tol=-1.0), "duplicate_tol"),
])
def test_callback_bad_arguments(kwargs, argname):
    with pytest.raises(ValueError, match=argname):
        ClusterCallback(**kwargs)


# -- training, saving, restoring ------------------------------------------------------------
def _small_model(k=4, form="hard", strength=1.0):
    return keras.Sequential([
        keras.Input((6,)),
        lq.layers.QuantDense(12, activation="relu",
                             kernel_regularizer=ClusterReg(k, form=form, strength=strength)),
        keras.layers.Dense(3, kernel_regularizer=ClusterReg(k, form=form, strength=strength,
                                                            init="quantile")),
        keras.layers.Softmax(),
    ])


def _toy_data(n=128):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 6)).astype("float32")
    y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0.5)
    return x, y


def _centres(model):
    return [reg.get_centers() for _, _, reg in keras_wreg.regularizers.clustered_weights(model)]


@pytest.mark.parametrize("form", FORMS)
def test_centres_train_during_fit(form):
    model = _small_model(form=form)
    names = [v.name for v in model.trainable_variables]
    assert sum("centers" in n for n in names) == 2
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    x, y = _toy_data()
    initialize_centers(model)
    before = _centres(model)
    cb = ClusterCallback(warmup_steps=4)
    history = model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[cb])
    after = _centres(model)
    for b, a in zip(before, after):
        assert np.max(np.abs(a - b)) > 1e-3
    assert cb.step == 8
    assert "cluster_mse" in history.history


def test_warmup_ramps_strength():
    model = _small_model()
    model.compile("adam", "sparse_categorical_crossentropy")
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append(float(model.layers[0].kernel_regularizer.warmup.numpy()))

    x, y = _toy_data(64)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0,
              callbacks=[ClusterCallback(warmup_steps=4), Spy()])
    np.testing.assert_allclose(seen, [0.25, 0.5, 0.75, 1.0])


def _trained_model(tmp_path=None):
    model = _small_model()
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    x, y = _toy_data()
    model.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[ClusterCallback()])
    return model, x


def test_keras_file_round_trip(tmp_path):
    model, x = _trained_model()
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    for a, b in zip(_centres(model), _centres(loaded)):
        np.testing.assert_array_equal(a, b)
    reg = loaded.layers[0].kernel_regularizer
    assert isinstance(reg, ClusterReg) and float(reg.initialized.numpy()) == 1.0
    assert reg.get_config() == model.layers[0].kernel_regularizer.get_config()
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-6)
    np.testing.assert_allclose(float(tf.add_n(loaded.losses)), float(tf.add_n(model.losses)),
                               rtol=1e-6)
    # training resumes without re-initialising the restored centres
    initialize_centers(loaded)
    for a, b in zip(_centres(model), _centres(loaded)):
        np.testing.assert_array_equal(a, b)


def test_savedmodel_round_trip(tmp_path):
    model, x = _trained_model()
    path = str(tmp_path / "sm")
    model.save(path, save_format="tf")
    loaded = keras.models.load_model(path)
    for a, b in zip(_centres(model), _centres(loaded)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-6)
    raw = tf.saved_model.load(path)
    stored = sorted(v.numpy().tolist() for v in raw.variables if "centers" in v.name)
    assert stored == sorted(c.tolist() for c in _centres(model))


def test_checkpoint_restore(tmp_path):
    model, _ = _trained_model()
    prefix = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    saved = _centres(model)
    for _, _, reg in keras_wreg.regularizers.clustered_weights(model):
        reg.centers.assign(np.zeros(4, np.float32))
    tf.train.Checkpoint(model=model).restore(prefix).assert_existing_objects_matched()
    for a, b in zip(saved, _centres(model)):
        np.testing.assert_array_equal(a, b)


def test_mirrored_strategy():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model = _small_model()
        model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    x, y = _toy_data()
    initialize_centers(model)
    before = _centres(model)
    model.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[ClusterCallback(snap="end")])
    after = _centres(model)
    assert all(np.max(np.abs(a - b)) > 1e-3 for a, b in zip(before, after))
    for layer, weight, reg in keras_wreg.regularizers.clustered_weights(model):
        assert set(np.unique(weight.numpy())) <= set(reg.get_centers().tolist())


# -- snapping, strip, report ---------------------------------------------------------------
def test_snap_strip_exact_k_values_and_same_predictions():
    model, x = _trained_model()
    counts = snap_weights(model)
    assert counts == {model.layers[0].name: 4, model.layers[1].name: 4}
    for layer, weight, reg in keras_wreg.regularizers.clustered_weights(model):
        np.testing.assert_array_equal(np.unique(weight.numpy()), np.sort(reg.get_centers()))
    snapped_pred = model.predict(x, verbose=0)
    stripped = strip_clustering(model)
    assert type(stripped.layers[0]) is keras.layers.Dense  # Larq layer without quantizer
    assert not any(isinstance(m, ClusterReg) for m in stripped.submodules)
    assert not any("centers" in v.name for v in stripped.weights)
    for layer in stripped.layers[:2]:
        assert np.unique(layer.kernel.numpy()).size == 4
    np.testing.assert_array_equal(stripped.predict(x, verbose=0), snapped_pred)
    assert stripped.losses == []


def test_strip_snaps_and_keeps_quantized_larq_layers():
    model = keras.Sequential([
        keras.Input((6,)),
        lq.layers.QuantDense(5, input_quantizer="ste_sign", kernel_regularizer=ClusterReg(3)),
    ])
    initialize_centers(model)
    stripped = strip_clustering(model)
    assert isinstance(stripped.layers[0], lq.layers.QuantDense)
    assert np.unique(stripped.layers[0].kernel.numpy()).size == 3


def test_compression_report_counts_bits():
    model, _ = _trained_model()
    stripped = strip_clustering(model)
    report = compression_report(stripped)
    rows = {r["name"]: r for r in report["layers"]}
    k1 = rows[stripped.layers[0].kernel.name]
    assert k1["levels"] == 4 and k1["bits"] == 6 * 12 * 2 + 32 * 4
    k2 = rows[stripped.layers[1].kernel.name]
    assert k2["bits"] == 12 * 3 * 2 + 32 * 4
    assert rows[stripped.layers[0].bias.name]["bits"] == 32 * 12
    expected = 6 * 12 * 2 + 128 + 12 * 3 * 2 + 128 + 32 * (12 + 3)
    assert report["total_bits"] == expected
    assert report["float_bits"] == 32 * (6 * 12 + 12 + 12 * 3 + 3)
    # an unsnapped model is all float
    fresh = compression_report(_small_model())
    assert fresh["total_bits"] == fresh["float_bits"]


def test_kmeans_baseline_k_values():
    model, x = _trained_model()
    clone = kmeans_cluster_model(model, 3)
    for layer in clone.layers[:2]:
        assert np.unique(layer.kernel.numpy()).size == 3
    # the original is untouched
    assert np.unique(model.layers[0].kernel.numpy()).size > 3


def test_strip_rejects_subclassed_models():
    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = keras.layers.Dense(2, kernel_regularizer=ClusterReg(2))

        def call(self, x):
            return self.d(x)

    m = Sub()
    m(np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match="model"):
        strip_clustering(m)


def test_delay_then_ramp_and_reinitialise():
    cb = ClusterCallback(delay_steps=3, warmup_steps=2)
    assert [cb.factor(t) for t in range(6)] == [0.0, 0.0, 0.0, 0.5, 1.0, 1.0]
    model = _small_model()
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    x, y = _toy_data(64)
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            reg = model.layers[0].kernel_regularizer
            seen.append((float(reg.warmup.numpy()), reg.get_centers().copy(),
                         model.layers[0].kernel.numpy().copy()))

    model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[cb, Spy()])
    assert [s[0] for s in seen] == [0.0, 0.0, 0.0, 0.5, 1.0, 1.0, 1.0, 1.0]
    # at step 3 the centres were re-initialised (k-means++ seeds are weights of that step)
    assert set(seen[3][1].tolist()) <= set(seen[3][2].ravel().tolist())
    assert not np.allclose(seen[3][1], seen[0][1])


def test_recipe_end_to_end_mnist(mnist_small):
    d = mnist_small
    recipe = recipes.get("cluster")
    params = recipe.params({"num_centers": 4, "learning_rate": 3e-3})
    model = recipe.build_model("vgg_small", d.input_shape, d.num_classes, params, width=8)
    assert len(keras_wreg.regularizers.clustered_weights(model)) == 7
    epochs = 3
    recipe.compile(model, params, int(d.train.cardinality().numpy()) * epochs)
    history = recipe.fit(model, d.train, epochs, validation_data=d.test, params=params,
                         verbose=0)
    before = history.snap_metrics["before_snap"]["accuracy"]
    after = history.snap_metrics["after_snap"]["accuracy"]
    assert after > 0.5, history.snap_metrics  # chance is 0.1
    # Snapping to 4 centres may cost accuracy. The drop (before - after) measured with op
    # determinism on the MNIST slice for seeds 0/1/2: 0.024, 0.001, 0.033; another machine saw
    # 0.066 for seed 0 (different CPU kernels, different trajectory). 0.10 covers that spread;
    # a broken snap or BN re-estimation drops to near chance (> 0.3).
    assert before - after < 0.10, history.snap_metrics
    stripped = strip_clustering(model)
    stripped.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    kernels = [layer.kernel.numpy() for layer in stripped.layers if hasattr(layer, "kernel")]
    assert len(kernels) == 7 and all(np.unique(k).size == 4 for k in kernels)
    assert stripped.evaluate(d.test, verbose=0)[1] == pytest.approx(after, abs=1e-6)
    report = compression_report(stripped)
    assert report["ratio"] > 5


def test_recalibrate_batchnorm_only_moves_bn_statistics():
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4),
                              keras.layers.BatchNormalization(momentum=0.5)])
    x, _ = _toy_data(64)
    weights = [w.copy() for w in model.get_weights()]
    ds = tf.data.Dataset.from_tensor_slices(x).batch(16)
    assert keras_wreg.recalibrate_batchnorm(model, ds, steps=50) == 4
    bn = model.layers[1]
    np.testing.assert_array_equal(model.layers[0].kernel.numpy(), weights[0])
    assert not np.allclose(bn.moving_mean.numpy(), weights[4])
    with pytest.raises(ValueError, match="steps"):
        keras_wreg.recalibrate_batchnorm(model, ds, steps=0)


def test_recipe_finetune_keeps_k_values():
    recipe = recipes.get("cluster")
    params = recipe.params({"num_centers": 3, "finetune": 1, "bn_recalibrate": 0})
    model = keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(8, activation="relu",
                           kernel_regularizer=recipe.make_regularizer(params)),
        keras.layers.Dense(3, activation="softmax",
                           kernel_regularizer=recipe.make_regularizer(params)),
    ])
    x, y = _toy_data()
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    recipe.compile(model, params, 8)
    history = recipe.fit(model, ds, 2, validation_data=ds, params=params, verbose=0)
    assert set(history.snap_metrics) == {"before_snap", "after_snap_raw", "after_snap",
                                         "after_finetune"}
    assert len(history.history["finetune_loss"]) == 1
    for _, weight, reg in keras_wreg.regularizers.clustered_weights(model):
        values = np.unique(weight.numpy())
        assert values.size <= 3 and set(values.tolist()) <= set(reg.get_centers().tolist())


def test_larq_quantized_kernel_uses_latent_weights():
    layer = lq.layers.QuantDense(5, kernel_quantizer="ste_sign", kernel_regularizer=ClusterReg(3))
    model = keras.Sequential([keras.Input((6,)), layer])
    [(found_layer, weight, reg)] = keras_wreg.regularizers.clustered_weights(model)
    assert found_layer is layer and weight is layer.kernel.latent_variable
    initialize_centers(model)
    assert np.unique(reg.get_centers()).size == 3  # from latent values, not the ±1 signs
    snap_weights(model)
    assert np.unique(layer.kernel.latent_variable.numpy()).size == 3


def test_strip_leaves_its_input_untouched():
    """As TF-MOT's strip_clustering: a new model comes out, the clustered one keeps training."""
    model, x = _trained_model()
    before = [w.copy() for w in model.get_weights()]
    stripped = strip_clustering(model)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert max(np.unique(layer.kernel.numpy()).size for layer in stripped.layers[:2]) == 4
    assert any(np.unique(w).size > 4 for w in before if w.ndim == 2)  # it was not snapped
