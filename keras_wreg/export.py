"""Export of trained quantized models: the Keras model file and the deployed (quantized) weights."""

import json
from pathlib import Path

import numpy as np

from keras_wreg._compat import keras, lq, tf


def save_model(model, path):
    """Save ``model`` as a ``.keras`` file (custom objects are registered, so it reloads)."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"`path` must end with .keras, got {str(path)!r}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


def load_model(path):
    """Load a model saved by :func:`save_model` (importing keras_wreg registers its objects)."""
    return keras.models.load_model(path)


def quantized_kernels(model):
    """``{variable name: the kernel as the layer uses it}`` for every Larq quantized layer.

    The value is the kernel quantizer applied to the latent weight (e.g. ``±1`` for
    ``ste_sign``), i.e. what an inference engine would store.
    """
    out = {}
    for layer in model.layers:
        quantizer = getattr(layer, "kernel_quantizer", None)
        kernel = getattr(layer, "kernel", None)
        if quantizer is None or kernel is None:
            continue
        latent = tf.convert_to_tensor(getattr(kernel, "latent_variable", kernel))
        out[kernel.name.split(":")[0]] = np.asarray(quantizer(latent))
    return out


def export_packed_weights(model, path):
    """Write the deployed weights to ``path`` (``.npz``): binary kernels bit-packed, rest float32.

    Kernels whose quantized values are exactly ``{-1, +1}`` are stored as ``np.packbits`` of
    ``w > 0`` (1 bit per weight) with their shape; every other weight as float32. Returns a dict
    with the sizes in bytes (``binary_bytes``, ``float_bytes``, ``float32_model_bytes``) and the
    compression ratio.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    quantized = quantized_kernels(model)
    arrays, manifest = {}, {"binary": [], "float": []}
    binary_bytes = float_bytes = total_params = 0
    for var in model.weights:
        name = var.name.split(":")[0]
        value = quantized.get(name)
        latent = np.asarray(var.numpy())
        total_params += latent.size
        key = name.replace("/", "__")
        if value is not None and np.all(np.abs(value) == 1.0):
            packed = np.packbits((value > 0).ravel())
            arrays[key + "__bits"] = packed
            arrays[key + "__shape"] = np.asarray(value.shape, np.int64)
            manifest["binary"].append(name)
            binary_bytes += packed.nbytes
        else:
            stored = (value if value is not None else latent).astype(np.float32)
            arrays[key] = stored
            manifest["float"].append(name)
            float_bytes += stored.nbytes
    arrays["__manifest__"] = np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8)
    np.savez_compressed(path, **arrays)
    size = {
        "binary_bytes": int(binary_bytes),
        "float_bytes": int(float_bytes),
        "float32_model_bytes": int(4 * total_params),
    }
    size["compression_ratio"] = size["float32_model_bytes"] / max(1, binary_bytes + float_bytes)
    return size


def load_packed_weights(path):
    """Inverse of :func:`export_packed_weights`: ``{name: array}`` with binary kernels as ±1."""
    with np.load(path) as arrays:
        manifest = json.loads(arrays["__manifest__"].tobytes().decode())
        out = {}
        for name in manifest["binary"]:
            key = name.replace("/", "__")
            shape = tuple(arrays[key + "__shape"])
            bits = np.unpackbits(arrays[key + "__bits"])[: int(np.prod(shape))]
            out[name] = (bits.astype(np.float32) * 2 - 1).reshape(shape)
        for name in manifest["float"]:
            out[name] = arrays[name.replace("/", "__")]
    return out


def model_summary_text(model):
    """Larq's ``lq.models.summary`` (bits, memory) as a string."""
    lines = []
    lq.models.summary(model, print_fn=lines.append)
    return "\n".join(lines)


__all__ = [
    "save_model", "load_model", "quantized_kernels", "export_packed_weights",
    "load_packed_weights", "model_summary_text",
]
