r"""Multi-level activations (HWGQ, DoReFa) feeding binary-weight layers, as bit-packed LCE ops.

LCE bit-packs a convolution only when its input is binary. A k-bit activation with levels
:math:`0 = l_0 < l_1 < \dots < l_{L-1}` (``HWGQ``: :math:`l_i = i\Delta_k`; ``DoReFa``:
:math:`l_i = i / (2^k - 1)`) is a sum of :math:`L - 1` binary planes (a thermometer code),

.. math::

    a = \sum_{i=1}^{L-1} d_i\, b_i, \qquad b_i = \mathbb 1[a > m_i], \quad
    d_i = l_i - l_{i-1}, \quad m_i = \tfrac12 (l_{i-1} + l_i),

and with :math:`u_i = \operatorname{sign}(m_i - a) = 1 - 2 b_i` (:math:`\pm 1`, never a tie:
:math:`a` is a level, :math:`m_i` a midpoint), a convolution with zero padding is

.. math::

    \operatorname{conv}_0(a, W) = \sum_i d_i \operatorname{conv}_0(b_i, W)
        = \tfrac12 \Big(\sum_i d_i\Big) S - \tfrac12 \sum_i d_i \operatorname{conv}_1(u_i, W),
    \qquad S_c = \sum_{h, w, k} W_{hwkc},

since a zero-padded :math:`b_i` is a one-padded :math:`u_i` and the all-ones map gives
:math:`S` at every output position. :math:`\operatorname{conv}_1(u_i, W)` is a binary
convolution with one-padding, which LCE packs exactly. The planes are stacked along the batch
axis, so one ``LceBconv2d`` with one packed filter computes all of them; the weighted sum over
planes and :math:`S` are float ops on the output. :func:`~keras_wreg.export.strip_for_inference`
uses :class:`MultiLevelBinaryConv2D` and :class:`MultiLevelBinaryDense` for every
``QuantConv2D`` / ``QuantDense`` with a binary kernel quantizer (:math:`\pm 1` or
:math:`\pm\alpha_c`) whose input is a multi-level activation: its own ``input_quantizer``, or a
quantizer layer before it with only level-preserving layers (max-pooling, flatten, reshape,
dropout, zero padding) in between.
"""

import numpy as np

from keras_wreg._compat import keras, lq, register, tf
from keras_wreg.export._dense_form import DenseAsConvBase
from keras_wreg.quantizers.hwgq import HWGQ, hwgq_levels

#: kernel quantizers whose values are +-1 or +-alpha per output channel (LCE packs them)
BINARY_KERNELS = ("SteSign", "ApproxSign", "SwishSign", "MagnitudeAwareSign", "ScaledSign")
#: layers whose outputs hold only values of their input (levels stay levels; zero is a level)
_LEVEL_PRESERVING = ("Flatten", "Reshape", "MaxPooling1D", "MaxPooling2D", "MaxPooling3D",
                     "GlobalMaxPooling1D", "GlobalMaxPooling2D", "Dropout", "SpatialDropout1D",
                     "SpatialDropout2D", "ZeroPadding2D", "Cropping2D")


def activation_levels(quantizer):
    """The levels ``(0, l_1, ..., l_{L-1})`` of a multi-level activation quantizer (an
    :class:`~keras_wreg.HWGQ`, or Larq's ``DoReFa`` in ``"activations"`` mode), else None."""
    if isinstance(quantizer, HWGQ):
        return (0.0, *(float(v) for v in hwgq_levels(quantizer.bits)))
    if type(quantizer).__name__ == "DoReFa" and getattr(quantizer, "mode", None) == "activations":
        top = 2 ** int(quantizer.precision) - 1
        return tuple(i / top for i in range(top + 1))
    return None


def check_levels(levels):
    """``levels`` as a tuple of floats: at least 2, finite, strictly increasing, first 0."""
    try:
        values = tuple(float(v) for v in levels)
    except (TypeError, ValueError):
        raise ValueError(f"`levels` must be a sequence of numbers, got {levels!r}.") from None
    if (len(values) < 2 or not np.all(np.isfinite(values)) or values[0] != 0.0
            or np.any(np.diff(values) <= 0)):
        raise ValueError("`levels` must hold at least 2 finite, strictly increasing values "
                         f"starting at 0, got {levels!r}.")
    return values


def _planes(inputs, levels):
    r"""The :math:`\pm 1`-to-be planes :math:`m_i - a`, stacked along the batch axis."""
    midpoints = [(lo + hi) / 2 for lo, hi in zip(levels[:-1], levels[1:])]
    return tf.concat([tf.cast(m, inputs.dtype) - inputs for m in midpoints], axis=0)


