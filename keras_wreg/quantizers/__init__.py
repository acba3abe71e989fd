"""Larq-compatible quantizers (each registered for tf-keras and Larq string lookup)."""

from keras_wreg.quantizers.ternary import (
    RescaledSigmoidTernary,
    rescaled_sigmoid_ternary,
    ternary_quantizers,
)

__all__ = []
__all__ += ["RescaledSigmoidTernary", "rescaled_sigmoid_ternary", "ternary_quantizers"]
