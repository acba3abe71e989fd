"""Property-based numerics: finite values and gradients for every finite input, in float32,
bfloat16 and float16 (Hypothesis).

Domain: every finite float16 value; for bfloat16 and float32 every finite value with
magnitude <= 1e15 (squares and sums of squares stay finite in float32), including subnormals
and exact zeros. Examples are derandomized so the suite is deterministic.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import keras_wreg as kw
from keras_wreg._compat import keras, lq, tf
from keras_wreg.quantizers.hwgq import hwgq_levels

DTYPES = ["float32", "bfloat16", "float16"]
BIG = {"float32": 999999986991104.0, "bfloat16": 999999986991104.0, "float16": 65504.0}
SETTINGS = settings(max_examples=20, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


def _elements(dtype):
    width = 16 if dtype == "float16" else 32
    return st.floats(-BIG[dtype], BIG[dtype], allow_nan=False, allow_infinity=False,
                     width=width)


def kernels(dtype, shape=(6, 4)):
    """Random kernels plus the classic edge cases (zeros, constant, tiny, huge)."""
    special = st.sampled_from(["zeros", "const", "tiny", "huge", "mixed"]).map(
        lambda kind: _special(kind, dtype, shape))
    return st.one_of(special, hnp.arrays(np.float32, shape, elements=_elements(dtype)))


def _special(kind, dtype, shape):
    tiny = 6e-8 if dtype == "float16" else 1e-30
    big = BIG[dtype]
    base = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    return {"zeros": np.zeros(shape, np.float32),
            "const": np.full(shape, 0.5, np.float32),
            "tiny": np.sign(base) * tiny,
            "huge": np.sign(base) * big,
            "mixed": np.where(base > 0, big, tiny).astype(np.float32)}[kind]


def value_and_grad(fn, w, dtype):
    w = tf.Variable(tf.cast(w, dtype))
    with tf.GradientTape() as tape:
        out = fn(w)
        total = tf.reduce_sum(tf.cast(out, tf.float32))
    return out, tape.gradient(total, w), w


def assert_finite(*tensors):
    for t in tensors:
        if t is None:
            continue
        arr = np.asarray(tf.cast(t, tf.float32))
        assert np.all(np.isfinite(arr)), arr


REGULARIZERS = {
    "wreg_channel": lambda: kw.WReg(strength=1.0),
    "wreg_mean_l2l2": lambda: kw.WReg(strength=1.0, alpha="mean", inner="l2", outer="l2"),
    "wreg_fixed": lambda: kw.WReg(strength=1.0, alpha=1.0, reduce="mean"),
    "ternary_cosine": lambda: kw.TernaryReg(),
    "ternary_multiwell2": lambda: kw.TernaryReg(variant="multiwell"),
    "ternary_multiwell1": lambda: kw.TernaryReg(variant="multiwell", power=1),
    "ternary_fixed": lambda: kw.TernaryReg(threshold_value=0.05),
    "cluster_hard": lambda: kw.ClusterReg(4, form="hard"),
    "cluster_soft": lambda: kw.ClusterReg(4, form="soft"),
    "cluster_product": lambda: kw.ClusterReg(4, form="product"),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(REGULARIZERS))
def test_regularizer_finite_and_non_negative(name, dtype):
    reg = REGULARIZERS[name]()

    @SETTINGS
    @given(w=kernels(dtype))
    def check(w):
        value, grad, _ = value_and_grad(reg, w, dtype)
        assert_finite(value, grad)
        assert float(tf.cast(value, tf.float32)) >= 0.0

    check()


def _grid_kernel(name):
    """A kernel on the grid of regularizer ``name`` (its penalty must be 0 there)."""
    signs = np.where(np.random.default_rng(1).standard_normal((6, 4)) > 0, 1.0, -1.0)
    if name.startswith("wreg"):
        return (0.75 * signs).astype(np.float32) if name != "wreg_fixed" else signs
    if name.startswith("ternary"):
        t = signs * (np.arange(24).reshape(6, 4) % 3 != 0)
        return (0.5 * t).astype(np.float32)
    return np.tile(np.asarray([-1.0, -0.5, 0.5, 1.0], np.float32), (6, 1))  # the centres


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(REGULARIZERS))
def test_regularizer_is_zero_on_the_grid(name, dtype):
    reg = REGULARIZERS[name]()
    if name.startswith("cluster"):
        reg.centers.assign([-1.0, -0.5, 0.5, 1.0])  # representable in every dtype
    w = _grid_kernel(name)
    if name == "ternary_fixed":
        w = np.where(np.abs(w) > 0, w, 0.0).astype(np.float32)
    value, grad, _ = value_and_grad(reg, w, dtype)
    assert_finite(value, grad)
    assert abs(float(tf.cast(value, tf.float32))) <= 1e-6


QUANTIZERS = {
    "rst": lambda: kw.RescaledSigmoidTernary(),
    "rst_abs": lambda: kw.RescaledSigmoidTernary(relative_temperature=False, temperature=100.0),
    "scaled_sign": lambda: kw.ScaledSign(),
    "hwgq2": lambda: kw.HWGQ(2),
    "hwgq4": lambda: kw.HWGQ(4),
}


def _levels_ok(name, w, q):
    q = np.asarray(tf.cast(q, tf.float32))
    if name.startswith("hwgq"):
        bits = int(name[-1])
        levels = np.asarray([0.0] + hwgq_levels(bits), np.float32)
        return np.all(np.min(np.abs(q[..., None] - levels), axis=-1) <= 1e-2 * levels.max())
    if name == "scaled_sign":  # +-alpha_c per output channel (last axis)
        return np.all(np.abs(np.abs(q) - np.abs(q).max(axis=0, keepdims=True)) == 0)
    values = np.unique(np.abs(q))
    return len(values[values > 0]) <= 1  # {-a, 0, +a}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(QUANTIZERS))
def test_quantizer_finite_and_on_its_levels(name, dtype):
    quantizer = QUANTIZERS[name]()

    @SETTINGS
    @given(w=kernels(dtype))
    def check(w):
        q, grad, _ = value_and_grad(quantizer, w, dtype)
        assert q.dtype == tf.as_dtype(dtype)
        assert_finite(q, grad)
        assert _levels_ok(name, w, q), np.asarray(tf.cast(q, tf.float32))

    check()


def _layer_case(name, dtype):
    policy = {"float32": "float32", "bfloat16": "mixed_bfloat16",
              "float16": "mixed_float16"}[dtype]
    if name == "fda":
        return kw.FeatureDistributionAdjust(dtype=policy), None
    if name == "ge":
        return kw.GroupExcitation(groups=2, reduction=2, dtype=policy), None
    if name == "sign_static":
        return kw.ThresholdSign(input_dependent=False, balance_penalty=0.1, dtype=policy), None
    return kw.ThresholdSign(groups=2, dtype=policy), "excitation"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["fda", "ge", "sign_static", "sign_dependent"])
def test_layer_finite_values_and_gradients(name, dtype):
    layer, extra = _layer_case(name, dtype)

    @SETTINGS
    @given(x=kernels(dtype, shape=(2, 3, 3, 4)))
    def check(x):
        x = tf.Variable(tf.cast(x, dtype))
        with tf.GradientTape(persistent=True) as tape:
            inputs = [x, tf.fill((2, 2), tf.constant(0.5, dtype))] if extra else x
            out = layer(inputs, training=True)
            total = tf.reduce_sum(tf.cast(out, tf.float32)) + tf.add_n(
                [tf.cast(loss, tf.float32) for loss in layer.losses] or [0.0])
        grads = tape.gradient(total, [x] + layer.trainable_variables)
        assert_finite(out, *grads)
        if name.startswith("sign"):
            assert set(np.unique(np.asarray(tf.cast(out, tf.float32)))) <= {-1.0, 1.0}

    check()


def test_float16_and_tiny_float32_weights_give_finite_values_and_gradients():
    """Zero float16 kernels and tiny float32 ones: finite penalties and gradients."""
    zero16 = np.zeros((3, 3, 4, 8), np.float32)
    _, grad, _ = value_and_grad(kw.TernaryReg(), zero16, "float16")
    assert_finite(grad)
    q, grad, _ = value_and_grad(kw.RescaledSigmoidTernary(), zero16, "float16")
    assert_finite(q, grad)
    layer = kw.FeatureDistributionAdjust(dtype="float16")
    x = tf.Variable(tf.fill((2, 4, 4, 3), tf.constant(3.0, tf.float16)))
    with tf.GradientTape() as tape:
        y = layer(x)
    assert_finite(y, *tape.gradient(y, [x] + layer.trainable_variables))
    for value in (1e-30, -1e-30):
        w = np.full((4, 4), value, np.float32)
        _, grad, _ = value_and_grad(kw.TernaryReg(variant="multiwell"), w, "float32")
        assert_finite(grad)
    for form in ("soft", "product"):
        w = np.asarray([[1e15, -1e15, 3e12, 0.0]], np.float32)
        value, grad, _ = value_and_grad(kw.ClusterReg(4, form=form), w, "float32")
        assert_finite(value, grad)


def test_quant_dense_mixed_float16_zero_kernel_trains_without_nan():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        layer = lq.layers.QuantDense(4, kernel_quantizer=kw.RescaledSigmoidTernary(),
                                     kernel_initializer="zeros")
        x = tf.ones((2, 3))
        with tf.GradientTape() as tape:
            y = layer(x)
            loss = tf.reduce_sum(tf.cast(y, tf.float32))
        grads = tape.gradient(loss, layer.trainable_variables)
        assert_finite(y, *grads)
    finally:
        keras.mixed_precision.set_global_policy("float32")
