r"""Deployment: a trained keras_wreg / Larq model as a TFLite flatbuffer, and parity checks.

:func:`to_tflite` first builds the **inference model** (:func:`strip_for_inference`): a clone
of the Keras model, rebuilt layer by layer from its config, in which

- every regularizer (``WReg``, ``TernaryReg``, ``ClusterReg`` with its centres, activity
  regularizers) and every constraint (``weight_clip``) is removed;
- every quantized kernel holds what the layer computes with, the kernel quantizer applied to
  the latent weight (:math:`\pm 1` for ``ste_sign``, :math:`\pm\alpha_c` for ``ScaledSign``,
  :math:`\{-\alpha, 0, \alpha\}` for ternary quantizers), and the kernel quantizer is dropped,
  so the latent weights and the quantizers' schedule variables (the ternary temperature) are
  not in the file; clustered kernels are exported as they are (the ``cluster`` recipe snaps
  them to their centres at the end of training; call :func:`~keras_wreg.snap_weights` first
  otherwise), so the flatbuffer computes what the Keras model computes;
- diagnostics that add losses are switched off (``ThresholdSign(balance_penalty=0)``);
- Larq layers left with no quantizer become their plain Keras layers.

The activation quantizers stay (they are the computation). Optimizer state
(``CosineMomentum``) and callbacks are not part of a model, so they are not exported.

Two targets:

``"lce"`` — Larq Compute Engine's converter (``larq_compute_engine.convert_keras_model``).
    **Bit-packed**: a convolution whose input is binarized by Larq's sign (``ste_sign``,
    ``approx_sign``, ``swish_sign``: the ``sign`` pattern LCE recognises, as
    ``input_quantizer`` or as a separate quantizer layer) and whose kernel holds
    :math:`\pm\alpha_c` per output channel becomes an ``LceBconv2d`` with a 1-bit packed kernel
    (32 weights per int32) and the scale folded into its output transform; the binarized
    activations are packed by ``LceQuantize``. A binary ``QuantDense`` (sign input, rank-2) is
    rewritten as the equivalent 1×1 binary convolution (:class:`BinaryDenseAsConv`), since LCE
    has no binary fully connected kernel, so it is bit-packed too. A binary convolution with
    zero "same" padding on a map smaller than its kernel (e.g. 3×3 on 2×2, which LCE 0.16
    computes wrongly) becomes :class:`OnePaddedBinaryConv2D`, still bit-packed and exact.
    A :class:`~keras_wreg.ThresholdSign` (the learnable, optionally input-dependent zero
    point of ``fda``) becomes :class:`PackableThresholdSign`: its shift stays a float
    subtraction and its sign is Larq's, so the convolution after it is bit-packed as well.
    This covers the ``larq``
    and ``wreg`` methods and ``fda`` (every variant). A binary-weight convolution or dense
    layer fed by a multi-level activation (``hwgq``'s HWGQ, Larq's DoReFa) becomes
    :class:`~keras_wreg.export.MultiLevelBinaryConv2D` / ``MultiLevelBinaryDense``: the
    activation's binary planes (a thermometer code) through one packed convolution, summed
    (see :mod:`keras_wreg.export.multilevel`).
    **Not bit-packed** (float32 TFLite ops, same results): full-precision layers (the first
    convolution sees the real-valued image, ResNet shortcuts, BN, PReLU), ternary kernels
    (``ternary``,
    ``ste_tern``: float convolutions with three values), the activation quantizers
    themselves, the shift of a
    ``ThresholdSign`` (a float subtraction before the packed sign) and clustered kernels
    (``cluster``:
    K distinct float32 values per layer; :func:`compression_report` counts the index-coded
    size they would need).

``"tflite"`` — TensorFlow's ``tf.lite.TFLiteConverter``: every op float32 (kernels hold the
    quantized values, stored as float32).

:func:`parity` runs the flatbuffer in LCE's interpreter
(``larq_compute_engine.tflite.python.interpreter.Interpreter``, which also runs plain TFLite
builtin ops) and compares it with the Keras model.
"""

import contextlib
import logging
import os
import re
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from keras_wreg._clone import clone, copy_layer_weights, rebuild, short_name
from keras_wreg._introspect import latent, plain_keras_layer
from keras_wreg._compat import keras, lq, register, tf
from keras_wreg._validation import check_bool, check_choice, check_int
from keras_wreg.export._dense_form import DenseAsConvBase
from keras_wreg.export.multilevel import (
    MultiLevelBinaryConv2D,
    MultiLevelBinaryDense,
    level_fed_layers,
    multilevel_layer,
)
from keras_wreg.layers.fda import ThresholdSign
from keras_wreg.regularizers.cluster import ClusterReg, clustered_weights
from keras_wreg._validation import check_model, labelled_data, validate_args

#: the conversion targets of :func:`to_tflite`
TARGETS = ("lce", "tflite")

# Larq quantizer attribute -> the weight attribute it quantizes
_QUANTIZED_WEIGHTS = {"kernel_quantizer": "kernel", "depthwise_quantizer": "depthwise_kernel",
                      "pointwise_quantizer": "pointwise_kernel"}


class ExportError(ValueError):
    """A model that cannot be exported; the message names the model (or file) and the problem.

    Example:
        ```python
        class Net(keras.Model):  # a subclassed model cannot be rebuilt from its config
            def call(self, x):
                return x

        try:
            kw.export.to_tflite(Net(), "net.tflite")
        except kw.export.ExportError as err:
            print(err)
        ```
    """


def _check_model(model, argname="model"):
    if not isinstance(model, keras.Model):
        raise TypeError(f"`{argname}` must be a tf.keras Model, got {type(model).__name__}.")
    if not getattr(model, "_is_graph_network", False) and not isinstance(model,
                                                                         keras.Sequential):
        raise ExportError(f"model {model.name!r}: only Sequential and functional models can be "
                          "exported (a subclassed model cannot be rebuilt from its config).")
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            raise ExportError(f"model {model.name!r}: nested model {layer.name!r} is not "
                              "supported; build the network as one functional model.")


def _has_cluster_reg(layer):
    return any(isinstance(getattr(layer, attr, None), ClusterReg)
               for attr in ("kernel_regularizer", "depthwise_regularizer",
                            "pointwise_regularizer", "bias_regularizer"))


