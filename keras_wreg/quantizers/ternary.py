r"""Ternary weights with a re-scaled temperature-sigmoid gradient (seed 003).

Dan Liu, Xue Liu, *Hyperspherical Loss-Aware Ternary Quantization*, arXiv:2212.12649 (2022).
Only the abstract is public: the backward factor below is the reconstruction of ``docs/methods.md``.

The ternary grid itself (the TWN projection: threshold, pattern, scale) lives in
``keras_wreg._grid``, below both this module and the regularizers, so the regularizer, the
quantizer and the statistics agree on what "the ternary pattern of W" is.
"""

from numbers import Real


from keras_wreg._compat import BaseQuantizer, keras, register_quantizer, tf
from keras_wreg._numerics import saturate_cast, to_float32
from keras_wreg._validation import check_bool, check_positive, check_real
from keras_wreg._validation import check_model, validate_args
from keras_wreg._grid import (  # noqa: F401  (re-exported: the ternary grid)
    ternary_pattern,
    ternary_scale,
    ternary_threshold,
    validate_threshold,
)

#: smallest std(W) used for the relative temperature (avoids a division by zero)
_STD_FLOOR = 1e-12


def sigmoid_rescale(w, temperature, threshold, r_min=0.01):
    r"""The clipped backward factor :math:`\operatorname{clip}(r_T(w), r_{min}, 1)` with

    .. math::

        r_T(w) = 4\,[\sigma'(T(w-\Delta)) + \sigma'(T(w+\Delta))],\qquad
        \sigma'(z) = \sigma(z)\,\sigma(-z).

    :math:`r_T` is the derivative of the soft ternary step
    :math:`t_T(w) = \sigma(T(w-\Delta)) + \sigma(T(w+\Delta)) - 1` divided by :math:`T/4`, so
    its peak at :math:`w = \pm\Delta` is about 1 and it tends to 2 everywhere as
    :math:`T \to 0` (clipped to 1: the plain STE). ``temperature`` is the absolute
    :math:`T`. Saturated sigmoids give 0 (then :math:`r_{min}`), never NaN.
    """
    w = tf.convert_to_tensor(w)
    temperature = tf.cast(temperature, w.dtype)
    threshold = tf.cast(threshold, w.dtype)

    def dsigmoid(z):
        return tf.sigmoid(z) * tf.sigmoid(-z)

    r = 4.0 * (dsigmoid(temperature * (w - threshold)) + dsigmoid(temperature * (w + threshold)))
    return tf.clip_by_value(r, tf.cast(r_min, w.dtype), tf.cast(1.0, w.dtype))


def effective_temperature(w, temperature, relative=True):
    r""":math:`T = \tau / \operatorname{std}(W)` if ``relative`` (scale-free), else :math:`\tau`."""
    w = tf.convert_to_tensor(w)
    temperature = tf.cast(temperature, w.dtype)
    if not relative:
        return temperature
    std = tf.stop_gradient(tf.math.reduce_std(w))
    return temperature / tf.maximum(std, tf.cast(_STD_FLOOR, w.dtype))


def rescaled_sigmoid_ternary(x, temperature=1.0, delta=0.7, threshold_value=None, scale=True,
                             r_min=0.01, relative_temperature=True):
    r"""Functional form of :class:`RescaledSigmoidTernary` (same arguments).

    Forward :math:`q = \alpha t`; backward
    :math:`\partial L/\partial w = \partial L/\partial q\cdot
    \operatorname{clip}(r_T(w), r_{min}, 1)`.
    """
    delta, threshold_value = validate_threshold(delta, threshold_value)
    if not (tf.is_tensor(temperature) or isinstance(temperature, tf.Variable)):
        temperature = check_positive(temperature, "temperature")
    r_min = check_real(r_min, "r_min", low=0.0, low_open=True, high=1.0)
    scale = check_bool(scale, "scale")
    relative_temperature = check_bool(relative_temperature, "relative_temperature")
    x = tf.convert_to_tensor(x)
    dtype = x.dtype
    x = to_float32(x)  # float16/bfloat16: computed in float32, cast back with saturation

    @tf.custom_gradient
    def _call(w):
        threshold = ternary_threshold(w, delta, threshold_value)
        t = ternary_pattern(w, threshold)
        alpha = ternary_scale(w, t) if scale else tf.constant(1.0, dtype=w.dtype)
        factor = sigmoid_rescale(
            w, effective_temperature(w, temperature, relative_temperature), threshold, r_min
        )

        def grad(dy):
            return dy * factor

        return alpha * t, grad

    return saturate_cast(_call(x), dtype)