def _combine(z, levels, kernel_sum):
    r""":math:`\tfrac12 (\sum_i d_i) S - \tfrac12 \sum_i d_i z_i` from the stacked outputs."""
    steps = np.diff(levels)
    z = tf.reshape(z, tf.concat([[len(steps), -1], tf.shape(z)[1:]], axis=0))
    if np.allclose(steps, steps[0], rtol=0, atol=1e-7):  # uniform levels: one sum
        return (float(steps[0]) / 2) * (len(steps) * kernel_sum - tf.reduce_sum(z, axis=0))
    weights = tf.reshape(tf.constant(steps, z.dtype), (-1, *([1] * (z.shape.rank - 1))))
    return 0.5 * (float(steps.sum()) * kernel_sum - tf.reduce_sum(weights * z, axis=0))


class _MultiLevel:
    """Shared parts: the levels, an optional quantizer applied first and the kernel sum."""

    #: weights computed from the kernel (not copied from the trained layer)
    derived_weights = ("kernel_sum",)

    def _init_levels(self, levels, level_quantizer):
        self.levels = check_levels(levels)
        self.level_quantizer = (None if level_quantizer is None
                                else lq.quantizers.get(level_quantizer))

    def _add_kernel_sum(self, filters):
        self.kernel_sum = self.add_weight("kernel_sum", shape=(filters,), initializer="zeros",
                                          trainable=False)

    def set_derived_weights(self):
        """Compute :math:`S` from the current kernel (call after setting the kernel)."""
        kernel = tf.convert_to_tensor(self.kernel)
        self.kernel_sum.assign(tf.reduce_sum(kernel, axis=tuple(range(kernel.shape.rank - 1))))

    def _levels_of(self, inputs):
        return inputs if self.level_quantizer is None else self.level_quantizer(inputs)

    def _levels_config(self):
        return {"levels": list(self.levels),
                "level_quantizer": (None if self.level_quantizer is None
                                    else lq.quantizers.serialize(self.level_quantizer))}


@register
class MultiLevelBinaryConv2D(_MultiLevel, lq.layers.QuantConv2D):
    r"""Inference form of a binary-weight ``QuantConv2D`` fed by a multi-level activation:
    the same function as one bit-packed LCE convolution over the activation's binary planes.

    .. math::

        y = \operatorname{act}\Big(\tfrac12 \Big(\sum_i d_i\Big) S
            - \tfrac12 \sum_i d_i \operatorname{conv}_1(\operatorname{sign}(m_i - a), W)
            + b\Big)

    (see :mod:`keras_wreg.export.multilevel`), with :math:`a` the input (or
    ``level_quantizer(input)``), which must only take the values ``levels``. The convolution
    is a ``QuantConv2D`` with ``ste_sign`` input and ``pad_values=1``, so LCE converts it to
    one ``LceBconv2d``; the kernel is the trained layer's :math:`\pm 1` / :math:`\pm\alpha_c`.

    Args:
        filters, kernel_size, ...: as ``larq.layers.QuantConv2D`` (no kernel quantizer:
            the kernel holds the deployed values).
        levels: the activation's levels, ``0 = l_0 < l_1 < ...`` (at least 2).
        level_quantizer: a quantizer applied to the input first (the trained layer's
            multi-level ``input_quantizer``), or None when the input is already quantized.

    Raises:
        ValueError: for bad ``levels``.

    Example:
        ```python
        inputs = keras.Input((8, 8, 4))
        x = kw.HWGQ(2)(inputs)
        y = lq.layers.QuantConv2D(6, 3, padding="same", kernel_quantizer="ste_sign",
                                  kernel_constraint="weight_clip")(x)
        stripped = kw.export.strip_for_inference(keras.Model(inputs, y))
        print([type(layer).__name__ for layer in stripped.layers])  # ... MultiLevelBinaryConv2D
        ```
    """

    def __init__(self, *args, levels, level_quantizer=None, use_bias=True, activation=None,
                 **kwargs):
        self._init_levels(levels, level_quantizer)
        kwargs.update(input_quantizer="ste_sign", kernel_quantizer=None, pad_values=1.0)
        super().__init__(*args, use_bias=False, activation=None, **kwargs)
        self.output_bias = bool(use_bias)
        self.output_activation = keras.activations.get(activation)

    def build(self, input_shape):
        super().build(input_shape)
        self._add_kernel_sum(self.filters)
        self.bias = (self.add_weight("bias", shape=(self.filters,), initializer="zeros")
                     if self.output_bias else None)

    def call(self, inputs):
        z = super().call(_planes(self._levels_of(inputs), self.levels))
        y = _combine(z, self.levels, self.kernel_sum)
        if self.bias is not None:
            y = y + self.bias
        return self.output_activation(y)

    def get_config(self):
        config = super().get_config()
        for key in ("input_quantizer", "kernel_quantizer", "pad_values"):
            config.pop(key, None)
        config.update(use_bias=self.output_bias,
                      activation=keras.activations.serialize(self.output_activation),
                      **self._levels_config())
        return config


