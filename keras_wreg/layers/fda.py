r"""Feature-distribution-guided binary activations (seed 001).

Liu Chang, Chen Ying, *Feature distribution guided binary neural networks*, Control and Decision
39(6):1840-1848, 2024 (DOI 10.13195/j.kzyjc.2022.1945). Only the abstract is public: the paper
balances the positive and negative parts of binarized activations by (i) adjusting the feature
mean and variance before binarization and (ii) group excitation plus (iii) a feature fine-tuning
module that move the binarization zero point. The formulas below are a **reconstruction** [REC]
from the abstract and the prior work it builds on (ReActNet's RSign, squeeze-and-excitation,
Bi-Real's ApproxSign); the variants are behind arguments.

One binary unit (see :func:`keras_wreg.models.resnet18`)::

    x̃ = FeatureDistributionAdjust()(x)              # per-instance mean/std balancing
    e = GroupExcitation(groups)(x)                   # (N, G) in (0, 1), input dependent
    b = ThresholdSign(groups=groups)([x̃, e])         # sign(x̃ − τ_c − δ_c e_g(c)), ApproxSign
"""

import math

from keras_wreg._compat import keras, lq, register, tf
from keras_wreg._numerics import saturate_cast, to_float32
from keras_wreg._validation import (
    check_bool, check_choice, check_int, check_non_negative, check_positive, check_real,
    check_str)
from keras_wreg._validation import check_model, validate_args

#: most groups / channels a layer argument may name (beyond it, a typo)
MAX_GROUPS = 65536


def _check_epsilon(epsilon):
    return check_positive(epsilon, "epsilon", high=1.0)


def _check_channels_last(layer, shape):
    if shape.rank is None or shape.rank < 2 or shape[-1] is None:
        raise ValueError(f"{layer} needs inputs of known rank >= 2 with a known channel (last) "
                         f"axis, got shape {shape}.")
    return int(shape[-1])


def _spatial_size(shape):
    size = 1
    for dim in shape[1:-1]:
        size *= int(dim) if dim is not None else 1
    return size


def safe_std(variance):
    r""":math:`\sqrt{v}` with gradient 0 (not :math:`\infty \cdot 0 = \mathrm{NaN}`) at
    :math:`v = 0`."""
    positive = variance > 0
    root = tf.sqrt(tf.where(positive, variance, tf.ones_like(variance)))
    return tf.where(positive, root, tf.zeros_like(variance))


