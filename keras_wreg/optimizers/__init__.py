"""Optimizer wrappers for quantization-aware training."""

from keras_wreg.optimizers.cosine_momentum import (
    AUTO_PATTERN,
    CosineMomentum,
    binary_kernel_names,
    cosine_ramp,
)

__all__ = ["CosineMomentum", "binary_kernel_names", "cosine_ramp", "AUTO_PATTERN"]