@validate_args(model=check_model)
def quantized_layers(model):
    """Names of the layers of ``model`` that quantize something.

    A layer counts if it is a Larq quantizer layer (e.g. the separate ``ste_sign`` of the
    binary ResNet-18, :class:`~keras_wreg.HWGQ`), a Larq layer with an input or kernel
    quantizer, a :class:`~keras_wreg.ThresholdSign`, or a layer whose weights are clustered by a
    :class:`~keras_wreg.ClusterReg`.

    Args:
        model: a ``tf.keras.Model``.

    Returns:
        list[str]: the layer names, in model order.

    Raises:
        TypeError: if ``model`` is not a ``tf.keras.Model``.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a tf.keras Model, got {type(model).__name__}.")
    names = []
    for layer in model.layers:
        quantizers = [getattr(layer, attr, None)
                      for attr in ("input_quantizer", *_QUANTIZED_WEIGHTS)]
        if (isinstance(layer, (lq.quantizers.Quantizer, ThresholdSign))
                or any(q is not None for q in quantizers) or _has_cluster_reg(layer)):
            names.append(layer.name)
    return names


#: Larq activation quantizers that LCE's converter turns into ``LceQuantize`` (binary input)
_LCE_SIGNS = ("SteSign", "ApproxSign", "SwishSign")


@register
class PackableThresholdSign(ThresholdSign):
    r""":class:`~keras_wreg.ThresholdSign` as Larq Compute Engine can bit-pack it: the shift
    :math:`u = x - \tau_{nc}` (a float subtraction, per channel or per example and channel)
    followed by Larq's own sign, :math:`\operatorname{sign}(\operatorname{sign}(u) + 0.1)`,
    the op pattern LCE turns into ``LceQuantize`` so the next binary convolution becomes an
    ``LceBconv2d``. The same outputs as ``ThresholdSign`` for every finite input, ties
    included: both map :math:`u = 0` (:math:`x = \tau`) to +1. Inference only (no gradient
    needed); :func:`strip_for_inference` puts it where a ``ThresholdSign`` was, with its
    weights.

    Example:
        ```python
        sign = kw.export.PackableThresholdSign(input_dependent=False)
        x = tf.constant([[[[-1.0, 0.0, 2.0]]]])
        print(sign(x).numpy())  # [[[[-1.  1.  1.]]]] (tau = 0 at init)
        ```
    """

    def call(self, inputs):
        x = inputs[0] if self.input_dependent else inputs
        return lq.math.sign(x - self.threshold(inputs))


def _fake_quant(x, value_range):
    low, high = value_range
    return tf.quantization.fake_quant_with_min_max_args(x, low, high, num_bits=8)


def _fake_quant_kernel(kernel, per_channel=True):
    """Symmetric int8 (narrow range) of a kernel, as TFLite stores it: per output channel for
    a convolution, per tensor for a fully connected layer (the converter's int8
    ``FULLY_CONNECTED`` takes one scale)."""
    if not per_channel:
        bound = tf.maximum(tf.reduce_max(tf.abs(kernel)), 1e-8)
        return tf.quantization.fake_quant_with_min_max_vars(kernel, -bound, bound, num_bits=8,
                                                            narrow_range=True)
    bound = tf.reduce_max(tf.abs(kernel), axis=list(range(kernel.shape.rank - 1)))
    bound = tf.maximum(bound, 1e-8)
    return tf.quantization.fake_quant_with_min_max_vars_per_channel(
        kernel, -bound, bound, num_bits=8, narrow_range=True)


class _Int8Edge:
    """Shared part of :class:`Int8Conv2D` and :class:`Int8Dense`: the measured input and output
    ranges, and the config that carries them."""

    def _init_ranges(self, input_range, output_range):
        for name, value in (("input_range", input_range), ("output_range", output_range)):
            if (not isinstance(value, (list, tuple)) or len(value) != 2
                    or not all(np.isfinite(float(v)) for v in value)
                    or not float(value[0]) <= 0.0 <= float(value[1])
                    or float(value[0]) == float(value[1])):
                raise ValueError(f"`{name}` must be (low, high) with low <= 0 <= high, low < "
                                 f"high, got {value!r}.")
        self.input_range = tuple(float(v) for v in input_range)
        self.output_range = tuple(float(v) for v in output_range)

    def get_config(self):
        return {**super().get_config(), "input_range": list(self.input_range),
                "output_range": list(self.output_range)}


@register
class Int8Conv2D(_Int8Edge, keras.layers.Conv2D):
    r"""Inference form of a full-precision ``Conv2D`` that TFLite/LCE converts to an **int8**
    ``CONV_2D``: the input and the output go through 8-bit fake quantization with ranges
    measured on calibration images (``input_range``, ``output_range``), the kernel through
    symmetric per-output-channel 8-bit quantization. :func:`strip_for_inference` with
    ``int8=images`` puts it where the model's first convolution was (the one that sees the
    real-valued image, full precision in every binary network).

    Example:
        ```python
        conv = kw.export.Int8Conv2D(4, 3, input_range=(-1.0, 1.0), output_range=(-4.0, 4.0))
        print(conv(tf.random.uniform((1, 8, 8, 3), -1.0, 1.0)).shape)
        ```
    """

    def __init__(self, *args, input_range=(-1.0, 1.0), output_range=(-1.0, 1.0), **kwargs):
        super().__init__(*args, **kwargs)
        self._init_ranges(input_range, output_range)

    def call(self, inputs):
        y = self.convolution_op(_fake_quant(inputs, self.input_range),
                                _fake_quant_kernel(self.kernel))
        if self.use_bias:
            y = tf.nn.bias_add(y, self.bias)
        return _fake_quant(self.activation(y), self.output_range)


@register
class Int8Dense(_Int8Edge, keras.layers.Dense):
    r"""Inference form of a full-precision ``Dense`` converted to an **int8**
    ``FULLY_CONNECTED`` (as :class:`Int8Conv2D`, the kernel with one scale per tensor):
    :func:`strip_for_inference` with
    ``int8=images`` puts it where the classifier was.

    Example:
        ```python
        dense = kw.export.Int8Dense(10, input_range=(-2.0, 2.0), output_range=(-8.0, 8.0))
        print(dense(tf.random.normal((2, 16))).shape)
        ```
    """

    def __init__(self, *args, input_range=(-1.0, 1.0), output_range=(-1.0, 1.0), **kwargs):
        super().__init__(*args, **kwargs)
        self._init_ranges(input_range, output_range)

    def call(self, inputs):
        y = tf.matmul(_fake_quant(inputs, self.input_range),
                      _fake_quant_kernel(self.kernel, per_channel=False))
        if self.use_bias:
            y = tf.nn.bias_add(y, self.bias)
        return _fake_quant(self.activation(y), self.output_range)


#: which full-precision edges ``int8=`` makes int8: the first convolution, the classifier or both
INT8_EDGES = ("both", "first", "classifier")


def _int8_edges(model, which="both"):
    """The full-precision edge layers of an inference model: the ``Conv2D`` that reads the
    model's input and the last ``Dense`` (the classifier), if they are plain Keras layers
    (``which``: both, or only one of them)."""
    first = [layer for layer in model.layers if type(layer) is keras.layers.Conv2D
             and any(layer.input is t for t in model.inputs)]
    dense = [layer for layer in model.layers if type(layer) is keras.layers.Dense]
    return {"both": first[:1] + dense[-1:], "first": first[:1], "classifier": dense[-1:]}[which]


def _measured_range(values):
    low, high = float(np.min(values)), float(np.max(values))
    low, high = min(low, 0.0), max(high, 0.0)
    return (low, high) if high > low else (low - 1.0, high + 1.0)


def _with_int8_edges(stripped, images, which="both"):
    """``stripped`` with its edge layers (``which``) as :class:`Int8Conv2D` /
    :class:`Int8Dense`, their ranges measured on ``images`` (min/max of each edge's input and
    output)."""
    edges = _int8_edges(stripped, which)
    if not edges:
        wanted = {"both": "first convolution or classifier", "first": "first convolution",
                  "classifier": "classifier"}[which]
        raise ExportError(f"model {stripped.name!r}: no full-precision {wanted} to export as "
                          "int8.")
    probe = keras.Model(stripped.inputs, [t for layer in edges for t in (layer.input,
                                                                          layer.output)])
    values = probe.predict(np.asarray(images, np.float32), verbose=0, batch_size=64)
    ranges = {id(layer): (_measured_range(values[2 * i]), _measured_range(values[2 * i + 1]))
              for i, layer in enumerate(edges)}

    def int8_layer(layer):
        if id(layer) not in ranges:
            return layer.__class__.from_config(layer.get_config())
        cls = Int8Conv2D if isinstance(layer, keras.layers.Conv2D) else Int8Dense
        low_high_in, low_high_out = ranges[id(layer)]
        return cls.from_config({**layer.get_config(), "input_range": low_high_in,
                                "output_range": low_high_out})

    return clone(stripped, int8_layer)


@register
class BinaryDenseAsConv(DenseAsConvBase):
    r"""Inference form of a binary ``QuantDense``: a 1×1 binary convolution LCE can bit-pack.

    LCE has no binary fully connected kernel; a ``QuantDense`` with a sign input quantizer
    would stay a float32 ``FULLY_CONNECTED`` with :math:`\pm 1` weights. This layer computes
    the same :math:`y = \operatorname{act}(\operatorname{sign}(x) W + b)` as a reshape to
    ``(N, 1, 1, d)``, the sign, a 1×1 convolution and a reshape back, which LCE converts to an
    ``LceBconv2d`` with a 1-bit packed kernel. :func:`strip_for_inference` uses it for every
    ``QuantDense`` on a rank-2 input whose input quantizer is a Larq sign (``ste_sign``,
    ``approx_sign``, ``swish_sign``).

    Args:
        units: output size.
        input_quantizer: the Larq sign quantizer (name, config or instance).
        use_bias: add a bias.
        activation: Keras activation of the output.

    Example:
        ```python
        model = keras.Sequential([keras.Input((8,)), lq.layers.QuantDense(
            4, input_quantizer="ste_sign", kernel_quantizer="ste_sign", kernel_constraint="weight_clip")])
        stripped = kw.export.strip_for_inference(model)  # the QuantDense becomes a 1x1 binary conv
        print([type(layer).__name__ for layer in stripped.layers])
        ```
    """

    def __init__(self, units, input_quantizer, use_bias=False, activation=None, **kwargs):
        super().__init__(units, use_bias, activation, **kwargs)
        self.input_quantizer = lq.quantizers.get(input_quantizer)

    def call(self, inputs):
        x = self.input_quantizer(tf.reshape(inputs, (-1, 1, 1, inputs.shape[-1])))
        y = tf.nn.conv2d(x, self.kernel, 1, "VALID")
        return self._output(tf.reshape(y, (-1, self.units)))

    def get_config(self):
        return {**super().get_config(),
                "input_quantizer": lq.quantizers.serialize(self.input_quantizer)}


def _dense_as_conv(layer):
    """The :class:`BinaryDenseAsConv` replacing a binary ``QuantDense``, or None."""
    quantizer = getattr(layer, "input_quantizer", None)
    if (type(layer).__name__ != "QuantDense" or type(quantizer).__name__ not in _LCE_SIGNS
            or len(layer.input_shape) != 2):
        return None
    return BinaryDenseAsConv(layer.units, lq.quantizers.serialize(quantizer),
                             use_bias=layer.use_bias,
                             activation=keras.activations.serialize(layer.activation),
                             name=layer.name)


@register
class OnePaddedBinaryConv2D(lq.layers.QuantConv2D):
    r"""Inference form of a binary ``QuantConv2D`` with zero "same" padding on a feature map
    smaller than its kernel: the same function, computed with one-padding plus a constant.

    Larq pads a binary convolution's input with ``pad_values`` (0 by default) after the sign.
    LCE 0.16 converts zero padding to a one-padded binary convolution plus a correction, and
    that correction is wrong when the input is smaller than the (dilated) kernel along a
    spatial axis, e.g. a 3×3 convolution on a 2×2 or 1×1 map (measured: outputs off by up to
    the number of padded taps, top-1 agreement 9–37 % on 8×8 digits; exact at 3×3 and
    larger). This layer avoids that path: it is the ``QuantConv2D`` with ``pad_values=1``
    (which LCE bit-packs exactly) plus a constant correction :math:`C` per output position
    and channel,

    .. math::

        y_{pad=0}(x) = y_{pad=1}(x) - \sum_{(i, j, c)\,\in\,\text{padding}} k_{ijc}
                     = y_{pad=1}(x) + \operatorname{conv}_{same,0}(\mathbf 1, k)
                       - \sum_{i, j, c} k_{ijc},

    since a padded position contributes :math:`k \cdot 1` with one-padding and 0 with zero
    padding, whatever :math:`x` is. :math:`C` (the weight ``padding_correction``, shape
    ``(H_out, W_out, filters)``) is set by :meth:`set_derived_weights` from the kernel.
    ``activation`` is applied after the correction. :func:`strip_for_inference` uses this
    layer only where LCE needs it; the result stays bit-packed (an ``LceBconv2d``) followed
    by a float ``ADD`` on the flattened map (a constant ``ADD`` right after the convolution
    would be fused by LCE into its 1-D output bias, which a rank-3 :math:`C` breaks).

    Args:
        filters, kernel_size, ...: as ``larq.layers.QuantConv2D`` (``pad_values`` is 1).

    Example:
        ```python
        model = keras.Sequential([keras.Input((2, 2, 3)), lq.layers.QuantConv2D(
            4, 3, padding="same", input_quantizer="ste_sign", kernel_quantizer="ste_sign",
            kernel_constraint="weight_clip")])
        print([type(layer).__name__ for layer in kw.export.strip_for_inference(model).layers])
        ```
    """

    def __init__(self, *args, activation=None, **kwargs):
        kwargs["pad_values"] = 1.0
        super().__init__(*args, activation=None, **kwargs)
        self.output_activation = keras.activations.get(activation)

    def build(self, input_shape):
        super().build(input_shape)
        input_shape = tf.TensorShape(input_shape)
        if None in input_shape[1:]:
            raise ValueError(f"layer {self.name!r}: `input_shape` must have known spatial and "
                             f"channel sizes, got {input_shape}.")
        self._input_hwc = tuple(int(d) for d in input_shape[1:])
        out = self.compute_output_shape(input_shape)
        self.padding_correction = self.add_weight(
            "padding_correction", shape=tuple(int(d) for d in out[1:]), initializer="zeros",
            trainable=False)

    #: weights computed from the kernel (not copied from the trained layer)
    derived_weights = ("padding_correction",)

    def set_derived_weights(self):
        """Compute :math:`C` from the current kernel (call after setting the kernel)."""
        height, width, depth = self._input_hwc
        kernel = tf.convert_to_tensor(self.kernel)
        ones = tf.ones((1, height, width, depth), kernel.dtype)
        inside = tf.nn.conv2d(ones, kernel, self.strides, "SAME", dilations=self.dilation_rate)
        total = tf.reduce_sum(kernel, axis=(0, 1, 2))
        self.padding_correction.assign(inside[0] - total)

    def call(self, inputs):
        y = super().call(inputs)
        # added on the flattened map: LCE 0.16 would otherwise fuse a constant ADD straight
        # after the binary convolution into its per-channel output bias, which must be 1-D
        # (a rank-3 correction then fails at AllocateTensors)
        size = int(np.prod(y.shape[1:]))
        flat = tf.reshape(y, (-1, size)) + tf.reshape(self.padding_correction, (size,))
        return self.output_activation(tf.reshape(flat, (-1, *y.shape[1:])))

    def get_config(self):
        config = super().get_config()
        config.pop("pad_values", None)
        config["activation"] = keras.activations.serialize(self.output_activation)
        return config


def _sign_fed_layers(model):
    """Ids of the layers of ``model`` whose input is the output of a separate sign layer (a
    Larq sign quantizer layer or a ``ThresholdSign``, as in the binary ResNet-18): LCE packs
    their input as it packs an ``input_quantizer``'s."""
    producer = {id(layer.output): layer for layer in model.layers
                if not isinstance(layer.output, (list, tuple))}
    found = set()
    for layer in model.layers:
        try:
            source = producer.get(id(layer.input))
        except (AttributeError, ValueError):  # several inbound nodes or inputs
            continue
        if source is not None and (type(source).__name__ in _LCE_SIGNS
                                   or isinstance(source, ThresholdSign)):
            found.add(id(layer))
    return found


