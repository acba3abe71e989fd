"""Export of trained quantized models: the Keras model file and the deployed (quantized) weights."""

import json
from pathlib import Path

import numpy as np

from keras_wreg._introspect import latent
from keras_wreg._compat import keras, lq, tf
from keras_wreg._validation import check_model, validate_args


@validate_args(model=check_model)
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


@validate_args(model=check_model)
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
        w = tf.convert_to_tensor(latent(kernel))
        out[kernel.name.split(":")[0]] = np.asarray(quantizer(w))
    return out


_CODE_BITS = (1, 2, 4, 8)


def _codebook(values, axis_last):
    """``(codebook, codes, bits)`` if ``values`` takes at most 256 distinct values (per tensor,
    or per output channel when ``axis_last``), else None. ``codes`` index the codebook."""
    if axis_last and values.ndim >= 1:
        columns = values.reshape(-1, values.shape[-1])
        uniques = [np.unique(columns[:, c]) for c in range(columns.shape[1])]
        count = max(len(u) for u in uniques)
        if count > 256:
            return None
        bits = next(b for b in _CODE_BITS if 2 ** b >= count)
        book = np.zeros((columns.shape[1], 2 ** bits), np.float32)
        codes = np.zeros(columns.shape, np.uint8)
        for c, u in enumerate(uniques):
            book[c, : len(u)] = u
            codes[:, c] = np.searchsorted(u, columns[:, c])
        return book, codes.reshape(values.shape), bits
    unique = np.unique(values)
    if len(unique) > 256:
        return None
    bits = next(b for b in _CODE_BITS if 2 ** b >= len(unique))
    book = np.zeros(2 ** bits, np.float32)
    book[: len(unique)] = unique
    return book, np.searchsorted(unique, values).astype(np.uint8), bits


def _pack(codes, bits):
    flat = codes.ravel().astype(np.uint8)
    per_byte = 8 // bits
    flat = np.concatenate([flat, np.zeros((-len(flat)) % per_byte, np.uint8)])
    groups = flat.reshape(-1, per_byte)
    shifts = (np.arange(per_byte) * bits).astype(np.uint8)
    return np.bitwise_or.reduce(groups << shifts, axis=1).astype(np.uint8)


def _unpack(packed, bits, size):
    per_byte = 8 // bits
    shifts = (np.arange(per_byte) * bits).astype(np.uint8)
    codes = (packed[:, None] >> shifts) & np.uint8(2 ** bits - 1)
    return codes.ravel()[:size]


@validate_args(model=check_model)
def export_packed_weights(model, path):
    r"""Write the deployed weights to ``path`` (``.npz``), low-bit kernels bit-packed.

    Every kernel of a Larq quantized layer is replaced by what the layer uses (its kernel
    quantizer applied to the latent weight). A kernel that takes at most :math:`2^b` distinct
    values (per tensor, or else per output channel), :math:`b \in \{1, 2, 4, 8\}`, is stored as
    a float32 codebook plus :math:`b`-bit packed indices: 1 bit for ``ste_sign``, 1 bit + a
    per-channel pair for ``ScaledSign``, 2 bits for ternary kernels. Everything else is float32.

    Returns:
        dict: ``packed_bytes`` (codes), ``codebook_bytes``, ``float_bytes``,
        ``float32_model_bytes`` and ``compression_ratio`` (float32 size / stored size).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    quantized = quantized_kernels(model)
    arrays, manifest = {}, {"coded": [], "float": []}
    packed_bytes = book_bytes = float_bytes = total_params = 0
    for var in model.weights:
        name = var.name.split(":")[0]
        latent = np.asarray(var.numpy())
        total_params += latent.size
        key = name.replace("/", "__")
        value = quantized.get(name)
        coded = None
        if value is not None:
            coded = _codebook(value, axis_last=False) or _codebook(value, axis_last=True)
            if coded is not None and coded[2] == 8 and coded[0].ndim == 1:
                coded = None  # 8-bit codes of an unquantized-looking kernel: keep float
        if coded is not None:
            book, codes, bits = coded
            arrays[key + "__codes"] = _pack(codes, bits)
            arrays[key + "__book"] = book
            arrays[key + "__meta"] = np.asarray([bits, *value.shape], np.int64)
            manifest["coded"].append(name)
            packed_bytes += arrays[key + "__codes"].nbytes
            book_bytes += book.nbytes
        else:
            stored = (value if value is not None else latent).astype(np.float32)
            arrays[key] = stored
            manifest["float"].append(name)
            float_bytes += stored.nbytes
    arrays["__manifest__"] = np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8)
    np.savez_compressed(path, **arrays)
    size = {
        "packed_bytes": int(packed_bytes),
        "codebook_bytes": int(book_bytes),
        "float_bytes": int(float_bytes),
        "float32_model_bytes": int(4 * total_params),
    }
    size["compression_ratio"] = size["float32_model_bytes"] / max(
        1, packed_bytes + book_bytes + float_bytes)
    return size


def load_packed_weights(path):
    """Inverse of :func:`export_packed_weights`: ``{name: array}`` as the layers use them."""
    with np.load(path) as arrays:
        manifest = json.loads(arrays["__manifest__"].tobytes().decode())
        out = {}
        for name in manifest["coded"]:
            key = name.replace("/", "__")
            bits, *shape = [int(v) for v in arrays[key + "__meta"]]
            book = arrays[key + "__book"]
            codes = _unpack(arrays[key + "__codes"], bits, int(np.prod(shape))).reshape(shape)
            if book.ndim == 1:
                out[name] = book[codes]
            else:  # per output channel (last axis)
                out[name] = np.take_along_axis(book.T, codes.reshape(-1, shape[-1]), axis=0) \
                    .reshape(shape)
        for name in manifest["float"]:
            out[name] = arrays[name.replace("/", "__")]
    return out


@validate_args(model=check_model)
def model_summary_text(model):
    """Larq's ``lq.models.summary`` (bits, memory) as a string."""
    lines = []
    lq.models.summary(model, print_fn=lines.append)
    return "\n".join(lines)


__all__ = [
    "save_model", "load_model", "quantized_kernels", "export_packed_weights",
    "load_packed_weights", "model_summary_text",
]
