r"""Export of clustered models (seed 004): strip the training-time objects, count the bits.

Weight-clustering functions (seed 004): :func:`strip_clustering` (the pattern of TF-MOT's
``strip_clustering``), :func:`compression_report`, :func:`recalibrate_batchnorm` and the
post-training k-means baseline
:func:`kmeans_cluster_model`.
"""

import math

import numpy as np

from keras_wreg._compat import keras
from keras_wreg._validation import check_bool, check_int
from keras_wreg._clone import clone
from keras_wreg._introspect import plain_keras_layer
from keras_wreg.quantizers.cluster import ClusterQuantizer
from keras_wreg.regularizers.cluster import ClusterReg, clustered_weights, snap_weights
from keras_wreg._validation import check_dataset, check_model, validate_args


def _strip_layer(layer):
    config = layer.get_config()
    changed = False
    for key in list(config):
        if (key.endswith("_regularizer") and isinstance(getattr(layer, key, None), ClusterReg)) \
                or (key.endswith("_quantizer")
                    and isinstance(getattr(layer, key, None), ClusterQuantizer)):
            config[key] = None
            changed = True
    cls, config = plain_keras_layer(layer.__class__, config)
    if cls is layer.__class__ and not changed:
        return layer.__class__.from_config(layer.get_config())
    return cls.from_config(config)


@validate_args(model=check_model)
def strip_clustering(model, snap=True):
    """A plain copy of ``model`` without :class:`~keras_wreg.ClusterReg` (and its centres) and
    without :class:`~keras_wreg.quantizers.ClusterQuantizer`.

    Every clustered weight of the copy is its nearest centre (``snap=True``), so each clustered
    layer of the copy holds exactly ``K`` distinct values (fewer if a centre is dead). ``model``
    itself is left untouched, as TF-MOT's ``strip_clustering`` leaves its input. Larq layers without quantizers become their Keras counterparts
    (``QuantConv2D`` -> ``Conv2D``, ...). Works for Sequential and functional models.

    Returns:
        A new, uncompiled ``tf.keras.Model`` with the same predictions as the snapped ``model``.

    Raises:
        ValueError: for a subclassed model (it cannot be cloned from its config).
    """
    snap = check_bool(snap, "snap")
    if not getattr(model, "_is_graph_network", False) and not isinstance(model,
                                                                         keras.Sequential):
        raise ValueError("`model` must be a Sequential or functional model to be stripped.")
    original = [(w, w.numpy()) for _, w, _ in clustered_weights(model)] if snap else []
    if snap:
        snap_weights(model)
    try:
        return _copy_stripped(model)
    finally:  # the input keeps its own (unsnapped) weights
        for weight, value in original:
            weight.assign(value)


def _copy_stripped(model):
    skip = {id(v) for _, _, reg in clustered_weights(model) for v in reg.weights}
    skip |= {id(v) for layer in model.layers for key in ("kernel_quantizer",)
             if isinstance(getattr(layer, key, None), ClusterQuantizer)
             for v in getattr(layer, key).weights}
    return clone(model, _strip_layer, skip=skip)


@validate_args(model=check_model)
def compression_report(model, max_levels=256):
    r"""Bits needed by ``model`` when every weight with few distinct values is index-coded.

    A kernel (or embedding) tensor with :math:`n` entries and :math:`K` distinct values,
    :math:`K \le` ``max_levels`` and :math:`K < n`, costs :math:`n\lceil\log_2 K\rceil + 32K` bits
    (indices plus a float32 codebook); every other tensor (biases, batch-norm) costs :math:`32n`.
    Training-only state of
    :class:`~keras_wreg.ClusterReg` (centres, warm-up) is not counted; the counts are measured on
    the current values, so call it on a snapped or stripped model.

    Returns:
        ``{"layers": [{"name", "n", "levels", "bits"} per tensor], "total_bits",
        "float_bits", "ratio", "compressed_kib"}``.
    """
    max_levels = check_int(max_levels, "max_levels", low=1, high=2**24)
    skip = {id(v) for _, _, reg in clustered_weights(model) for v in reg.weights}
    rows, total, float_bits = [], 0, 0
    for v in model.weights:
        if id(v) in skip:
            continue
        values = v.numpy().ravel()
        n = values.size
        levels = int(np.unique(values).size)
        coded = levels <= max_levels and levels < n and (
            "kernel" in v.name or "embeddings" in v.name)
        bits = n * max(1, math.ceil(math.log2(levels))) + 32 * levels if coded else 32 * n
        rows.append({"name": v.name, "n": n, "levels": levels if coded else None, "bits": bits})
        total += bits
        float_bits += 32 * n
    return {"layers": rows, "total_bits": total, "float_bits": float_bits,
            "ratio": float_bits / total if total else float("nan"),
            "compressed_kib": total / 8 / 1024}


@validate_args(model=check_model)
def kmeans_cluster_model(model, num_centers, seed=0, max_samples=20000, select=None):
    """Post-training k-means baseline: a copy of ``model`` whose kernels hold ``num_centers``
    values, the centres found by scikit-learn's ``KMeans`` on each kernel (k-means++ start).

    ``select(layer) -> bool`` picks the layers (default: every layer with a ``kernel``).
    """
    from keras_wreg.regularizers.cluster import MAX_CENTERS, initial_centers

    num_centers = check_int(num_centers, "num_centers", low=2, high=MAX_CENTERS)
    seed = check_int(seed, "seed", low=0)
    max_samples = check_int(max_samples, "max_samples", low=num_centers)
    if select is not None and not callable(select):
        raise TypeError(f"`select` must be None or a callable layer -> bool, got {select!r}.")

    copy = clone(model)
    for layer in copy.layers:
        kernel = getattr(layer, "kernel", None)
        if kernel is None or (select is not None and not select(layer)):
            continue
        w = kernel.numpy()
        c = initial_centers(w, num_centers, method="kmeans", seed=seed, max_samples=max_samples)
        kernel.assign(c[np.argmin(np.abs(w[..., None] - c), axis=-1)])
    return copy


@validate_args(model=check_model, dataset=check_dataset)
def recalibrate_batchnorm(model, dataset, steps=50):
    """Re-estimate the moving statistics of every BatchNormalization layer after a snap.

    Runs ``model(x, training=True)`` on up to ``steps`` batches of ``dataset`` (``(x, y)`` or
    ``x`` batches); no trainable weight changes, only the BN moving mean/variance (with the
    layers' own momentum). Snapping shifts each layer's output statistics slightly; this removes
    the mismatch. Returns the number of batches used.

    Raises:
        ValueError: for ``steps < 1``.
    """
    steps = check_int(steps, "steps", low=1, high=10**7)
    used = 0
    for batch in dataset.take(steps):
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        model(x, training=True)
        used += 1
    return used


__all__ = ["strip_clustering", "compression_report", "kmeans_cluster_model",
           "recalibrate_batchnorm"]