@register
class FeatureDistributionAdjust(keras.layers.Layer):
    r"""Per-instance balancing of each channel's mean and variance before binarization [REC].

    For every example :math:`n` and channel :math:`c`, with the spatial mean and standard
    deviation of that example's feature map,

    .. math::

        \mu_{nc} = \frac{1}{HW}\sum_{h,w} x_{nhwc}, \qquad
        \sigma_{nc} = \sqrt{\frac{1}{HW}\sum_{h,w} (x_{nhwc} - \mu_{nc})^2}

        \tilde x_{nhwc} = \gamma_c \, \frac{x_{nhwc} - \rho_c\,\mu_{nc}}{\sigma_{nc} + \epsilon}
                          + \beta_c

    with learnable per-channel :math:`\gamma` (init 1), :math:`\beta` (init 0) and
    :math:`\rho` (init 1). At init every channel of every example has mean :math:`\beta_c = 0`
    (as many activations on each side of the sign's zero point) and standard deviation
    :math:`\gamma_c\sigma/(\sigma+\epsilon) \approx 1`. :math:`\rho < 1` lets a fraction of the
    instance mean through (the "semantic" information a plain normalization would remove).
    Unlike BatchNorm the statistics are per instance, so they are the same at training and
    inference and there is no moving average.

    Gradients flow through :math:`\mu` and :math:`\sigma`. A constant channel
    (:math:`\sigma = 0`) gives :math:`\tilde x = \beta_c` and finite gradients (the square root
    uses the sub-gradient 0 at 0), never NaN.

    Extra cost: about 7 FLOPs per activation (mean, variance, subtract, scale, shift).

    Args:
        epsilon: :math:`\epsilon > 0` added to :math:`\sigma` (default 1e-5).
        center: learn :math:`\beta` (else fixed 0).
        scale: learn :math:`\gamma` (else fixed 1).
        learn_rho: learn :math:`\rho` (else fixed 1).

    Raises:
        ValueError: if ``epsilon <= 0``, or at build time for an input without a known channel
            axis.

    Example:
        ```python
        layer = kw.FeatureDistributionAdjust()  # mean/variance balancing before a sign
        print(layer(tf.random.normal((2, 4, 4, 8))).shape)
        ```
    """

    def __init__(self, epsilon=1e-5, center=True, scale=True, learn_rho=True, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = _check_epsilon(epsilon)
        self.center = check_bool(center, "center")
        self.scale = check_bool(scale, "scale")
        self.learn_rho = check_bool(learn_rho, "learn_rho")

    def build(self, input_shape):
        channels = _check_channels_last("FeatureDistributionAdjust",
                                        tf.TensorShape(input_shape))
        self.gamma = self.add_weight("gamma", shape=(channels,), initializer="ones",
                                     trainable=self.scale)
        self.beta = self.add_weight("beta", shape=(channels,), initializer="zeros",
                                    trainable=self.center)
        self.rho = self.add_weight("rho", shape=(channels,), initializer="ones",
                                   trainable=self.learn_rho)
        super().build(input_shape)

    def call(self, inputs):
        dtype = inputs.dtype
        x = to_float32(inputs)  # float16/bfloat16: statistics in float32 (eps underflows)
        axes = list(range(1, x.shape.rank - 1))
        mean = tf.reduce_mean(x, axis=axes, keepdims=True)
        variance = tf.reduce_mean(tf.square(x - mean), axis=axes, keepdims=True)
        std = safe_std(variance)
        # under mixed precision the variables are read as float16; upcast with saturation
        gamma, beta, rho = (tf.cast(to_float32(v), x.dtype)
                            for v in (self.gamma, self.beta, self.rho))
        return saturate_cast(gamma * (x - rho * mean) / (std + self.epsilon) + beta, dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def flops(self, input_shape):
        """FLOPs per example: mean (1), variance (3), subtract (1), scale (1), shift (1) per
        activation, plus a few per channel."""
        channels = int(input_shape[-1])
        return 7 * _spatial_size(input_shape) * channels + 4 * channels

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon, "center": self.center,
                "scale": self.scale, "learn_rho": self.learn_rho}


@register
class GroupExcitation(keras.layers.Layer):
    r"""Squeeze-and-excitation at the granularity of channel groups [REC].

    The :math:`C` channels are split into :math:`G` contiguous groups of :math:`C/G`; the
    squeeze :math:`z_n \in \mathbb R^d` is the spatial mean of each channel (``pool="channel"``,
    default, :math:`d = C`, the usual SE squeeze) or of each group (``pool="group"``,
    :math:`d = G`, the literal docs/methods.md reading):

    .. math::

        z_{nc} = \frac{1}{HW}\sum_{h,w} x_{nhwc} \quad\text{or}\quad
        z_{ng} = \frac{1}{HW\,C/G}\sum_{h,w}\sum_{c \in g} x_{nhwc}

        e_n = \operatorname{sigmoid}\big(W_2\,\operatorname{relu}(W_1 z_n + b_1) + b_2\big)
              \in (0, 1)^G

    with :math:`W_1 \in \mathbb R^{k\times d}`, :math:`W_2 \in \mathbb R^{G\times k}` and
    :math:`k = \max(1, \lceil d/r\rceil)` for the reduction ratio :math:`r`. The output is
    one value in (0, 1) per example and group (excitation at group granularity); it is what
    :class:`ThresholdSign` uses to move the zero point of each group. The per-channel squeeze
    is the default because with few groups the group squeeze leaves a hidden layer of one or
    two ReLU units, which we saw die early in training (the excitation then stops depending
    on the input).

    Note: feed it the features *before* :class:`FeatureDistributionAdjust`. After that layer
    every channel of every example has spatial mean :math:`\beta_c` (for :math:`\rho = 1`),
    so the group means would not depend on the input.

    Extra cost: one add per activation (the pooling) plus the two small dense layers.

    Args:
        groups: :math:`G`, must divide the number of channels (default 4).
        reduction: :math:`r \ge 1` (default 4).
        pool: ``"channel"`` (default) or ``"group"``.

    Raises:
        ValueError: if ``groups < 1``, ``reduction < 1``, ``pool`` is unknown, or at build time
            if ``groups`` does not divide the channels.

    Example:
        ```python
        excite = kw.GroupExcitation(groups=4)  # one excitation per channel group
        print(excite(tf.random.normal((2, 4, 4, 8))).shape)  # (2, 4)
        ```
    """

    POOLS = ("channel", "group")

    def __init__(self, groups=4, reduction=4, pool="channel", **kwargs):
        super().__init__(**kwargs)
        self.groups = check_int(groups, "groups", low=1, high=MAX_GROUPS)
        reduction = check_real(reduction, "reduction", low=1.0, high=MAX_GROUPS)
        self.reduction = int(reduction) if reduction.is_integer() else reduction
        self.pool = check_choice(pool, self.POOLS, "pool")

    def build(self, input_shape):
        channels = _check_channels_last("GroupExcitation", tf.TensorShape(input_shape))
        if channels % self.groups:
            raise ValueError(f"`groups` ({self.groups}) must divide the number of channels "
                             f"({channels}).")
        self.channels = channels
        dim = self.groups if self.pool == "group" else channels
        self.hidden = self._hidden(dim)
        self.w1 = self.add_weight("w1", shape=(dim, self.hidden),
                                  initializer="glorot_uniform")
        self.b1 = self.add_weight("b1", shape=(self.hidden,), initializer="zeros")
        self.w2 = self.add_weight("w2", shape=(self.hidden, self.groups),
                                  initializer="glorot_uniform")
        self.b2 = self.add_weight("b2", shape=(self.groups,), initializer="zeros")
        super().build(input_shape)

    def _hidden(self, dim):
        return max(1, int(math.ceil(dim / self.reduction)))

    def squeeze(self, inputs):
        axes = list(range(1, inputs.shape.rank - 1))
        z = tf.reduce_mean(inputs, axis=axes)  # (N, C)
        if self.pool == "group":
            z = tf.reduce_mean(tf.reshape(z, (-1, self.groups, self.channels // self.groups)),
                               axis=-1)
        return z

    def call(self, inputs):
        dtype = inputs.dtype
        z = self.squeeze(to_float32(inputs))  # float16/bfloat16: computed in float32
        w1, b1, w2, b2 = (tf.cast(to_float32(v), z.dtype)
                          for v in (self.w1, self.b1, self.w2, self.b2))
        hidden = tf.nn.relu(tf.matmul(z, w1) + b1)
        return saturate_cast(tf.sigmoid(tf.matmul(hidden, w2) + b2), dtype)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape([input_shape[0], self.groups])

    def flops(self, input_shape):
        """FLOPs per example: pooling, two dense layers (2 per multiply-add), ReLU, sigmoid."""
        channels = int(input_shape[-1])
        dim = self.groups if self.pool == "group" else channels
        hidden = self._hidden(dim)
        return (_spatial_size(input_shape) * channels + channels + 2 * dim * hidden + hidden
                + hidden + 2 * hidden * self.groups + self.groups + 4 * self.groups)

    def get_config(self):
        return {**super().get_config(), "groups": self.groups, "reduction": self.reduction,
                "pool": self.pool}


def approx_sign_with_zero_point(x, threshold):
    r""":math:`\operatorname{sign}(x - \tau)` (sign(0) = +1) with the ApproxSign gradient
    :math:`\partial b/\partial u = \max(0, 2 - 2|u|)`, :math:`u = x - \tau`, so
    :math:`\partial b/\partial x = -\partial b/\partial\tau`."""

    @tf.custom_gradient
    def _sign(u):
        def grad(dy):
            return dy * tf.maximum(2.0 - 2.0 * tf.abs(u), 0.0)

        return tf.where(u >= 0, tf.ones_like(u), -tf.ones_like(u)), grad

    return _sign(x - threshold)


@register
class ThresholdSign(keras.layers.Layer):
    r"""Binarization with a learnable, optionally input-dependent zero point [REC].

    .. math::

        \tau_{nc} = \tau_c + \delta_c \, e_{n, g(c)}, \qquad
        b_{nhwc} = \operatorname{sign}(x_{nhwc} - \tau_{nc}) \in \{-1, +1\}
        \quad(\operatorname{sign}(0) = +1)

    :math:`\tau_c` is a learnable static per-channel threshold (ReActNet's RSign), and
    :math:`\delta_c e_{n,g(c)}` its input-dependent part, driven by the group excitation
    :math:`e \in (0,1)^{N\times G}` of :class:`GroupExcitation` (channel :math:`c` belongs to
    group :math:`g(c) = \lfloor c\,G/C \rfloor`). Called on a single tensor
    (``input_dependent=False``) only :math:`\tau_c` is used, which is the RSign-like static variant.

    Backward (Bi-Real ApproxSign), with :math:`u = x - \tau_{nc}` and
    :math:`s(u) = \max(0, 2 - 2|u|)`:

    .. math::

        \frac{\partial L}{\partial x} = \frac{\partial L}{\partial b}\,s(u), \qquad
        \frac{\partial L}{\partial \tau_c} = -\sum_{n,h,w}\frac{\partial L}{\partial b}\,s(u),
        \qquad
        \frac{\partial L}{\partial \delta_c} = -\sum_{n,h,w}\frac{\partial L}{\partial b}\,
        s(u)\,e_{n,g(c)}

    and the excitation gets its gradient through :math:`\delta`. :math:`\tau` and
    :math:`\delta` start at 0 (a plain sign with ApproxSign gradient).

    Optional balance penalty (off by default): ``balance_penalty`` :math:`\lambda_b > 0` adds
    :math:`\lambda_b\sum_c \big(\mathrm{mean}_{n,h,w}\, b_{nhwc}\big)^2` to the model losses
    (0 when each channel has as many +1 as −1), differentiated through ApproxSign.

    Args:
        groups: number of groups :math:`G` of the excitation input; must divide the channels
            (default 1). Ignored when ``input_dependent=False``.
        input_dependent: expect ``[x, e]`` and use the input-dependent part (default True); with
            False the layer takes ``x`` alone.
        balance_penalty: :math:`\lambda_b \ge 0` (default 0).

    Raises:
        ValueError: for ``groups < 1``, a negative ``balance_penalty``, or at build time for
            ``groups`` not dividing the channels or a wrong excitation shape.

    Example:
        ```python
        binarize = kw.ThresholdSign(input_dependent=False)  # sign(x - tau_c), tau_c learnable per channel
        print(binarize(tf.random.normal((2, 4, 4, 8))).shape)
        ```
    """

    precision = 1

    def __init__(self, groups=1, input_dependent=True, balance_penalty=0.0, **kwargs):
        super().__init__(**kwargs)
        self.groups = check_int(groups, "groups", low=1, high=MAX_GROUPS)
        self.input_dependent = check_bool(input_dependent, "input_dependent")
        self.balance_penalty = check_non_negative(balance_penalty, "balance_penalty")

    def build(self, input_shape):
        if self.input_dependent:
            if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 2:
                raise ValueError("ThresholdSign(input_dependent=True) is called on [x, e] (e from "
                                 "GroupExcitation); use input_dependent=False for x alone.")
            x_shape, e_shape = (tf.TensorShape(s) for s in input_shape)
        else:
            x_shape, e_shape = tf.TensorShape(input_shape), None
        channels = _check_channels_last("ThresholdSign", x_shape)
        if self.input_dependent:
            if channels % self.groups:
                raise ValueError(f"`groups` ({self.groups}) must divide the number of channels "
                                 f"({channels}).")
            if e_shape.rank != 2 or e_shape[-1] != self.groups:
                raise ValueError(f"The excitation must have shape (batch, groups={self.groups}),"
                                 f" got {e_shape}.")
        self.channels = channels
        self.tau = self.add_weight("tau", shape=(channels,), initializer="zeros")
        if self.input_dependent:
            self.delta = self.add_weight("delta", shape=(channels,), initializer="zeros")
        super().build(input_shape)

    def threshold(self, inputs):
        r"""The zero point :math:`\tau_{nc}`, shape ``(N, 1, ..., 1, C)`` (or ``(C,)``)."""
        if not self.input_dependent:
            return self.tau
        x, e = inputs
        e = tf.repeat(tf.cast(e, x.dtype), self.channels // self.groups, axis=-1)  # (N, C)
        tau = tf.cast(self.tau, x.dtype) + tf.cast(self.delta, x.dtype) * e
        return tf.reshape(tau, [-1] + [1] * (x.shape.rank - 2) + [self.channels])

    def call(self, inputs):
        x = inputs[0] if self.input_dependent else inputs
        b = approx_sign_with_zero_point(x, self.threshold(inputs))
        if self.balance_penalty > 0:
            axes = list(range(b.shape.rank - 1))
            self.add_loss(self.balance_penalty
                          * tf.reduce_sum(tf.square(tf.reduce_mean(b, axis=axes))))
        return b

    def compute_output_shape(self, input_shape):
        return input_shape[0] if self.input_dependent else input_shape

    def flops(self, input_shape):
        """FLOPs per example: one subtraction per activation, plus the threshold per channel."""
        shape = input_shape[0] if self.input_dependent else input_shape
        channels = int(shape[-1])
        return _spatial_size(shape) * channels + (2 * channels if self.input_dependent else 0)

    def get_config(self):
        return {**super().get_config(), "groups": self.groups,
                "input_dependent": self.input_dependent, "balance_penalty": self.balance_penalty}


FDA_LAYERS = (FeatureDistributionAdjust, GroupExcitation, ThresholdSign)


def fda_unit(x, *, groups=4, reduction=4, epsilon=1e-5, pool="channel", balance_penalty=0.0,
             name=None, adjust=True, excite=True, zero_point=True):
    r"""The activation path of one FDA binary unit on Keras tensor ``x``:

    .. math::  b = \operatorname{sign}\big(\mathrm{FDA}(x) - \tau_c - \delta_c\,
               \mathrm{GE}(x)_{g(c)}\big)

    The parts can be switched off for ablations: ``adjust=False`` uses :math:`x` instead of
    :math:`\mathrm{FDA}(x)`; ``excite=False`` drops the input-dependent part
    (:math:`\delta_c\,\mathrm{GE}`, a static :math:`\tau_c` is left); ``zero_point=False``
    (with ``excite=False``) binarizes with Larq's ``ste_sign``, no threshold at all.

    Returns the binarized tensor (±1), to be fed to a binary convolution.
    """
    if name is not None:
        check_str(name, "name")
    adjust, excite = check_bool(adjust, "adjust"), check_bool(excite, "excite")
    zero_point = check_bool(zero_point, "zero_point")
    if excite and not zero_point:
        raise ValueError("`excite=True` needs `zero_point=True`: the excitation acts through the "
                         "threshold.")

    def layer_name(suffix):
        return f"{name}_{suffix}" if name else None

    adjusted = FeatureDistributionAdjust(epsilon=epsilon, name=layer_name("fda"))(x) \
        if adjust else x
    if not zero_point:
        return lq.quantizers.SteSign(name=layer_name("sign"))(adjusted)
    if not excite:
        return ThresholdSign(input_dependent=False, balance_penalty=balance_penalty,
                             name=layer_name("sign"))(adjusted)
    excitation = GroupExcitation(groups=groups, reduction=reduction, pool=pool,
                                 name=layer_name("ge"))(x)
    return ThresholdSign(groups=groups, input_dependent=True, balance_penalty=balance_penalty,
                         name=layer_name("sign"))([adjusted, excitation])


@validate_args(model=check_model)
def extra_flops(model):
    """Full-precision FLOPs per example added by the FDA layers of ``model``.

    Returns ``{"total": int, "per_layer": {layer name: int}}`` (FeatureDistributionAdjust,
    GroupExcitation and ThresholdSign layers; the threshold subtraction is counted too).
    """
    per_layer = {}
    for layer in model.layers:
        if isinstance(layer, FDA_LAYERS):
            shape = layer.input_shape
            if isinstance(layer, ThresholdSign) and layer.input_dependent:
                shape = [tf.TensorShape(s) for s in shape]
            else:
                shape = tf.TensorShape(shape)
            per_layer[layer.name] = int(layer.flops(shape))
    return {"total": int(sum(per_layer.values())), "per_layer": per_layer}


__all__ = ["FeatureDistributionAdjust", "GroupExcitation", "ThresholdSign", "fda_unit",
           "extra_flops", "approx_sign_with_zero_point", "safe_std", "FDA_LAYERS"]
