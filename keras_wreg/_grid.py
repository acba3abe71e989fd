"""Shared helpers for the binary grid {-alpha, +alpha} that several objects attract weights to."""

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


__all__ = ["validate_alpha", "resolve_alpha", "distance_to_grid", "ALPHA_MODES"]
