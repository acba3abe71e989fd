"""Larq-compatible quantizers (each registered for tf-keras and Larq string lookup)."""
from keras_wreg.quantizers.hwgq import HWGQ, ScaledSign, hwgq, scaled_sign

__all__ = []
__all__ += ["HWGQ", "ScaledSign", "hwgq", "scaled_sign"]