def _needs_one_padding(layer, sign_fed=False):
    """True for a binary ``QuantConv2D`` (Larq sign input: its ``input_quantizer``, or a
    separate sign layer when ``sign_fed``; zero "same" padding) whose input is smaller than its
    dilated kernel along a spatial axis (see :class:`OnePaddedBinaryConv2D`)."""
    if (type(layer).__name__ != "QuantConv2D"
            or (type(getattr(layer, "input_quantizer", None)).__name__ not in _LCE_SIGNS
                and not sign_fed)
            or layer.padding != "same" or layer.pad_values != 0.0
            or layer.data_format != "channels_last"):
        return False
    spatial = layer.input_shape[1:3]
    effective = [(k - 1) * d + 1 for k, d in zip(layer.kernel_size, layer.dilation_rate)]
    return any(s is not None and s < k for s, k in zip(spatial, effective))


def _inference_layer(layer, sign_fed=(), level_fed=None):
    """Clone function of :func:`strip_for_inference`: ``layer`` rebuilt from its config
    without regularizers, constraints, kernel quantizers and loss-adding diagnostics."""
    dense = _dense_as_conv(layer)
    if dense is not None:
        return dense
    config = layer.get_config()
    for key in list(config):
        if key.endswith("_regularizer") or key.endswith("_constraint"):
            config[key] = None
    for key in _QUANTIZED_WEIGHTS:
        if key in config:
            config[key] = None
    if level_fed and id(layer) in level_fed:  # multi-level input: binary planes, bit-packed
        return multilevel_layer(layer, config, *level_fed[id(layer)])
    if isinstance(layer, ThresholdSign):  # the shift, then Larq's sign: bit-packed by LCE
        config["balance_penalty"] = 0.0
        return PackableThresholdSign.from_config(config)
    if _needs_one_padding(layer, id(layer) in sign_fed):
        config.pop("pad_values", None)
        return OnePaddedBinaryConv2D.from_config(config)
    cls, config = plain_keras_layer(layer.__class__, config)
    return cls.from_config(config)