@register
class MultiLevelBinaryDense(_MultiLevel, DenseAsConvBase):
    r"""Inference form of a binary-weight ``QuantDense`` fed by a multi-level activation: the
    planes of :class:`MultiLevelBinaryConv2D` through one 1×1 binary convolution (LCE has no
    binary fully connected kernel), on a rank-2 input.

    .. math::

        y = \operatorname{act}\Big(\tfrac12 \Big(\sum_i d_i\Big) S
            - \tfrac12 \sum_i d_i \operatorname{sign}(m_i - a)\, W + b\Big)

    Args:
        units: output size.
        levels, level_quantizer: as :class:`MultiLevelBinaryConv2D`.
        use_bias: add a bias.
        activation: Keras activation of the output.

    Raises:
        ValueError: for bad ``units`` or ``levels``.

    Example:
        ```python
        inputs = keras.Input((16,))
        y = lq.layers.QuantDense(4, input_quantizer=kw.HWGQ(2), kernel_quantizer="ste_sign",
                                 kernel_constraint="weight_clip")(inputs)
        stripped = kw.export.strip_for_inference(keras.Model(inputs, y))
        print([type(layer).__name__ for layer in stripped.layers])  # ... MultiLevelBinaryDense
        ```
    """

    def __init__(self, units, levels, level_quantizer=None, use_bias=False, activation=None,
                 **kwargs):
        super().__init__(units, use_bias, activation, **kwargs)
        self._init_levels(levels, level_quantizer)
        self.sign = lq.quantizers.get("ste_sign")

    def build(self, input_shape):
        super().build(input_shape)
        self._add_kernel_sum(self.units)

    def call(self, inputs):
        a = tf.reshape(self._levels_of(inputs), (-1, 1, 1, inputs.shape[-1]))
        z = tf.nn.conv2d(self.sign(_planes(a, self.levels)), self.kernel, 1, "VALID")
        return self._output(tf.reshape(_combine(z, self.levels, self.kernel_sum),
                                       (-1, self.units)))

    def get_config(self):
        return {**super().get_config(), **self._levels_config()}


def _source(layer, producer):
    """The layer producing ``layer``'s input, through level-preserving layers, or None."""
    seen = 0
    while seen < 64:
        try:
            source = producer.get(id(layer.input))
        except (AttributeError, ValueError):  # several inbound nodes or inputs
            return None
        if source is None or type(source).__name__ not in _LEVEL_PRESERVING:
            return source
        layer, seen = source, seen + 1
    return None


def level_fed_layers(model):
    """``{id(layer): (levels, own)}`` for the binary-kernel ``QuantConv2D`` / ``QuantDense``
    layers of ``model`` whose input is a multi-level activation (``own``: it is the layer's
    ``input_quantizer``, else a quantizer layer before it)."""
    producer = {id(layer.output): layer for layer in model.layers
                if not isinstance(layer.output, (list, tuple))}
    found = {}
    for layer in model.layers:
        if (type(layer).__name__ not in ("QuantConv2D", "QuantDense")
                or type(getattr(layer, "kernel_quantizer", None)).__name__ not in BINARY_KERNELS):
            continue
        if type(layer).__name__ == "QuantConv2D" and (
                layer.data_format != "channels_last" or layer.pad_values != 0.0
                or layer.padding not in ("same", "valid") or layer.groups != 1):
            continue
        if type(layer).__name__ == "QuantDense" and len(layer.input_shape) != 2:
            continue
        own = activation_levels(layer.input_quantizer)
        if own is not None:
            found[id(layer)] = (own, True)
        elif layer.input_quantizer is None:
            levels = activation_levels(_source(layer, producer))
            if levels is not None:
                found[id(layer)] = (levels, False)
    return found


def multilevel_layer(layer, config, levels, own):
    """The :class:`MultiLevelBinaryConv2D` / :class:`MultiLevelBinaryDense` replacing ``layer``
    (``config``: its config without quantizers, regularizers and constraints)."""
    level_quantizer = lq.quantizers.serialize(layer.input_quantizer) if own else None
    if type(layer).__name__ == "QuantDense":
        return MultiLevelBinaryDense(layer.units, list(levels), level_quantizer,
                                     use_bias=layer.use_bias,
                                     activation=keras.activations.serialize(layer.activation),
                                     name=layer.name)
    config = {k: v for k, v in config.items()
              if k not in ("input_quantizer", "kernel_quantizer", "pad_values")}
    return MultiLevelBinaryConv2D.from_config({**config, "levels": list(levels),
                                               "level_quantizer": level_quantizer})


__all__ = ["MultiLevelBinaryConv2D", "MultiLevelBinaryDense", "activation_levels",
           "level_fed_layers", "check_levels", "BINARY_KERNELS"]
