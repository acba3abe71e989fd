"""Regularizers that pull latent weights towards a quantization grid."""

from keras_wreg.regularizers.wreg import WReg

__all__ = ["WReg"]