class RescaledSigmoidTernary(BaseQuantizer):
    r"""Ternary quantizer whose straight-through gradient is re-scaled by a temperature sigmoid.

    Forward (TWN projection, Li et al. 2016):

    .. math::

        \Delta = \delta\cdot\mathrm{mean}|W| \ \ (\text{or a fixed } \Delta),\qquad
        t = \operatorname{sign}(w)\,\mathbb 1[|w| > \Delta],\qquad
        q(w) = \alpha\, t,\quad \alpha = \mathrm{mean}_{t_i\ne 0}|w_i| \ \ (\text{or } 1)

    so the output takes only the values :math:`\{-\alpha, 0, \alpha\}`.

    Backward [reconstructed, docs/methods.md seed 003]: the STE gradient times a factor that imitates
    the derivative of the soft ternary step
    :math:`t_T(w) = \sigma(T(w-\Delta)) + \sigma(T(w+\Delta)) - 1`:

    .. math::

        r_T(w) = 4\,[\sigma'(T(w-\Delta)) + \sigma'(T(w+\Delta))],\qquad
        \frac{\partial L}{\partial w} = \frac{\partial L}{\partial q}\,
            \operatorname{clip}(r_T(w), r_{min}, 1)

    :math:`\Delta` and :math:`\alpha` get no gradient. With ``relative_temperature=True``
    (default) the temperature is scale-free, :math:`T = \tau/\operatorname{std}(W)`: a small
    :math:`\tau` (≈1) gives an almost flat factor (STE-like), a large one (≈100) concentrates it
    around :math:`\pm\Delta`. :math:`\tau` is held in a non-trainable variable owned by the
    quantizer, read inside compiled graphs, saved in ``.keras`` files and checkpoints, and set by
    :class:`keras_wreg.TemperatureScheduler` (or :meth:`set_temperature`).

    Usage::

        lq.layers.QuantConv2D(64, 3, kernel_quantizer=RescaledSigmoidTernary(temperature=1.0))
        lq.layers.QuantConv2D(64, 3, kernel_quantizer="rescaled_sigmoid_ternary")

    Args:
        temperature: initial :math:`\tau > 0`.
        delta: TWN threshold factor :math:`\delta > 0` (0.7).
        threshold_value: a fixed :math:`\Delta > 0` instead of the TWN rule (None).
        scale: output :math:`\alpha t` (True) or :math:`t` (False, like Larq's ``ste_tern``).
        r_min: floor of the gradient factor, in :math:`(0, 1]` (0.01); ``r_min=1`` is the plain STE.
        relative_temperature: divide :math:`\tau` by :math:`\operatorname{std}(W)` (True).
        metrics: Larq quantizer metrics (e.g. ``["flip_ratio"]``).

    Raises:
        ValueError: for a non-positive temperature, delta or threshold_value, or ``r_min``
            outside :math:`(0, 1]`.

    Example:
        ```python
        quantizer = kw.RescaledSigmoidTernary(temperature=1.0, delta=0.7)
        conv = lq.layers.QuantConv2D(16, 3, kernel_quantizer=quantizer)
        print(quantizer(tf.constant([-1.0, 0.01, 0.8])).numpy())  # ternary values
        ```
    """

    precision = 2

    def __init__(self, temperature=1.0, delta=0.7, threshold_value=None, scale=True, r_min=0.01,
                 relative_temperature=True, **kwargs):
        self.delta, self.threshold_value = validate_threshold(delta, threshold_value)
        temperature = check_positive(temperature, "temperature")
        self.r_min = check_real(r_min, "r_min", low=0.0, low_open=True, high=1.0)
        self.scale = check_bool(scale, "scale")
        self.relative_temperature = check_bool(relative_temperature, "relative_temperature")
        super().__init__(**kwargs)
        self._temperature = self.add_weight(
            name="temperature", shape=(), dtype="float32", trainable=False,
            initializer=keras.initializers.Constant(temperature),
        )

    @property
    def temperature(self):
        r"""The variable holding :math:`\\tau` (read inside compiled graphs)."""
        return self._temperature

    def set_temperature(self, value):
        r"""Assign :math:`\\tau` (> 0); works eagerly and inside ``tf.function``."""
        if isinstance(value, Real) or isinstance(value, str):
            check_positive(value, "temperature")
        self._temperature.assign(tf.cast(value, self._temperature.dtype))

    def call(self, inputs):
        outputs = rescaled_sigmoid_ternary(
            inputs, temperature=tf.convert_to_tensor(self._temperature), delta=self.delta,
            threshold_value=self.threshold_value, scale=self.scale, r_min=self.r_min,
            relative_temperature=self.relative_temperature,
        )
        # Larq's flip_ratio metric compares int8 codes: report the ternary pattern sign(q), not
        # alpha * t (which an int8 cast would round to 0 for alpha < 1)
        super().call(tf.sign(outputs))
        return outputs

    def get_config(self):
        return {
            **super().get_config(),
            "temperature": float(keras.backend.get_value(self._temperature)),
            "delta": self.delta,
            "threshold_value": self.threshold_value,
            "scale": self.scale,
            "r_min": self.r_min,
            "relative_temperature": self.relative_temperature,
        }


RescaledSigmoidTernary = register_quantizer(RescaledSigmoidTernary, "rescaled_sigmoid_ternary")
keras.utils.get_custom_objects()["ste_tern_sigmoid"] = RescaledSigmoidTernary


@validate_args(model=check_model)
def ternary_quantizers(model):
    """Every distinct :class:`RescaledSigmoidTernary` used by the layers of ``model``."""
    found, seen = [], set()
    stack = list(getattr(model, "layers", []))
    while stack:
        layer = stack.pop(0)
        stack.extend(getattr(layer, "layers", []))
        for attr in ("kernel_quantizer", "depthwise_quantizer", "pointwise_quantizer",
                     "input_quantizer"):
            q = getattr(layer, attr, None)
            if isinstance(q, RescaledSigmoidTernary) and id(q) not in seen:
                seen.add(id(q))
                found.append(q)
    return found


__all__ = [
    "RescaledSigmoidTernary", "rescaled_sigmoid_ternary", "sigmoid_rescale",
    "effective_temperature", "ternary_threshold", "ternary_pattern", "ternary_scale",
    "validate_threshold", "ternary_quantizers",
]
