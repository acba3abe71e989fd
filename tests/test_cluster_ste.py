"""Issue 16: the task loss trains the ClusterReg centres (ClusterQuantizer, decoupled step, ramps)."""

import numpy as np
import pytest

import keras_wreg as kw
from keras_wreg import ClusterCallback, ClusterQuantizer, ClusterReg, recipes
from keras_wreg._compat import keras, lq, tf
from keras_wreg.quantizers.cluster import bind_cluster_quantizers, set_cluster_phase
from keras_wreg.schedules import Ramp


def _bound(k=4, mode="hard", centers=(-0.3, -0.05, 0.1, 0.4), **kw_):
    reg = ClusterReg(k)
    reg.centers.assign(np.asarray(centers[:k], "float32"))
    return reg, ClusterQuantizer(reg, mode=mode, active=True, **kw_)


def _model(k=4, mode="hard", width=4, seed=0):
    keras.utils.set_random_seed(seed)
    return kw.models.vgg_small((8, 8, 3), 3, width=width, input_quantizer=None,
                               kernel_constraint=None,
                               kernel_quantizer=ClusterQuantizer(mode=mode),
                               kernel_regularizer=ClusterReg(k, reduce="sum", strength=1.0),
                               activation_block=lambda x: keras.layers.Activation("relu")(x))


def _x(n=4, seed=1):
    return np.random.default_rng(seed).normal(size=(n, 8, 8, 3)).astype("float32")


# -- gradients ---------------------------------------------------------------------------
def test_hard_gradient_is_ste_to_weights_and_segment_sum_to_centres():
    reg, q = _bound()
    rng = np.random.default_rng(0)
    w = tf.constant(rng.normal(0, 0.2, (5, 7)).astype("float32"))
    up = tf.constant(rng.normal(size=(5, 7)).astype("float32"))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(w)
        out = q(w)
        loss = tf.reduce_sum(out * up)
    gw, gc = tape.gradient(loss, [w, reg.centers])
    np.testing.assert_allclose(gw.numpy(), up.numpy(), rtol=0, atol=0)
    j = reg.assign(w.numpy())
    expected = np.bincount(j.ravel(), weights=up.numpy().ravel(), minlength=4)
    np.testing.assert_allclose(gc.numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out.numpy(), reg.snapped(w.numpy()))


def test_soft_gradient_to_centres_matches_finite_differences():
    reg, q = _bound(mode="soft", temperature=0.5)
    rng = np.random.default_rng(2)
    w = tf.constant(rng.normal(0, 0.2, (40,)).astype("float64").astype("float32"))
    up = rng.normal(size=(40,)).astype("float32")

    def loss():
        return tf.reduce_sum(q(w) * up)

    with tf.GradientTape() as tape:
        value = loss()
    g = tape.gradient(value, reg.centers).numpy()
    c0 = reg.get_centers().copy()
    eps = 1e-3
    for k in range(4):
        plus, minus = c0.copy(), c0.copy()
        plus[k] += eps
        minus[k] -= eps
        reg.centers.assign(plus)
        lp = float(loss())
        reg.centers.assign(minus)
        lm = float(loss())
        reg.centers.assign(c0)
        assert abs((lp - lm) / (2 * eps) - g[k]) < 2e-2 * max(1.0, abs(g[k]))


def test_soft_tends_to_hard_and_inactive_is_identity():
    reg, q = _bound(mode="soft", temperature=1e-4)
    w = tf.constant(np.linspace(-0.5, 0.5, 23).astype("float32"))
    np.testing.assert_allclose(q(w).numpy(), reg.snapped(w.numpy()), atol=1e-4)
    q.set_active(False)
    np.testing.assert_array_equal(q(w).numpy(), w.numpy())
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(q(w))
    g = tape.gradient(loss, reg.centers)
    assert g is None or not np.any(g.numpy())


# -- model: exact snap, strip, round trips -------------------------------------------------
def test_phase_on_equals_snapped_and_stripped_model_exactly(tmp_path):
    model = _model()
    kw.initialize_centers(model)
    x = _x()
    assert set_cluster_phase(model, True) == 7
    y_phase = model(x, training=False).numpy()
    stripped = kw.strip_clustering(model)  # snaps in place
    np.testing.assert_array_equal(model(x, training=False).numpy(), y_phase)
    np.testing.assert_array_equal(stripped(x, training=False).numpy(), y_phase)
    counts = [np.unique(l.kernel.numpy()).size for l in stripped.layers if hasattr(l, "kernel")]
    assert max(counts) == 4 and len(counts) == 7
    assert not any(isinstance(getattr(l, "kernel_quantizer", None), ClusterQuantizer)
                   for l in stripped.layers)


