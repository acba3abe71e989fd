"""The grids weights are attracted to: binary {-alpha, +alpha} and ternary {-alpha, 0, +alpha}.

Below both ``quantizers`` and ``regularizers``, so the two agree on the grid without importing
each other."""

from keras_wreg._compat import tf
from keras_wreg._validation import check_choice, check_positive

ALPHA_MODES = ("mean", "channel")


def validate_alpha(alpha, argname="alpha"):
    """Return ``alpha`` as a float > 0 or one of ``"mean"``/``"channel"``; else ValueError."""
    if isinstance(alpha, str):
        return check_choice(alpha, ALPHA_MODES, argname)
    return check_positive(alpha, argname)


def resolve_alpha(w, alpha):
    r"""The grid scale :math:`\alpha` for tensor ``w``, broadcastable against it.

    - a number: that constant;
    - ``"mean"``: :math:`\mathrm{mean}|W|` over the whole tensor;
    - ``"channel"``: :math:`\mathrm{mean}|W_c|` per output channel (last axis, the Keras kernel
      layout of Dense and Conv layers).

    Data-dependent scales are under ``stop_gradient``: the grid is a target, not a free parameter.
    """
    if alpha == "mean":
        return tf.stop_gradient(tf.reduce_mean(tf.abs(w)))
    if alpha == "channel":
        if w.shape.rank is not None and w.shape.rank < 1:
            raise ValueError("`alpha='channel'` needs a weight tensor with at least one axis.")
        axes = list(range(w.shape.rank - 1))
        return tf.stop_gradient(tf.reduce_mean(tf.abs(w), axis=axes, keepdims=True))
    return tf.constant(alpha, dtype=w.dtype)


def distance_to_grid(w, alpha):
    r""":math:`d(w) = \big||w| - \alpha\big|`, the distance to the nearest of :math:`\pm\alpha`."""
    return tf.abs(tf.abs(w) - alpha)


def validate_threshold(delta, threshold_value):
    """Validate the TWN factor ``delta`` (> 0) and the optional fixed threshold (> 0)."""
    delta = check_positive(delta, "delta", high=100.0)
    if threshold_value is not None:
        threshold_value = check_positive(threshold_value, "threshold_value")
    return delta, threshold_value


def ternary_threshold(w, delta=0.7, threshold_value=None):
    r"""The threshold :math:`\Delta`: ``threshold_value`` if given, else the TWN rule
    :math:`\Delta = \delta\cdot\mathrm{mean}|W|` (under stop-gradient)."""
    w = tf.convert_to_tensor(w)
    if threshold_value is not None:
        return tf.constant(threshold_value, dtype=w.dtype)
    return tf.stop_gradient(delta * tf.reduce_mean(tf.abs(w)))


def ternary_pattern(w, threshold):
    r""":math:`t = \operatorname{sign}(W)\cdot\mathbb 1[|W| > \Delta]` in :math:`\{-1, 0, 1\}`
    (a weight exactly at :math:`\pm\Delta` maps to 0), under stop-gradient."""
    w = tf.convert_to_tensor(w)
    support = tf.cast(tf.abs(w) > threshold, w.dtype)
    return tf.stop_gradient(tf.sign(w) * support)


def ternary_scale(w, t):
    r""":math:`\alpha = \mathrm{mean}_{i: t_i \ne 0} |w_i|` (0 if the support is empty),
    the least-squares scale for a fixed pattern :math:`t`; under stop-gradient."""
    w = tf.convert_to_tensor(w)
    count = tf.reduce_sum(tf.abs(t))
    total = tf.reduce_sum(tf.abs(w) * tf.abs(t))
    return tf.stop_gradient(tf.math.divide_no_nan(total, count))


__all__ = ["validate_alpha", "resolve_alpha", "distance_to_grid", "ALPHA_MODES",
           "validate_threshold", "ternary_threshold", "ternary_pattern", "ternary_scale"]
