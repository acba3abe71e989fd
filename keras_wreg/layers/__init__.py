"""Keras layers of the keras_wreg methods."""

from keras_wreg.layers.fda import (
    FeatureDistributionAdjust,
    GroupExcitation,
    ThresholdSign,
    extra_flops,
    fda_unit,
)
from keras_wreg.layers.hwgq import hwgq_block

__all__ = ["hwgq_block", "FeatureDistributionAdjust", "GroupExcitation", "ThresholdSign",
           "fda_unit", "extra_flops"]