def _deployed_values(layer, skip):
    """``[(short weight name, value the layer computes with)]`` for the weights of ``layer``
    (without those owned by its quantizers and regularizers, e.g. the ternary temperature or
    ClusterReg centres), in ``layer.weights`` order."""
    owned = set(skip)
    for attr in ("input_quantizer", *_QUANTIZED_WEIGHTS):
        sub = getattr(layer, attr, None)
        if isinstance(sub, keras.layers.Layer):
            owned.update(id(v) for v in sub.weights)
    quantized = {}
    for quantizer_attr, weight_attr in _QUANTIZED_WEIGHTS.items():
        quantizer = getattr(layer, quantizer_attr, None)
        weight = getattr(layer, weight_attr, None)
        if quantizer is not None and weight is not None:
            full = latent(weight)
            value = np.asarray(quantizer(tf.convert_to_tensor(full)))
            # a fresh Larq layer lists the latent variable in `weights`, a loaded one the
            # QuantizedVariable wrapping it
            quantized[id(full)] = quantized[id(weight)] = value
    return [(short_name(v.name), quantized[id(v)] if id(v) in quantized else v.numpy())
            for v in layer.weights if id(v) not in owned]


def _copy_weights(model, old, new, skip):
    """Give ``new`` (the inference clone of ``old``) the values ``old`` computes with."""
    derived = getattr(new, "derived_weights", ())
    computed = {id(v) for v in new.weights if short_name(v.name) in derived}
    try:
        # reshape: a QuantDense kernel (d, u) becomes the (1, 1, d, u) of BinaryDenseAsConv
        copy_layer_weights(old, new, values=_deployed_values(old, skip), target_skip=computed,
                           reshape=True)
    except ValueError as error:
        raise ExportError(f"model {model.name!r}: {error}") from None
    if derived:
        new.set_derived_weights()


