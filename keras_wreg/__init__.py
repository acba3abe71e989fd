"""keras_wreg: regularization-driven quantization-aware training for Keras/Larq.

Importing keras_wreg first switches TensorFlow to tf-keras (``TF_USE_LEGACY_KERAS=1``) so that
Larq works; see :mod:`keras_wreg._compat`.
"""

from keras_wreg._compat import keras, lq, tf  # noqa: F401  (sets the legacy-Keras switch)
from keras_wreg.optimizers import CosineMomentum, binary_kernel_names
from keras_wreg.regularizers import WReg
from keras_wreg.quantizers import HWGQ, ScaledSign
from keras_wreg.layers import hwgq_block
from keras_wreg.callbacks import AlternateUpdate
from keras_wreg.models import compression_ratio
from keras_wreg.layers import FeatureDistributionAdjust, GroupExcitation, ThresholdSign
from keras_wreg.callbacks import ActivationBalance, activation_balance

__version__ = "0.1.0"

__all__ = ["WReg", "CosineMomentum", "binary_kernel_names", "__version__"]
__all__ += ["HWGQ", "ScaledSign", "hwgq_block", "AlternateUpdate", "compression_ratio"]
__all__ += ["FeatureDistributionAdjust", "GroupExcitation", "ThresholdSign", "ActivationBalance",
            "activation_balance"]
