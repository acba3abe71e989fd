"""Keras layers of the keras_wreg methods."""
from keras_wreg.layers.hwgq import hwgq_block

__all__ = []
__all__ += ["hwgq_block"]
