"""Callbacks and diagnostics for quantization-aware training."""

from keras_wreg.callbacks.activation_balance import (
    ActivationBalance,
    activation_balance,
    binarizing_layers,
    probe_from_dataset,
)
from keras_wreg.callbacks.cluster import ClusterCallback, cluster_stats
from keras_wreg.callbacks.grid_stats import GridStats, binary_kernels, grid_stats
from keras_wreg.callbacks.histograms import WeightHistograms, plot_weight_histograms
from keras_wreg.callbacks.tensorboard import (
    QuantizationTensorBoard,
    diagnostics,
    latent_kernels,
)
from keras_wreg.callbacks.temperature import TemperatureScheduler, temperature_at
from keras_wreg.callbacks.ternary_pull import TernaryPull
from keras_wreg.callbacks.ternary_stats import TernaryStats, ternary_stats

__all__ = [
    "GridStats", "grid_stats", "binary_kernels", "WeightHistograms", "plot_weight_histograms",
    "TemperatureScheduler", "temperature_at",
    "TernaryStats", "ternary_stats", "TernaryPull", "ClusterCallback", "cluster_stats",
    "ActivationBalance",
    "activation_balance", "binarizing_layers", "probe_from_dataset", "QuantizationTensorBoard",
    "diagnostics",
    "latent_kernels",
]
