"""Optimizer wrappers for quantization-aware training."""

from keras_wreg.optimizers.cosine_momentum import (
    CosineMomentum,
    binary_kernel_names,
    binary_kernels,
    cosine_ramp,
    is_binary_quantizer,
)

__all__ = ["CosineMomentum", "binary_kernels", "binary_kernel_names", "cosine_ramp",
           "is_binary_quantizer"]
