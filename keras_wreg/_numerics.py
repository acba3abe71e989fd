"""Precision helpers: compute low-precision tensors in float32 and cast back without overflow.

float16 underflows below 6e-8 and overflows above 65504, so a small epsilon (1e-12) becomes 0
and a square or a reciprocal easily becomes inf; inf times 0 is NaN. The regularizers,
quantizers and layers of keras_wreg therefore compute in float32 when handed float16 or
bfloat16 tensors (:func:`to_float32`) and cast their results back with saturation
(:func:`saturate_cast`): a value or gradient beyond the target dtype's range becomes its
largest finite value instead of inf.
"""

from keras_wreg._compat import tf

_LOW_PRECISION = (tf.float16, tf.bfloat16)


def _limit(dtype):
    return float(dtype.max)


def saturate_cast(x, dtype):
    """``tf.cast(x, dtype)`` with values beyond ``dtype``'s finite range clipped to it."""
    x = tf.convert_to_tensor(x)
    dtype = tf.as_dtype(dtype)
    if x.dtype == dtype:
        return x
    if dtype.is_floating and dtype.size < x.dtype.size or dtype == tf.bfloat16:
        limit = _limit(dtype)
        x = tf.clip_by_value(x, -limit, limit)
    return tf.cast(x, dtype)


def to_float32(x):
    """``x`` as float32 if it is float16/bfloat16 (else unchanged).

    The gradient flowing back to the low-precision input is clipped to the input dtype's finite
    range, so a large but finite float32 gradient does not become inf in float16.
    """
    x = tf.convert_to_tensor(x)
    source = x.dtype
    if source not in _LOW_PRECISION:
        return x
    limit = _limit(source)

    @tf.custom_gradient
    def _up(value):
        def grad(dy):
            return tf.cast(tf.clip_by_value(dy, -limit, limit), source)

        return tf.cast(value, tf.float32), grad

    return _up(x)


def compute_dtype(dtype):
    """The dtype keras_wreg computes in for inputs of ``dtype``."""
    dtype = tf.as_dtype(dtype)
    return tf.float32 if dtype in _LOW_PRECISION else dtype


__all__ = ["saturate_cast", "to_float32", "compute_dtype"]
