"""Regularizers that pull latent weights towards a quantization grid."""

from keras_wreg.regularizers.wreg import WReg
from keras_wreg.regularizers.ternary_reg import TernaryReg

__all__ = ["WReg"]
__all__ += ["TernaryReg"]