#: layers a binary accumulator (an integer) or a sign passes through unchanged in kind
_PASS_THROUGH = ("MaxPooling2D", "MaxPooling1D", "Flatten", "Reshape")


def _is_sign_input(layer, sign_fed):
    return (type(getattr(layer, "input_quantizer", None)).__name__ in _LCE_SIGNS
            or id(layer) in sign_fed)


def _integer_accumulator(layer, sign_fed):
    r"""True when ``layer`` (of the stripped model) outputs integers: sign inputs times a kernel
    holding only :math:`\pm 1` (zero or one padding), and no bias."""
    kernel = getattr(layer, "kernel", None)
    if kernel is None or not _is_sign_input(layer, sign_fed) or getattr(layer, "use_bias", False):
        return False
    values = np.asarray(kernel)
    return bool(np.all(np.abs(values) == 1.0))


def _break_sign_ties(model):
    r"""Make the bit-packed form of ``model`` (a stripped copy) binarize exactly as Keras does.

    A BatchNormalization between a binary convolution (integer accumulators :math:`a`) and
    signs only computes :math:`y = s_c a + o_c`; Larq's sign gives +1 at :math:`y = 0`, LCE's
    bit-packed output compares the accumulator strictly with an integer threshold and gives
    -1 there. Such ties are exact whenever :math:`-o_c / s_c` is an integer, e.g. for every
    channel of a BatchNormalization at its initial state. For each tied channel the moving
    mean is moved so that the sign boundary lies half-way between the two integers where Keras'
    sign changes: the signs of every possible accumulator, hence the model's outputs, are
    unchanged, and no accumulator sits on LCE's threshold any more. Returns the number of
    channels changed."""
    layers = model.layers
    producer = {id(layer.output): layer for layer in layers
                if not isinstance(layer.output, (list, tuple))}
    consumers = {}
    for layer in layers:
        try:
            inputs = layer.input
        except (AttributeError, ValueError):
            continue
        for tensor in inputs if isinstance(inputs, (list, tuple)) else [inputs]:
            consumers.setdefault(id(tensor), []).append((layer, isinstance(inputs, (list, tuple))))
    sign_fed = _sign_fed_layers(model)

    def only_signs(tensor):
        users = consumers.get(id(tensor), [])
        if not users or id(tensor) in {id(t) for t in model.outputs}:
            return False
        for layer, several in users:
            if several:
                return False
            if type(layer).__name__ in _LCE_SIGNS:
                continue
            if type(layer).__name__ in _PASS_THROUGH:
                if not only_signs(layer.output):
                    return False
                continue
            if not _is_sign_input(layer, ()):
                return False
        return True

    def integer_source(layer):
        try:
            source = producer.get(id(layer.input))
        except (AttributeError, ValueError):
            return False
        while source is not None and type(source).__name__ in ("MaxPooling2D", "MaxPooling1D"):
            source = producer.get(id(source.input))
        return source is not None and _integer_accumulator(source, sign_fed)

    changed = 0
    for bn in layers:
        if (not isinstance(bn, keras.layers.BatchNormalization) or getattr(bn, "renorm", False)
                or bn.axis not in ([len(bn.input_shape) - 1], [-1])
                or not integer_source(bn) or not only_signs(bn.output)):
            continue
        mean = bn.moving_mean.numpy().astype(np.float64)
        var = bn.moving_variance.numpy().astype(np.float64)
        gamma = bn.gamma.numpy().astype(np.float64) if bn.scale else np.ones_like(mean)
        beta = bn.beta.numpy().astype(np.float64) if bn.center else np.zeros_like(mean)
        scale = gamma / np.sqrt(var + bn.epsilon)
        offset = beta - mean * scale
        with np.errstate(divide="ignore", invalid="ignore"):
            k = np.round(-offset / scale)
        tied = np.isfinite(k) & (scale != 0) & (np.abs(k * scale + offset)
                                                 <= 1e-6 * np.maximum(np.abs(offset), np.abs(scale)))
        if not tied.any():
            continue
        # Keras' own signs at the accumulators k - 1, k, k + 1 of each channel
        probe = np.stack([k - 1, k, k + 1]).astype(np.float32)  # (3, channels)
        shape = (3,) + (1,) * (len(bn.input_shape) - 2) + (probe.shape[1],)
        signs = np.asarray(bn(tf.constant(probe.reshape(shape)), training=False)).reshape(3, -1) >= 0
        boundary = np.where(signs[0] != signs[1], k - 0.5, k + 0.5)
        new_mean = np.where(tied, (beta + boundary * scale) / np.where(scale == 0, 1, scale), mean)
        bn.moving_mean.assign(new_mean.astype(bn.moving_mean.dtype.as_numpy_dtype))
        changed += int(tied.sum())
    return changed


@validate_args(model=check_model)
def strip_for_inference(model, int8=None, int8_edges="both"):
    r"""A Keras copy of ``model`` with only what inference needs (the model to convert).

    Every layer is rebuilt from its config (``tf.keras.models.clone_model`` with a clone
    function) with regularizers and constraints removed, kernel quantizers removed and the
    kernels set to the quantized values the original layer computes with (:math:`\pm 1`,
    :math:`\pm\alpha_c`, ternary levels), ``ClusterReg`` and its centres dropped (as
    :func:`~keras_wreg.strip_clustering` with ``snap=False``) and ``ThresholdSign``'s balance
    penalty off. Activation quantizers are kept. A BatchNormalization between a binary
    convolution and signs only whose sign boundary falls exactly on an accumulator (every
    channel at the initial state) has that boundary moved half-way to the next one, the same
    signs for every input, so LCE's strict threshold binarizes as Larq's sign does (+1 at 0).
    ``model`` itself is not changed. The copy computes the same function as ``model`` in
    inference mode.

    Args:
        model: a Sequential or functional ``tf.keras.Model`` (Larq, keras_wreg or Keras layers).
        int8: None, or calibration images (an array of model inputs): then the first
            convolution (the one reading the image) and the classifier become
            :class:`Int8Conv2D` / :class:`Int8Dense`, int8 after conversion.
        int8_edges: which of them ``int8`` changes: ``"both"`` (default), ``"first"`` or
            ``"classifier"``. Post-training int8 of the first convolution moves values across
            the next signs and changes predictions; an int8 classifier alone stays closest to
            the float-edged model (check :func:`parity`).

    Returns:
        A new, uncompiled ``tf.keras.Model``.

    Raises:
        TypeError: if ``model`` is not a ``tf.keras.Model``.
        ExportError: for a subclassed or nested model, or a weight of the copy that has no
            value in ``model``.
    """
    _check_model(model)
    check_choice(int8_edges, INT8_EDGES, "int8_edges")
    skip = {id(v) for _, _, reg in clustered_weights(model) for v in reg.weights}
    larq_log = logging.getLogger("larq.layers_base")
    level = larq_log.level
    larq_log.setLevel(logging.ERROR)  # "binary kernel without constraint": deliberate here
    try:
        sign_fed, level_fed = _sign_fed_layers(model), level_fed_layers(model)
        stripped = rebuild(model, lambda layer: _inference_layer(layer, sign_fed, level_fed))
    finally:
        larq_log.setLevel(level)
    for old, new in zip(model.layers, stripped.layers):
        if new.weights:
            _copy_weights(model, old, new, skip)
    _break_sign_ties(stripped)
    if int8 is not None:
        stripped = _with_int8_edges(stripped, _calibration_images(model, int8), int8_edges)
    return stripped


