"""Callbacks and diagnostics for quantization-aware training."""

from keras_wreg.callbacks.grid_stats import GridStats, binary_kernels, grid_stats
from keras_wreg.callbacks.histograms import WeightHistograms, plot_weight_histograms

__all__ = ["GridStats", "grid_stats", "binary_kernels", "WeightHistograms",
           "plot_weight_histograms"]
from keras_wreg.callbacks.cluster import ClusterCallback, cluster_stats  # noqa: E402

__all__ += ["ClusterCallback", "cluster_stats"]
