r"""Half-wave Gaussian activation quantizer and per-channel scaled binary weights (seed 002).

Zhang, Yan & Zhang, *Neural Network Compression Method Combining Half-Wave Gaussian Quantization
and Alternate Update*, Computer Engineering 47(5), 2021, built on HWGQ-Net (Cai et al., CVPR 2017)
and XNOR-Net/BWN weight scaling (Rastegari et al., 2016).
"""


from keras_wreg._compat import BaseQuantizer, lq, register_quantizer, tf
from keras_wreg._numerics import saturate_cast, to_float32
from keras_wreg._validation import check_int, check_optional, check_positive

#: Uniform step of the optimal k-bit quantizer of a unit-variance half-Gaussian
#: (HWGQ reference code, zhaoweicai/hwgq).
HWGQ_STEPS = {1: 0.799, 2: 0.538, 3: 0.3217, 4: 0.185}


def hwgq_levels(bits):
    r"""The ``2**bits - 1`` positive levels :math:`i\\Delta_k` of the k-bit HWGQ quantizer."""
    step = HWGQ_STEPS[_check_bits(bits)]
    return [round(i * step, 10) for i in range(1, 2**bits)]


def hwgq_thresholds(bits):
    r"""The thresholds :math:`(i + \\tfrac12)\\Delta_k` between consecutive positive levels."""
    step = HWGQ_STEPS[_check_bits(bits)]
    return [round((i + 0.5) * step, 10) for i in range(1, 2**bits - 1)]


def _check_bits(bits):
    return check_int(bits, "bits", low=min(HWGQ_STEPS), high=max(HWGQ_STEPS))


def hwgq(x, bits=2):
    r"""Functional form of :class:`HWGQ` (see there for the formula)."""
    bits = _check_bits(bits)
    x = tf.convert_to_tensor(x)
    step = HWGQ_STEPS[bits]
    top = hwgq_levels(bits)[-1]
    thresholds = hwgq_thresholds(bits)

    @tf.custom_gradient
    def _call(x):
        positive = tf.cast(x > 0, x.dtype)
        index = positive
        for t in thresholds:  # interval (t_{i-1}, t_i] -> level i; boundaries go down
            index = index + tf.cast(x > tf.constant(t, dtype=x.dtype), x.dtype)

        def grad(dy):
            mask = tf.logical_and(x > 0, x <= tf.constant(top, dtype=x.dtype))
            return tf.where(mask, dy, tf.zeros_like(dy))

        return tf.constant(step, dtype=x.dtype) * index, grad

    return _call(x)


class HWGQ(BaseQuantizer):
    r"""Half-wave Gaussian quantizer (HWGQ-Net) for activations, k = 1..4 bits.

    Forward (facts from the HWGQ reference code): with the uniform step :math:`\Delta_k`
    (1: 0.799, 2: 0.538, 3: 0.3217, 4: 0.185) of the optimal quantizer of a unit-variance
    half-Gaussian, levels :math:`q_i = i\Delta_k`, :math:`i = 1..2^k-1`, and thresholds
    :math:`t_i = (i + \tfrac12)\Delta_k`, :math:`i = 1..2^k-2`:

    .. math::

        Q(x) = \begin{cases}
            0 & x \le 0 \\
            q_1 & 0 < x \le t_1 \\
            q_i & t_{i-1} < x \le t_i \\
            q_{2^k-1} & x > t_{2^k-2}
        \end{cases}

    i.e. :math:`x \le 0 \to 0`, otherwise the nearest positive level; a value exactly on a
    threshold goes to the lower level. For 2 bits: levels 0.538, 1.076, 1.614, thresholds 0.807,
    1.345.

    Backward: clipped ReLU, :math:`\partial L/\partial x = \partial L/\partial Q \cdot
    \mathbb 1[0 < x \le q_{2^k-1}]` (up to the top level, 1.614 for 2 bits).

    The levels assume a unit-variance input: put it right after
    ``BatchNormalization(center=False, scale=False)`` (see
    :func:`keras_wreg.layers.hwgq_block`). The first layer should see the raw image instead.

    Args:
        bits: 1, 2, 3 or 4 (default 2).
        metrics: as for Larq's quantizers: a list of metrics to add (only ``"flip_ratio"``
            exists); ``None`` takes those of ``larq.context.metrics_scope`` when the quantizer
            is a layer's kernel quantizer.

    Raises:
        ValueError: if ``bits`` is not in 1..4.

    Example:
        ```python
        act = kw.HWGQ(bits=2)  # half-wave Gaussian quantizer: 0 for x <= 0, 3 levels above
        print(act(tf.constant([-1.0, 0.3, 2.0])).numpy())
        conv = lq.layers.QuantConv2D(16, 3, input_quantizer=act, kernel_quantizer=kw.ScaledSign())
        ```
    """

    def __init__(self, bits=2, **kwargs):
        self.bits = _check_bits(bits)
        super().__init__(**kwargs)

    @property
    def precision(self):
        return self.bits

    @property
    def levels(self):
        return hwgq_levels(self.bits)

    @property
    def thresholds(self):
        return hwgq_thresholds(self.bits)

    def call(self, inputs):
        outputs = hwgq(inputs, self.bits)
        # Larq's flip_ratio metric compares int8 codes: report the level index Q(x)/step
        super().call(tf.round(outputs / HWGQ_STEPS[self.bits]))
        return outputs

    def get_config(self):
        return {**super().get_config(), "bits": self.bits}


