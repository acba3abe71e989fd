"""Optimizer wrappers for quantization-aware training."""

from keras_wreg.optimizers.cosine_momentum import CosineMomentum, cosine_ramp
from keras_wreg.optimizers.decoupled import DecoupledRegularization
from keras_wreg.optimizers.wrapper import (
    OptimizerWrapper,
    binary_kernel_names,
    binary_kernels,
    is_binary_quantizer,
)

__all__ = ["CosineMomentum", "DecoupledRegularization", "OptimizerWrapper", "binary_kernels",
           "binary_kernel_names", "cosine_ramp", "is_binary_quantizer"]