_BUILDERS = {
    "vgg_small": lambda **kw_: kw.models.vgg_small(
        (8, 8, 3), 3, width=4, input_quantizer=None, kernel_constraint=None,
        activation_block=lambda x: keras.layers.Activation("relu")(x), **kw_),
    "resnet18": lambda **kw_: kw.models.resnet18((8, 8, 3), 3, width=4, kernel_constraint=None,
                                                 **kw_),
    "vgg_small_hwgq": lambda **kw_: kw.models.vgg_small_hwgq((8, 8, 3), 3, width=4,
                                                             kernel_constraint=None, **kw_),
}


@pytest.mark.parametrize("builder", sorted(_BUILDERS))
def test_every_builder_binds_one_quantizer_per_layer_and_phase_equals_snap(builder):
    """A template ClusterQuantizer passed to a keras_wreg builder becomes one quantizer per
    layer, bound to that layer's own ClusterReg (a shared instance would read one layer's
    centres everywhere), and the phase-on output equals the snapped model's."""
    keras.utils.set_random_seed(0)
    model = _BUILDERS[builder](kernel_quantizer=ClusterQuantizer(),
                               kernel_regularizer=ClusterReg(4, reduce="sum", strength=1.0))
    pairs = [(l, l.kernel_quantizer) for l in model.submodules
             if isinstance(getattr(l, "kernel_quantizer", None), ClusterQuantizer)]
    assert len(pairs) >= 7
    assert len({id(q) for _, q in pairs}) == len(pairs)
    assert all(q.regularizer is l.kernel_regularizer for l, q in pairs)
    kw.initialize_centers(model)
    x = _x()
    set_cluster_phase(model, True)
    y_phase = model(x, training=False).numpy()
    kw.snap_weights(model)
    set_cluster_phase(model, False)
    np.testing.assert_allclose(model(x, training=False).numpy(), y_phase, rtol=0, atol=1e-6)


def test_keras_round_trip_keeps_centres_phase_and_binding(tmp_path):
    model = _model(mode="soft")
    kw.initialize_centers(model)
    set_cluster_phase(model, True, temperature=0.25)
    x = _x()
    y = model(x).numpy()
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    for layer in loaded.layers:
        q = getattr(layer, "kernel_quantizer", None)
        if isinstance(q, ClusterQuantizer):
            assert q.regularizer is layer.kernel_regularizer
            assert float(q.active.numpy()) == 1.0
            assert float(q.temperature.numpy()) == pytest.approx(0.25)
    np.testing.assert_allclose(loaded(x).numpy(), y, atol=1e-6)


def test_checkpoint_restore_and_rebinding_after_from_config(tmp_path):
    model = _model()
    kw.initialize_centers(model)
    set_cluster_phase(model, True)
    ckpt = tf.train.Checkpoint(model=model)
    path = ckpt.write(str(tmp_path / "ck"))
    twin = keras.Model.from_config(model.get_config())
    # from_config deserializes the quantizer's and the layer's regularizer apart: re-bind
    assert bind_cluster_quantizers(twin) == 7
    assert bind_cluster_quantizers(twin) == 0
    set_cluster_phase(twin, False)
    tf.train.Checkpoint(model=twin).read(path).expect_partial()
    for a, b in zip(model.layers, twin.layers):
        if isinstance(getattr(a, "kernel_quantizer", None), ClusterQuantizer):
            np.testing.assert_array_equal(a.kernel_regularizer.get_centers(),
                                          b.kernel_regularizer.get_centers())
            assert float(b.kernel_quantizer.active.numpy()) == 1.0
    x = _x()
    np.testing.assert_array_equal(twin(x).numpy(), model(x).numpy())


def test_bad_arguments_raise_value_error():
    with pytest.raises(ValueError, match="`mode`"):
        ClusterQuantizer(mode="nearest")
    with pytest.raises(ValueError, match="`temperature`"):
        ClusterQuantizer(temperature=0.0)
    with pytest.raises(ValueError, match="`regularizer`"):
        ClusterQuantizer(regularizer=kw.WReg())
    with pytest.raises(ValueError, match="`active`"):
        ClusterQuantizer(active="yes")
    with pytest.raises(ValueError, match="not bound"):
        ClusterQuantizer()(tf.ones((3,)))
    with pytest.raises(ValueError, match="`quantize_step`"):
        ClusterCallback(quantize_step=-1)
    with pytest.raises(ValueError, match="`decoupled`"):
        ClusterCallback(decoupled="yes")
    with pytest.raises(ValueError, match="ste_mode"):
        recipes.get("cluster").params({"ste_mode": "nearest"})