HWGQ = register_quantizer(HWGQ, alias="hwgq")


def scaled_sign(w, clip_value=None):
    r"""Functional form of :class:`ScaledSign` (see there for the formula)."""
    clip_value = _check_clip(clip_value)
    w = tf.convert_to_tensor(w)
    dtype = w.dtype
    w = to_float32(w)  # float16/bfloat16: mean|W| in float32, cast back with saturation
    axes = list(range(w.shape.rank - 1))

    @tf.custom_gradient
    def _call(w):
        alpha = tf.reduce_mean(tf.abs(w), axis=axes)  # per output channel (last axis)
        sign = tf.where(w >= 0, tf.ones_like(w), -tf.ones_like(w))  # sign(0) = +1

        def grad(dy):
            if clip_value is None:
                return dy
            return tf.where(tf.abs(w) <= clip_value, dy, tf.zeros_like(dy))

        return alpha * sign, grad

    return saturate_cast(_call(w), dtype)


def _check_clip(clip_value):
    return check_optional(check_positive, clip_value, "clip_value")


class ScaledSign(BaseQuantizer):
    r"""Binary weights with one scaling factor per output channel (XNOR-Net/BWN scaling).

    Forward, with :math:`c` the output channel (last kernel axis) and :math:`n_c` the number of
    weights of channel :math:`c`:

    .. math::

        \alpha_c = \frac{1}{n_c}\sum_{i \in c} |W_i|, \qquad
        Q(W)_i = \alpha_c \operatorname{sign}(W_i), \qquad \operatorname{sign}(0) = +1.

    Backward: straight-through estimator to the latent weight,
    :math:`\partial L/\partial W_i = \partial L/\partial Q_i` (optionally zeroed where
    :math:`|W_i| > \text{clip\_value}`); :math:`\alpha_c` is treated as a constant, as in Larq's
    ``magnitude_aware_sign`` (which, unlike this one, has a clipped STE with a fixed threshold
    of 1). Because :math:`\alpha_c` follows the latent weights, rescaling a channel of the latent
    kernel rescales :math:`\alpha_c` exactly and keeps the signs: :class:`AlternateUpdate` sets
    :math:`\alpha_c` this way, so no extra state is stored.

    Use it without Larq's ``weight_clip`` (which would cap :math:`\alpha_c` at 1).

    Args:
        clip_value: ``None`` (default: the gradient always passes) or a positive threshold on
            :math:`|W|` above which the gradient is zeroed.
        metrics: as for Larq's quantizers: a list of metrics to add (only ``"flip_ratio"``,
            the fraction of output signs that changed since the previous step); ``None`` takes
            those of ``larq.context.metrics_scope`` when used as a layer's kernel quantizer.

    Raises:
        ValueError: for a non-positive ``clip_value``.

    Example:
        ```python
        quantizer = kw.ScaledSign()  # alpha_c * sign(w), alpha_c = mean |w_c|
        print(quantizer(tf.constant([[-0.5], [0.1], [0.3]])).numpy())
        conv = lq.layers.QuantConv2D(16, 3, kernel_quantizer=quantizer, input_quantizer=kw.HWGQ(2))
        ```
    """

    precision = 1

    def __init__(self, clip_value=None, **kwargs):
        self.clip_value = _check_clip(clip_value)
        super().__init__(**kwargs)

    def call(self, inputs):
        outputs = scaled_sign(inputs, self.clip_value)
        # Larq's flip_ratio metric compares int8 codes: report sign(W), not alpha_c sign(W)
        super().call(tf.sign(outputs))
        return outputs

    def get_config(self):
        return {**super().get_config(), "clip_value": self.clip_value}


ScaledSign = register_quantizer(ScaledSign, alias="scaled_sign")

#: kernel quantizers that store one float scale per output channel next to the binary kernel
SCALED_QUANTIZERS = (ScaledSign, lq.quantizers.MagnitudeAwareSign)

__all__ = ["HWGQ", "ScaledSign", "hwgq", "scaled_sign", "hwgq_levels", "hwgq_thresholds",
           "HWGQ_STEPS", "SCALED_QUANTIZERS"]
