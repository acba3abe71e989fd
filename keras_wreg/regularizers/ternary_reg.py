r"""Regularizer that pushes full-precision weights towards a ternary pattern (seed 003)."""

from keras_wreg._compat import keras, register, tf
from keras_wreg._grid import (
    ternary_pattern,
    ternary_scale,
    ternary_threshold,
    validate_threshold,
)
from keras_wreg._numerics import saturate_cast, to_float32
from keras_wreg._validation import check_choice, check_non_negative

_VARIANTS = ("cosine", "multiwell")
_EPSILON = 1e-12
#: smallest scale the multi-well variant divides by (float32 computation)
_ALPHA_FLOOR = 1e-30


@register
class TernaryReg(keras.regularizers.Regularizer):
    r"""Cosine distance between a kernel and its ternary projection (or a multi-well penalty).

    Dan Liu, Xue Liu, *Hyperspherical Loss-Aware Ternary Quantization* (arXiv:2212.12649) and
    *Hyperspherical Quantization* (WACV 2023). Only the abstracts are public; this is the
    reconstruction of ``docs/methods.md`` [REC]. With :math:`\Delta` and :math:`t` held constant
    (stop-gradient):

    .. math::

        \Delta = \delta\cdot\mathrm{mean}|W|,\qquad
        t = \operatorname{sign}(W)\,\mathbb 1[|W|>\Delta]

        R_\mathrm{cos}(W) = 1 - \frac{\langle W, t\rangle}{\|W\|_2\,\|t\|_2}

    :math:`R \ge 0`, and :math:`R = 0` exactly when :math:`W = \alpha t` for some
    :math:`\alpha > 0`; it is scale-free, so it does not fight batch normalization. It is
    evaluated in the algebraically equal, cancellation-free form (Lagrange's identity, with
    :math:`S` the support of :math:`t`, :math:`n = |S|`, :math:`u_i = w_i t_i`,
    :math:`m = \mathrm{mean}_S u`)

    .. math::

        R_\mathrm{cos} = \frac{n \sum_{i\in S}(u_i - m)^2 + n\sum_{i\notin S} w_i^2}
            {\sqrt n\,\|W\|\,(\sqrt n\,\|W\| + \sum_{i\in S} u_i) + \varepsilon}

    whose numerator is exactly 0 for :math:`W = \alpha t` (and whose gradient is that of
    :math:`1-\cos`). A kernel whose support is empty (all zero, or no weight above
    :math:`\Delta`) is skipped: penalty 0, gradient 0, no NaN.

    Variant ``"multiwell"``: a W-shaped penalty with wells at :math:`\{-\alpha, 0, \alpha\}`
    (:math:`\alpha = \mathrm{mean}_S|w|`, stop-gradient), each weight pulled to the level the
    ternary quantizer assigns it, normalized by :math:`\alpha^p` so it is scale-free too:

    .. math::

        R_\mathrm{mw}(W) = \frac{1}{N}\sum_i \frac{|w_i - \alpha t_i|^p}{\alpha^p},\quad p\in\{1,2\}

    Penalty: :math:`\lambda\,R(W)` per kernel.

    Args:
        strength: :math:`\lambda \ge 0` (per kernel; :math:`R \le 1` for the cosine form).
        delta: TWN threshold factor :math:`\delta > 0` (0.7).
        threshold_value: a fixed :math:`\Delta > 0` instead of the TWN rule (None).
        variant: ``"cosine"`` (default) or ``"multiwell"``.
        power: :math:`p` of the multi-well variant, 1 or 2 (2).

    Raises:
        ValueError: for a negative strength, non-positive delta/threshold_value, an unknown
            variant or a power other than 1 or 2.

    Example:
        ```python
        reg = kw.TernaryReg(strength=0.1, delta=0.7)  # pull to {-alpha, 0, +alpha}
        conv = lq.layers.QuantConv2D(16, 3, kernel_quantizer="ste_tern", kernel_regularizer=reg)
        print(float(reg(tf.constant([[-0.9, 0.05, 1.1]]))))
        ```
    """

    def __init__(self, strength=0.1, delta=0.7, threshold_value=None, variant="cosine", power=2):
        self.strength = check_non_negative(strength, "strength")
        self.delta, self.threshold_value = validate_threshold(delta, threshold_value)
        self.variant = check_choice(variant, _VARIANTS, "variant")
        self.power = int(check_choice(power, (1, 2), "power"))

    def penalty(self, w):
        """:math:`R(W)` without the strength (in the dtype of ``w``)."""
        value, dtype = self._penalty(w)
        return saturate_cast(value, dtype)

    def _penalty(self, w):
        """:math:`R(W)` in float32 (float64 for float64 weights) and the dtype of ``w``."""
        w = tf.convert_to_tensor(w)
        if not w.dtype.is_floating:
            raise ValueError(f"TernaryReg needs floating-point weights, got dtype {w.dtype.name}.")
        dtype = w.dtype
        w = tf.reshape(to_float32(w), [-1])  # float16/bfloat16 are computed in float32
        t = ternary_pattern(w, ternary_threshold(w, self.delta, self.threshold_value))
        value = self._cosine(w, t) if self.variant == "cosine" else self._multiwell(w, t)
        return value, dtype

    def _cosine(self, w, t):
        support = tf.abs(t)
        n = tf.reduce_sum(support)
        u = w * t  # = |w| on the support, 0 elsewhere
        m = tf.stop_gradient(tf.math.divide_no_nan(tf.reduce_sum(u), n))
        # the stop-gradient on m is exact: sum_S (u - m) = 0, so d/dm of sum_S (u-m)^2 is 0
        spread = tf.reduce_sum(support * tf.square(u - m))
        off = tf.reduce_sum((1.0 - support) * tf.square(w))
        numerator = n * (spread + off)
        # safe norm: sqrt'(0) is infinite; the floor only matters for an all-zero kernel
        norm = tf.sqrt(tf.maximum(tf.reduce_sum(tf.square(w)), _EPSILON))
        root_n = tf.sqrt(n)
        denominator = root_n * norm * (root_n * norm + tf.reduce_sum(u)) + _EPSILON
        value = numerator / denominator
        return tf.where(n > 0, value, tf.zeros_like(value))

    def _multiwell(self, w, t):
        alpha = ternary_scale(w, t)
        # normalise first, (|w - a t| / a)^p, so a tiny scale (1e-30) does not underflow a^p;
        # the floor keeps 1/a (the gradient's factor) finite for subnormal scales
        safe_alpha = tf.maximum(alpha, _ALPHA_FLOOR)
        gap = tf.abs(w / safe_alpha - t)  # tf.abs has gradient 0 at 0: no NaN on a well
        if self.power == 2:
            gap = tf.square(gap)
        value = tf.reduce_mean(gap)
        return tf.where(alpha > 0, value, tf.zeros_like(value))

    def __call__(self, w):
        value, dtype = self._penalty(w)
        return saturate_cast(self.strength * value, dtype)

    def get_config(self):
        return {
            "strength": self.strength,
            "delta": self.delta,
            "threshold_value": self.threshold_value,
            "variant": self.variant,
            "power": self.power,
        }


__all__ = ["TernaryReg"]
