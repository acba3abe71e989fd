"""Larq-compatible quantizers (each registered for tf-keras and Larq string lookup)."""

from keras_wreg.quantizers.cluster import (
    ClusterQuantizer,
    bind_cluster_quantizers,
    cluster_quantizers,
    set_cluster_phase,
)
from keras_wreg.quantizers.hwgq import HWGQ, ScaledSign, hwgq, scaled_sign
from keras_wreg.quantizers.ternary import (
    RescaledSigmoidTernary,
    rescaled_sigmoid_ternary,
    ternary_quantizers,
)

__all__ = ["HWGQ", "ScaledSign", "hwgq", "scaled_sign"]
__all__ += ["RescaledSigmoidTernary", "rescaled_sigmoid_ternary", "ternary_quantizers"]
__all__ += ["ClusterQuantizer", "bind_cluster_quantizers", "cluster_quantizers",
            "set_cluster_phase"]
