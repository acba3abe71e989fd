"""Export of trained quantized models: ``.keras`` files, packed weights, TFLite flatbuffers.

Three parts, all importable from here:

- :mod:`keras_wreg.export.weights`: ``.keras`` save/load, the quantized kernels as the layers
  use them, a codebook-packed ``.npz`` of the deployed weights, Larq's model summary.
- :mod:`keras_wreg.export.clustering`: clustered models (seed 004): :func:`strip_clustering`,
  :func:`compression_report`, batch-norm re-estimation and the k-means baseline.
- :mod:`keras_wreg.export.tflite`: :func:`strip_for_inference` (a Keras copy without what only
  training needs) and :func:`to_tflite`, which converts it with Larq Compute Engine
  (``target="lce"``, binary convolutions bit-packed) or TensorFlow's own TFLite converter
  (``target="tflite"``); :func:`parity` and :func:`evaluate_tflite` run the flatbuffer in LCE's
  interpreter. :mod:`keras_wreg.export.multilevel` holds the layers that turn a binary-weight
  layer fed by a multi-level activation (HWGQ, DoReFa) into one bit-packed convolution.
"""

from keras_wreg.export.clustering import (
    compression_report,
    kmeans_cluster_model,
    recalibrate_batchnorm,
    strip_clustering,
)
from keras_wreg.export.multilevel import MultiLevelBinaryConv2D, MultiLevelBinaryDense
from keras_wreg.export.tflite import (
    TARGETS,
    BinaryDenseAsConv,
    OnePaddedBinaryConv2D,
    Int8Conv2D,
    Int8Dense,
    PackableThresholdSign,
    ExportError,
    deploy_report,
    evaluate_tflite,
    flatbuffer_report,
    format_deploy_report,
    float32_size,
    load_interpreter,
    parity,
    quantized_layers,
    strip_for_inference,
    tflite_bytes,
    tflite_predict,
    to_tflite,
)
from keras_wreg.export.weights import (
    export_packed_weights,
    load_model,
    load_packed_weights,
    model_summary_text,
    quantized_kernels,
    save_model,
)

__all__ = [
    # weights
    "save_model", "load_model", "quantized_kernels", "export_packed_weights",
    "load_packed_weights", "model_summary_text",
    # clustering
    "strip_clustering", "compression_report", "kmeans_cluster_model", "recalibrate_batchnorm",
    # tflite
    "TARGETS", "ExportError", "BinaryDenseAsConv", "OnePaddedBinaryConv2D", "PackableThresholdSign",
    "MultiLevelBinaryConv2D", "MultiLevelBinaryDense", "Int8Conv2D", "Int8Dense", "strip_for_inference", "quantized_layers", "tflite_bytes",
    "to_tflite", "load_interpreter", "tflite_predict", "parity", "evaluate_tflite",
    "flatbuffer_report", "float32_size", "deploy_report", "format_deploy_report",
]