def _calibration_images(model, images):
    images = np.asarray(images)
    if images.dtype.kind not in "fiu" or images.ndim < 2 or len(images) < 1 \
            or tuple(images.shape[1:]) != tuple(model.input_shape[1:]):
        raise ValueError(f"`int8` must be calibration images of shape (n, "
                         f"{', '.join(str(d) for d in model.input_shape[1:])}), got "
                         f"{getattr(images, 'shape', images)!r}.")
    if not np.all(np.isfinite(images.astype(np.float64))):
        raise ValueError("`int8` calibration images must be finite.")
    return images


def _culprit(model, text):
    """The layer of ``model`` whose name occurs in ``text`` (the longest such name), or None."""
    found = [layer for layer in model.layers if layer.name and layer.name in text]
    return max(found, key=lambda layer: len(layer.name)) if found else None


def _conversion_error(model, target, text):
    errors = re.findall(r"error: ([^\n]+)", text)
    reason = errors[0].strip() if errors else (text.strip().splitlines() or ["unknown error"])[-1]
    layer = _culprit(model, text)
    if layer is not None:
        return (f"model {model.name!r}: unsupported layer {layer.name!r} "
                f"({type(layer).__name__}) for target {target!r}: {reason[:300]}")
    return f"model {model.name!r}: conversion to {target!r} failed: {reason[:300]}"


@contextlib.contextmanager
def _captured_stderr():
    """Send what the converters' C++ code prints on file descriptor 2 to a temporary file
    (yielded as a list that receives the text at exit), so a failed conversion gives one
    clear message instead of pages of MLIR diagnostics."""
    captured = []
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no real stderr (e.g. some embedded interpreters): nothing to capture
        yield captured
        return
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read().decode(errors="replace"))


#: custom ops that LCE's interpreter provides
LCE_OPS = ("LceQuantize", "LceDequantize", "LceBconv2d", "LceBMaxPool2d")


def _foreign_ops(flatbuffer):
    """``[(op name, output tensor names)]`` for custom ops no interpreter here provides."""
    from tensorflow.lite.python import schema_py_generated as schema

    tree = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(flatbuffer, 0))
    out = []
    for graph in tree.subgraphs:
        for op in graph.operators:
            custom = tree.operatorCodes[op.opcodeIndex].customCode
            if custom and custom.decode() not in LCE_OPS:
                names = " ".join(graph.tensors[i].name.decode() for i in op.outputs)
                out.append((custom.decode(), names))
    return out


@validate_args(model=check_model)
def tflite_bytes(model, target="lce", *, strip=True, require_quantized=True, int8=None,
                 int8_edges="both"):
    """Convert ``model`` to a TFLite flatbuffer and return it as bytes.

    Args:
        model: a Sequential or functional ``tf.keras.Model``.
        target: ``"lce"`` (Larq Compute Engine, binary convolutions bit-packed) or
            ``"tflite"`` (TensorFlow's converter, float32 ops).
        strip: convert :func:`strip_for_inference` of ``model`` (default) instead of
            ``model`` itself.
        require_quantized: raise if ``model`` has no quantized layer (see
            :func:`quantized_layers`); pass False to convert a full-precision model.
        int8: calibration images (an array of model inputs): the full-precision first
            convolution and classifier become int8 ops (:class:`Int8Conv2D`,
            :class:`Int8Dense`, ranges measured on these images) next to the bit-packed
            binary ones. None (default): they stay float32.
        int8_edges: ``"both"``, ``"first"`` or ``"classifier"``: which edges ``int8`` makes
            int8 (see :func:`strip_for_inference`).

    Returns:
        bytes: the flatbuffer.

    Raises:
        ValueError: for an unknown ``target``.
        TypeError: if ``model`` is not a ``tf.keras.Model``.
        ExportError: for a model with no quantized layer (when ``require_quantized``), a
            subclassed or nested model, or a layer the converter cannot handle (named).
    """
    check_choice(target, TARGETS, "target")
    check_choice(int8_edges, INT8_EDGES, "int8_edges")
    check_bool(strip, "strip")
    check_bool(require_quantized, "require_quantized")
    _check_model(model)
    if require_quantized and not quantized_layers(model):
        raise ExportError(f"model {model.name!r} has no quantized layer (no Larq quantizer, "
                          "ThresholdSign or ClusterReg); nothing to deploy as a quantized model.")
    if int8 is not None and not strip:
        raise ValueError("`int8` needs `strip=True` (the int8 layers are made while stripping).")
    inference = (strip_for_inference(model, int8=int8, int8_edges=int8_edges) if strip
                 else model)
    with _captured_stderr() as log:
        try:
            if target == "lce":
                import larq_compute_engine as lce

                with warnings.catch_warnings():  # LCE warns when it falls back to a graphdef
                    warnings.simplefilter("ignore")
                    flatbuffer = bytes(lce.convert_keras_model(inference))
            else:
                flatbuffer = bytes(tf.lite.TFLiteConverter.from_keras_model(inference).convert())
            failure = None
        except Exception as exc:  # the converters raise many types (ConverterError, ...)
            failure = exc
    if failure is not None:
        text = f"{failure}\n{''.join(log)}"
        raise ExportError(_conversion_error(model, target, text)) from failure
    foreign = _foreign_ops(flatbuffer)
    if foreign:
        op, tensors = foreign[0]
        layer = _culprit(inference, tensors)
        where = (f"unsupported layer {layer.name!r} ({type(layer).__name__})" if layer
                 else "unsupported op")
        raise ExportError(f"model {model.name!r}: {where} for target {target!r}: it needs the "
                          f"custom op {op!r}, which no TFLite/LCE interpreter provides.")
    return flatbuffer


