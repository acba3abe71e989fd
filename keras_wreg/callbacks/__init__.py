"""Callbacks and diagnostics for quantization-aware training."""

from keras_wreg.callbacks.grid_stats import GridStats, binary_kernels, grid_stats
from keras_wreg.callbacks.histograms import WeightHistograms, plot_weight_histograms
from keras_wreg.callbacks.alternate_update import AlternateUpdate, binary_layers

__all__ = ["GridStats", "grid_stats", "binary_kernels", "WeightHistograms",
           "plot_weight_histograms"]
__all__ += ["AlternateUpdate", "binary_layers"]
from keras_wreg.callbacks.activation_balance import (ActivationBalance, activation_balance,
                                                     binarizing_layers)
__all__ += ["ActivationBalance", "activation_balance", "binarizing_layers"]
