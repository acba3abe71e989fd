"""keras_wreg: regularization-driven quantization-aware training for Keras/Larq.

Importing keras_wreg first switches TensorFlow to tf-keras (``TF_USE_LEGACY_KERAS=1``) so that
Larq works; see :mod:`keras_wreg._compat`. The tuner lives in :mod:`keras_wreg.tuning` (not
imported here: it loads KerasTuner and Keras 3).
"""

from keras_wreg._compat import keras, lq, tf  # noqa: F401  (sets the legacy-Keras switch)
from keras_wreg import callbacks, data, export, models, recipes, schedules  # noqa: F401
from keras_wreg import distribute, retrofit  # noqa: F401,E402
from keras_wreg.retrofit import apply  # noqa: E402
from keras_wreg.callbacks import (
    ActivationBalance,
    ClusterCallback,
    GridStats,
    TemperatureScheduler,
    TernaryPull,
    activation_balance,
)
from keras_wreg.export import (
    compression_report,
    kmeans_cluster_model,
    recalibrate_batchnorm,
    strip_clustering,
)
from keras_wreg.layers import FeatureDistributionAdjust, GroupExcitation, ThresholdSign, hwgq_block
from keras_wreg.models import compression_ratio
from keras_wreg.optimizers import CosineMomentum, DecoupledRegularization, binary_kernel_names
from keras_wreg.quantizers import (
    HWGQ, ClusterQuantizer, RescaledSigmoidTernary, ScaledSign, bind_cluster_quantizers)
from keras_wreg.regularizers import ClusterReg, TernaryReg, WReg, initialize_centers, snap_weights
from keras_wreg import distillation  # noqa: E402
from keras_wreg.distillation import Distiller  # noqa: E402
from keras_wreg import alternate, training  # noqa: E402
from keras_wreg.alternate import AlternateUpdate  # noqa: E402
from keras_wreg.training import TrainJob  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    # binary weights: W-regularizer, cosine momentum, decoupled pull
    "WReg", "CosineMomentum", "DecoupledRegularization", "binary_kernel_names", "GridStats",
    "schedules",
    # ternary weights
    "TernaryReg", "RescaledSigmoidTernary", "TemperatureScheduler", "TernaryPull",
    # weight clustering with trainable centres
    "ClusterReg", "ClusterCallback", "initialize_centers", "snap_weights", "strip_clustering",
    "compression_report", "kmeans_cluster_model", "recalibrate_batchnorm",
    "ClusterQuantizer", "bind_cluster_quantizers",
    # HWGQ activations, scaled binary weights, alternating update
    "HWGQ", "ScaledSign", "hwgq_block", "AlternateUpdate", "compression_ratio",
    # feature-distribution adjustment for binary activations
    "FeatureDistributionAdjust", "GroupExcitation", "ThresholdSign", "ActivationBalance",
    "activation_balance",
    # scale out and fit in
    "apply", "distribute", "retrofit",
    # more accuracy: distillation from a float teacher
    "Distiller", "distillation",
    # one training engine under the CLI, the tuner and the benchmarks
    "training", "TrainJob", "alternate",
    "__version__",
]
