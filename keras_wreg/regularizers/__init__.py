"""Regularizers that pull latent weights towards a quantization grid."""

from keras_wreg.regularizers.wreg import WReg

__all__ = ["WReg"]
from keras_wreg.regularizers.cluster import (  # noqa: E402
    ClusterReg, clustered_weights, initial_centers, initialize_centers, snap_weights)

__all__ += ["ClusterReg", "clustered_weights", "initial_centers", "initialize_centers",
            "snap_weights"]
