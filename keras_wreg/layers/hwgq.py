r"""The BN + HWGQ activation block of HWGQ-Net (seed 002)."""

from keras_wreg._compat import keras, lq
from keras_wreg._validation import check_bool, check_int, check_optional, check_positive, \
    check_real, check_str
from keras_wreg.quantizers.hwgq import HWGQ


def _fresh_quantizer(quantizer):
    """A new quantizer *layer* from a bits count, a string alias, a config or an instance."""
    if isinstance(quantizer, int) and not isinstance(quantizer, bool):
        return HWGQ(check_int(quantizer, "quantizer", low=1, high=4))
    expected = ("`quantizer` must be a number of bits (1..4) or a Larq quantizer class/instance "
                f"(a Keras layer such as HWGQ or DoReFa), got {quantizer!r}")
    if isinstance(quantizer, (bool, float)) or quantizer is None:
        raise ValueError(expected + ".")
    if isinstance(quantizer, keras.layers.Layer):
        config = {k: v for k, v in quantizer.get_config().items() if k != "name"}
        return quantizer.__class__.from_config(config)
    try:
        resolved = lq.quantizers.get(quantizer)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{expected} ({' '.join(str(err).split())[:120]}).") from None
    if not isinstance(resolved, keras.layers.Layer):
        raise ValueError(expected + ".")
    return resolved


def hwgq_block(x, quantizer=2, *, center=False, scale=False, momentum=0.9, epsilon=1e-4,
               name=None):
    r"""``BatchNormalization(center=False, scale=False)`` followed by an activation quantizer.

    .. math::  y = Q\Big(\frac{x - \mu_c}{\sqrt{\sigma_c^2 + \epsilon}}\Big)

    The normalization makes each channel zero-mean, unit-variance, which is what the HWGQ
    levels (optimal for a unit-variance half-Gaussian) assume.

    Args:
        x: a Keras tensor.
        quantizer: bits of an :class:`~keras_wreg.HWGQ` quantizer (default 2), or any Larq
            quantizer *layer* (instance, class name/alias or config), e.g.
            ``lq.quantizers.DoReFa(2, mode="activations")`` for a baseline.
        center, scale: BN's affine parts (both off, as HWGQ-Net needs; may be turned on).
        momentum, epsilon: BN's moving-average momentum and epsilon.
        name: optional prefix of the two layer names.

    Returns:
        The quantized Keras tensor.
    """
    center = check_bool(center, "center")
    scale = check_bool(scale, "scale")
    momentum = check_real(momentum, "momentum", low=0.0, high=1.0, high_open=True)
    epsilon = check_positive(epsilon, "epsilon", high=1.0)
    check_optional(check_str, name, "name")
    q = _fresh_quantizer(quantizer)
    x = keras.layers.BatchNormalization(
        center=center, scale=scale, momentum=momentum, epsilon=epsilon,
        name=f"{name}_bn" if name else None)(x)
    if name:
        q = q.__class__.from_config({**q.get_config(), "name": f"{name}_q"})
    return q(x)


__all__ = ["hwgq_block"]
