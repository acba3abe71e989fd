"""Regularizers that pull latent weights towards a quantization grid."""

from keras_wreg.regularizers.cluster import (
    ClusterReg,
    clustered_weights,
    initial_centers,
    initialize_centers,
    snap_weights,
)
from keras_wreg.regularizers.ternary_reg import TernaryReg
from keras_wreg.regularizers.wreg import WReg, snap_binary

__all__ = ["WReg", "TernaryReg", "ClusterReg", "clustered_weights", "initial_centers",
           "initialize_centers", "snap_weights", "snap_binary"]