@validate_args(model=check_model)
def to_tflite(model, path, target="lce", *, require_quantized=True, int8=None,
              int8_edges="both"):
    """Strip ``model`` of its training-only state, convert it and write the flatbuffer.

    See the module docstring for what is bit-packed with ``target="lce"``.

    Args:
        model: a Sequential or functional ``tf.keras.Model``.
        path: output file, must end with ``.tflite`` (parent folders are created).
        target: ``"lce"`` or ``"tflite"``.
        require_quantized: raise :class:`ExportError` for a model with no quantized layer.
        int8: calibration images: the first convolution and the classifier as int8 ops
            (see :func:`tflite_bytes`).
        int8_edges: ``"both"``, ``"first"`` or ``"classifier"`` (see
            :func:`strip_for_inference`).

    Returns:
        pathlib.Path: ``path``.

    Raises:
        ValueError: for a ``path`` not ending with ``.tflite`` or an unknown ``target``.
        TypeError: if ``model`` is not a ``tf.keras.Model``.
        ExportError: see :func:`tflite_bytes`.
    """
    path = Path(path)
    if path.suffix != ".tflite":
        raise ValueError(f"`path` must end with .tflite, got {str(path)!r}.")
    flatbuffer = tflite_bytes(model, target, require_quantized=require_quantized, int8=int8,
                              int8_edges=int8_edges)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(flatbuffer)
    return path


def _read_flatbuffer(flatbuffer, argname="flatbuffer"):
    if isinstance(flatbuffer, (bytes, bytearray)):
        return bytes(flatbuffer)
    if isinstance(flatbuffer, (str, Path)):
        path = Path(flatbuffer)
        if not path.is_file():
            raise ValueError(f"`{argname}`: no such file {str(path)!r}.")
        data = path.read_bytes()
        if data[4:8] != b"TFL3":
            raise ValueError(f"`{argname}`: {str(path)!r} is not a TFLite flatbuffer.")
        return data
    raise TypeError(f"`{argname}` must be bytes or a path to a .tflite file, "
                    f"got {type(flatbuffer).__name__}.")


def load_interpreter(flatbuffer, num_threads=1, use_indirect_bgemm=False, use_xnnpack=False):
    """LCE's interpreter for a flatbuffer (bytes or a ``.tflite`` path).

    LCE's interpreter runs both LCE's ops and TFLite's builtin ops, so it runs the ``"lce"``
    and the ``"tflite"`` targets. On x86-64 its binary kernels are the reference ones (LCE is
    optimized for ARMv8 only), so timings here are not device timings.

    Args:
        flatbuffer: bytes, or the path of a ``.tflite`` file.
        num_threads: threads of the interpreter (>= 1).
        use_indirect_bgemm: use LCE's indirect BGEMM binary convolution kernel.
        use_xnnpack: run float ops through TFLite's XNNPACK delegate.

    Returns:
        ``larq_compute_engine.tflite.python.interpreter.Interpreter``.

    Raises:
        ValueError: for ``num_threads < 1`` or a path that is not a TFLite file.
        TypeError: for a ``flatbuffer`` that is neither bytes nor a path.
    """
    check_int(num_threads, "num_threads", low=1, high=1024)
    check_bool(use_indirect_bgemm, "use_indirect_bgemm")
    check_bool(use_xnnpack, "use_xnnpack")
    from larq_compute_engine.tflite.python.interpreter import Interpreter

    return Interpreter(_read_flatbuffer(flatbuffer), num_threads=num_threads,
                       use_indirect_bgemm=bool(use_indirect_bgemm),
                       use_xnnpack=bool(use_xnnpack))


def tflite_predict(interpreter, images):
    """Outputs of a flatbuffer (or an interpreter from :func:`load_interpreter`) on ``images``.

    Args:
        interpreter: an LCE ``Interpreter``, flatbuffer bytes or a ``.tflite`` path.
        images: array ``(N, H, W, C)``; run one image at a time (the converted models have
            batch size 1).

    Returns:
        np.ndarray ``(N, ...)`` of float32 outputs.

    Raises:
        ValueError: if ``images`` does not match the model's input shape.
    """
    if not hasattr(interpreter, "predict"):
        interpreter = load_interpreter(interpreter)
    images = np.asarray(images, dtype=np.float32)
    expected = tuple(interpreter.input_shapes[0][1:])
    if images.ndim != len(expected) + 1 or tuple(images.shape[1:]) != expected:
        raise ValueError(f"`images` must have shape (N, {', '.join(map(str, expected))}), "
                         f"got {images.shape}.")
    return np.asarray(interpreter.predict(images))


