r"""Compression ratio of a (partly) quantized Keras/Larq model, per layer and in total."""

import numpy as np

from keras_wreg._introspect import flat_layers
from keras_wreg._compat import keras
from keras_wreg._validation import check_bool
from keras_wreg.quantizers.hwgq import SCALED_QUANTIZERS
from keras_wreg._validation import check_model, validate_args


def _counted_weights(layer):
    """The weights Larq's ``lq.models.summary`` counts for ``layer`` (same BN fusion rule)."""
    weights = list(layer.weights)
    if isinstance(layer, keras.layers.BatchNormalization):
        names = [w.name.split("/")[-1].replace(":0", "") for w in weights]
        for affine, stat in (("beta", "moving_mean"), ("gamma", "moving_variance")):
            if affine in names and stat in names:
                drop = names.index(affine)
                weights.pop(drop)
                names.pop(drop)
    return weights


def _scale_count(layer):
    quantizer = getattr(layer, "kernel_quantizer", None)
    kernel = getattr(layer, "kernel", None)
    if isinstance(quantizer, SCALED_QUANTIZERS) and kernel is not None:
        return int(kernel.shape[-1])
    return 0


@validate_args(model=check_model)
def compression_ratio(model, include_scales=True):
    r"""Compression ratio of ``model`` against its float32 twin, per layer and in total.

    .. math::

        CR = \frac{32\,N_\mathrm{total}}{\sum_{b} b\,N_b + 32\,N_\mathrm{scales}}

    where :math:`N_b` counts the parameters stored with :math:`b` bits (1 for binary kernels,
    2 for 2-bit kernels, 32 for float parts: BN statistics, float layers, biases) and
    :math:`N_\mathrm{scales}` the per-output-channel float scales of :class:`ScaledSign`-like
    kernels (one per output channel; they are not parameters of the float twin, so they are not
    in :math:`N_\mathrm{total}`). The bit width of a weight is the ``precision`` Larq attaches
    to it, and parameters are counted exactly as ``lq.models.summary`` counts them (a BN's
    ``beta``/``gamma`` are folded into ``moving_mean``/``moving_variance`` when both exist), so
    with ``include_scales=False`` the total bits equal Larq's model memory.

    Args:
        model: a built Keras model.
        include_scales: count the 32-bit per-channel scales (default True).

    Returns:
        dict with ``"layers"`` (one dict per layer holding weights: ``name``, ``params``,
        ``params_by_bits`` {bits: count}, ``scales``, ``bits``, ``fp32_bits``, ``ratio``),
        ``"params"``, ``"params_by_bits"``, ``"scales"``, ``"bits"``, ``"fp32_bits"`` and
        ``"ratio"`` for the whole model.
    """
    if not isinstance(model, keras.Model) or not model.built:
        raise ValueError(f"`model` must be a built Keras model, got {model!r}.")
    include_scales = check_bool(include_scales, "include_scales")
    rows = []
    for layer in flat_layers(model):
        weights = _counted_weights(layer)
        if not weights:
            continue
        by_bits = {}
        for w in weights:
            bits = int(getattr(w, "precision", None) or 32)
            by_bits[bits] = by_bits.get(bits, 0) + int(np.prod(w.shape.as_list()))
        scales = _scale_count(layer) if include_scales else 0
        params = sum(by_bits.values())
        bits = sum(b * n for b, n in by_bits.items()) + 32 * scales
        rows.append(dict(name=layer.name, params=params, params_by_bits=by_bits, scales=scales,
                         bits=bits, fp32_bits=32 * params, ratio=32 * params / bits))
    total_by_bits = {}
    for row in rows:
        for b, n in row["params_by_bits"].items():
            total_by_bits[b] = total_by_bits.get(b, 0) + n
    params = sum(r["params"] for r in rows)
    bits = sum(r["bits"] for r in rows)
    return dict(layers=rows, params=params, params_by_bits=dict(sorted(total_by_bits.items())),
                scales=sum(r["scales"] for r in rows), bits=bits, fp32_bits=32 * params,
                ratio=32 * params / bits if bits else float("nan"))


def compression_table(report):
    """Markdown table of a :func:`compression_ratio` report."""
    lines = ["| layer | params | 1-bit | 2-bit | float (32-bit) | scales | KiB | ratio |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]

    def row(name, r):
        b = r["params_by_bits"]
        other = sum(n for k, n in b.items() if k not in (1, 2, 32))
        fl = b.get(32, 0) + other
        return (f"| {name} | {r['params']} | {b.get(1, 0)} | {b.get(2, 0)} | {fl} | "
                f"{r['scales']} | {r['bits'] / 8192:.1f} | {r['ratio']:.1f}x |")

    lines += [row(r["name"], r) for r in report["layers"]]
    lines.append(row("**total**", report))
    return "\n".join(lines)


__all__ = ["compression_ratio", "compression_table", "SCALED_QUANTIZERS"]
