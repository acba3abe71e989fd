"""Callbacks and diagnostics for quantization-aware training."""

from keras_wreg.callbacks.alternate_update import AlternateUpdate, binary_layers
from keras_wreg.callbacks.grid_stats import GridStats, binary_kernels, grid_stats
from keras_wreg.callbacks.histograms import WeightHistograms, plot_weight_histograms
from keras_wreg.callbacks.temperature import TemperatureScheduler, temperature_at
from keras_wreg.callbacks.ternary_stats import TernaryStats, ternary_stats

__all__ = ["GridStats", "grid_stats", "binary_kernels", "WeightHistograms",
           "plot_weight_histograms"]
__all__ += ["AlternateUpdate", "binary_layers"]
__all__ += ["TemperatureScheduler", "temperature_at", "TernaryStats", "ternary_stats"]
from keras_wreg.callbacks.cluster import ClusterCallback, cluster_stats  # noqa: E402

__all__ += ["ClusterCallback", "cluster_stats"]