@validate_args(model=check_model)
def parity(model, flatbuffer, images):
    """Keras ``model`` vs its converted flatbuffer (run in LCE's interpreter) on ``images``.

    Args:
        model: the Keras model (the original, with its training-time objects).
        flatbuffer: bytes, a ``.tflite`` path, or an interpreter from :func:`load_interpreter`.
        images: array ``(N, H, W, C)``, N >= 1.

    Returns:
        dict: ``n``; ``agreement``, the fraction of images with the same top-1 class;
        ``max_abs_diff``, the largest :math:`|y_{keras} - y_{tflite}|` over all outputs
        (the model's outputs: class probabilities for models ending in softmax);
        ``mismatches``, indices of the images whose top-1 classes differ.

    Raises:
        ValueError: for an empty ``images`` or a shape that does not match the model.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim < 2 or len(images) == 0:
        raise ValueError(f"`images` must be a non-empty batch (N, ...), got shape {images.shape}.")
    ours = tflite_predict(flatbuffer, images)
    reference = np.asarray(model.predict(images, batch_size=256, verbose=0))
    if reference.shape != ours.shape:
        raise ValueError(f"Keras outputs {reference.shape} and TFLite outputs {ours.shape} "
                         "differ in shape.")
    same = reference.argmax(-1) == ours.argmax(-1)
    return {"n": int(len(images)), "agreement": float(same.mean()),
            "max_abs_diff": float(np.max(np.abs(reference - ours))),
            "mismatches": [int(i) for i in np.flatnonzero(~same)]}


@validate_args(dataset=labelled_data)
def evaluate_tflite(flatbuffer, dataset):
    """Top-1 accuracy of a flatbuffer (run in LCE's interpreter) on labelled data.

    Args:
        flatbuffer: bytes, a ``.tflite`` path, or an interpreter from :func:`load_interpreter`.
        dataset: a ``tf.data.Dataset`` of ``(images, labels)`` batches, or a tuple
            ``(images, labels)`` of arrays.

    Returns:
        dict: ``accuracy`` and ``n``.

    Raises:
        ValueError: for empty data or images that do not match the model's input.
    """
    interpreter = flatbuffer if hasattr(flatbuffer, "predict") else load_interpreter(flatbuffer)
    batches = [dataset] if isinstance(dataset, tuple) else dataset
    correct = total = 0
    for x, y in batches:
        outputs = tflite_predict(interpreter, np.asarray(x))
        correct += int(np.sum(outputs.argmax(-1) == np.asarray(y).reshape(-1)))
        total += len(outputs)
    if total == 0:
        raise ValueError("`dataset` holds no examples.")
    return {"accuracy": correct / total, "n": total}


def _op_names():
    from tensorflow.lite.python import schema_py_generated as schema

    return {code: name for name, code in vars(schema.BuiltinOperator).items()
            if not name.startswith("_")}


def flatbuffer_report(flatbuffer):
    """What a flatbuffer holds: op counts and how its constant bytes split.

    Args:
        flatbuffer: bytes or the path of a ``.tflite`` file.

    Returns:
        dict: ``bytes`` (file size); ``ops`` (``{op name: count}``, LCE custom ops by their
        name, e.g. ``LceBconv2d``); ``binary_convolutions``, one entry per ``LceBconv2d``
        (``filter_shape``, ``filter_type`` — ``INT32`` when the 1-bit weights are packed 32 per
        word — and ``filter_bytes``); ``int8_ops`` (``{op name: count}`` of the convolutions
        and fully connected ops computing in int8, e.g. from ``int8=`` at export);
        ``packed_bytes`` (the bytes of those filters) and ``constant_bytes`` (all constant
        buffers).
    """
    from tensorflow.lite.python import schema_py_generated as schema

    data = _read_flatbuffer(flatbuffer)
    tree = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    names = _op_names()
    types = {code: name for name, code in vars(schema.TensorType).items()
             if not name.startswith("_")}

    def op_name(code):
        custom = code.customCode
        if custom:
            return custom.decode() if isinstance(custom, bytes) else str(custom)
        return names.get(max(code.builtinCode, code.deprecatedBuiltinCode), str(code.builtinCode))

    def buffer_size(index):
        buffer = tree.buffers[index]
        return 0 if buffer.data is None else len(buffer.data)

    ops, binary, int8 = {}, [], {}
    constant_bytes = sum(buffer_size(i) for i in range(len(tree.buffers)))
    for graph in tree.subgraphs:
        for op in graph.operators:
            name = op_name(tree.operatorCodes[op.opcodeIndex])
            ops[name] = ops.get(name, 0) + 1
            if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") and \
                    types.get(graph.tensors[op.inputs[0]].type) == "INT8":
                int8[name] = int8.get(name, 0) + 1
            if name == "LceBconv2d":
                tensor = graph.tensors[op.inputs[1]]
                binary.append({"filter_shape": [int(s) for s in tensor.shape],
                               "filter_type": types.get(tensor.type, str(tensor.type)),
                               "filter_bytes": buffer_size(tensor.buffer)})
    return {"bytes": len(data), "ops": ops, "binary_convolutions": binary, "int8_ops": int8,
            "packed_bytes": sum(b["filter_bytes"] for b in binary),
            "constant_bytes": constant_bytes}


@validate_args(model=check_model)
def float32_size(model):
    """Bytes of ``model``'s inference weights stored as float32 (4 bytes per parameter of
    :func:`strip_for_inference`, i.e. without regularizer centres or schedule variables, and
    without the constants :class:`OnePaddedBinaryConv2D` and the multi-level layers derive
    from a kernel)."""
    stripped = strip_for_inference(model)
    derived = sum(int(np.prod(v.shape)) for layer in stripped.layers for v in layer.weights
                  if short_name(v.name) in getattr(layer, "derived_weights", ()))
    return 4 * (int(stripped.count_params()) - derived)


@validate_args(model=check_model)
def deploy_report(model, path, images=None):
    """Size, bit-packing and Keras-vs-flatbuffer parity of the flatbuffer at ``path`` exported
    from ``model``: ``{"path", "bytes", "float32_bytes", "ratio", "binary_convolutions",
    "packed_bytes", "parity"}`` (``parity`` None without ``images``)."""
    path = Path(path)
    report = {"path": str(path), "bytes": path.stat().st_size, "float32_bytes": float32_size(model)}
    report["ratio"] = report["float32_bytes"] / report["bytes"]
    flat = flatbuffer_report(path)
    report["binary_convolutions"] = len(flat["binary_convolutions"])
    report["packed_bytes"] = flat["packed_bytes"]
    report["parity"] = None
    if images is not None and len(images):
        agreement = parity(model, path, images)
        agreement.pop("mismatches")
        report["parity"] = agreement
    return report


def format_deploy_report(report, target, source):
    """The lines a person reads about a :func:`deploy_report` (``source``: where the parity
    images came from)."""
    kib = 1024.0
    lines = [
        f"wrote {report['path']} (target {target}): {report['bytes'] / kib:.1f} KiB; "
        f"float32 model {report['float32_bytes'] / kib:.1f} KiB: "
        f"{report['ratio']:.1f}x smaller",
        f"bit-packed: {report['binary_convolutions']} binary convolutions "
        f"(LceBconv2d), {report['packed_bytes'] / kib:.1f} KiB of 1-bit weights",
    ]
    agreement = report.get("parity")
    if agreement:
        lines.append(f"parity Keras vs TFLite on {agreement['n']} test images ({source}): top-1 "
                     f"agreement {100 * agreement['agreement']:.2f} %, max |output difference| "
                     f"{agreement['max_abs_diff']:.3g}")
    return lines


__all__ = ["MultiLevelBinaryConv2D", "MultiLevelBinaryDense", "Int8Conv2D", "Int8Dense", "INT8_EDGES", "PackableThresholdSign", "deploy_report", "format_deploy_report", "TARGETS", "LCE_OPS", "ExportError", "BinaryDenseAsConv", "OnePaddedBinaryConv2D", "quantized_layers", "strip_for_inference", "tflite_bytes",
           "to_tflite", "load_interpreter", "tflite_predict", "parity", "evaluate_tflite",
           "flatbuffer_report", "float32_size"]