# -- callback: phase switch, decoupled step, schedule ------------------------------------
def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8, 8, 3)).astype("float32")
    y = (x[:, :4].mean(axis=(1, 2, 3)) > 0).astype("int64") + (x[:, 4:].mean(axis=(1, 2, 3)) > 0)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(16)


class _Phase(keras.callbacks.Callback):
    def on_train_batch_begin(self, batch, logs=None):
        q = next(q for l in self.model.layers
                 for q in [getattr(l, "kernel_quantizer", None)] if q is not None)
        self.seen = getattr(self, "seen", []) + [float(q.active.numpy())]


def test_callback_switches_phase_at_quantize_step_and_anneals_temperature():
    model = _model(mode="soft")
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    probe = _Phase()
    cb = ClusterCallback(quantize_step=5, temperature_schedule=Ramp(5, 8, initial=1.0, final=0.1),
                         reseed_every=0)
    model.fit(_data(), epochs=2, verbose=0, callbacks=[cb, probe])
    assert probe.seen == [0.0] * 5 + [1.0] * 3
    q = model.layers[1].kernel_quantizer
    assert float(q.temperature.numpy()) < 1.0
    assert ClusterCallback.from_config(cb.get_config()).get_config() == cb.get_config()


def test_decoupled_step_pulls_weights_and_keeps_penalty_out_of_the_loss():
    model = _model()
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    cb = ClusterCallback(decoupled=True, schedule=Ramp(0, 1, initial=100.0, final=100.0),
                         reseed_every=0)
    kw.initialize_centers(model)
    before = kw.callbacks.cluster_stats(model)
    model.fit(_data(), epochs=2, verbose=0, callbacks=[cb])
    after = kw.callbacks.cluster_stats(model)
    assert sum(s["mse"] for s in after.values()) < 0.5 * sum(s["mse"] for s in before.values())
    assert all(float(reg.warmup.numpy()) == 0.0 for _, _, reg in
               kw.regularizers.clustered_weights(model))
    assert float(tf.add_n(model.losses)) == 0.0


def test_decoupled_rejects_non_hard_forms():
    keras.utils.set_random_seed(0)
    model = kw.models.vgg_small((8, 8, 3), 3, width=2, input_quantizer=None,
                                kernel_quantizer=None, kernel_constraint=None,
                                kernel_regularizer=ClusterReg(3, form="soft"))
    model.compile(keras.optimizers.Adam(), "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="form='hard'"):
        model.fit(_data(16), epochs=1, verbose=0, callbacks=[ClusterCallback(decoupled=True)])


def test_recipe_with_ste_phase_has_no_snap_drop():
    recipe = recipes.get("cluster")
    params = recipe.params({"ste": 0.5, "decoupled": True, "ramp": "cosine", "ramp_final": 3.0,
                            "delay": 0.0, "warmup": 0.3, "bn_recalibrate": 0})
    keras.utils.set_random_seed(0)
    model = recipe.build_model("vgg_small", (8, 8, 3), 3, params, width=4)
    train = _data()
    recipe.compile(model, params, 4 * 3)
    history = recipe.fit(model, train, 3, validation_data=train, params=params, verbose=0)
    m = history.snap_metrics
    assert m["after_snap_raw"]["loss"] == pytest.approx(m["before_snap"]["loss"], abs=1e-6)
    stripped = kw.strip_clustering(model)
    counts = [np.unique(l.kernel.numpy()).size for l in stripped.layers if hasattr(l, "kernel")]
    assert max(counts) <= 4


def test_larq_summary_reports_index_bits_of_bound_quantizers():
    """Larq's model summary reads ``precision`` of every kernel quantizer (an int): a bound
    ClusterQuantizer stores ceil(log2 K) bits per weight, a template 32."""
    assert ClusterQuantizer().precision == 32
    for k, bits in ((2, 1), (4, 2), (5, 3), (16, 4)):
        assert ClusterQuantizer(ClusterReg(k)).precision == bits
    model = _model(k=4)
    lines = []
    lq.models.summary(model, print_fn=lines.append)
    assert any("2-bit" in line or "2 bit" in line.lower() for line in lines), "\n".join(lines)
    assert kw.export.model_summary_text(model)
