r"""How ternary the kernels of a model are: sparsity and distance to the ternary projection."""

import numpy as np

from keras_wreg._compat import keras, register, tf
from keras_wreg.quantizers.ternary import (
    validate_threshold,
    ternary_pattern,
    ternary_scale,
    ternary_threshold,
)
from keras_wreg._introspect import quantizer_name
from keras_wreg._validation import check_model, validate_args

_TERNARY_NAMES = ("rescaledsigmoidternary", "stetern")


@validate_args(model=check_model)
def ternary_layers(model):
    """Layers of ``model`` whose kernel quantizer is ternary (ours or Larq's ``ste_tern``)."""
    out = []
    stack = list(getattr(model, "layers", []))
    while stack:
        layer = stack.pop(0)
        stack.extend(getattr(layer, "layers", []))
        q = getattr(layer, "kernel_quantizer", None)
        if q is None or getattr(layer, "kernel", None) is None:
            continue
        if quantizer_name(q) in _TERNARY_NAMES:
            out.append(layer)
    return out


def quantized_kernel(layer):
    """The kernel as the layer uses it in the forward pass (after its kernel quantizer)."""
    return layer.kernel_quantizer(tf.convert_to_tensor(layer.kernel))


@validate_args(model=check_model)
def ternary_stats(model, delta=0.7):
    r"""Pooled statistics of the ternary kernels of ``model``:

    - ``sparsity``: fraction of zeros in the *quantized* kernels (what is deployed);
    - ``levels_max``: the largest number of distinct values in one quantized kernel (<= 3);
    - ``cosine_gap``: mean over kernels of :math:`1-\cos(W, t)` of the latent weights and their
      TWN pattern (:math:`\Delta = \delta\,\mathrm{mean}|W|`);
    - ``rel_quant_error``: :math:`\|W - \alpha t\|_2 / \|W\|_2` pooled over kernels.
    """
    delta, _ = validate_threshold(delta, None)
    layers = ternary_layers(model)
    if not layers:
        return {}
    zeros, count, levels, gaps, err2, norm2 = 0, 0, 0, [], 0.0, 0.0
    for layer in layers:
        q = quantized_kernel(layer).numpy()
        zeros += int(np.sum(q == 0))
        count += q.size
        levels = max(levels, len(np.unique(q)))
        w = tf.reshape(tf.convert_to_tensor(layer.kernel), [-1])
        t = ternary_pattern(w, ternary_threshold(w, delta))
        alpha = ternary_scale(w, t)
        w, t, alpha = w.numpy().astype(np.float64), t.numpy(), float(alpha)
        nw, nt = np.linalg.norm(w), np.linalg.norm(t)
        gaps.append(1.0 - float(w @ t) / (nw * nt) if nw > 0 and nt > 0 else 0.0)
        err2 += float(np.sum((w - alpha * t) ** 2))
        norm2 += float(np.sum(w ** 2))
    return {
        "sparsity": zeros / count,
        "levels_max": levels,
        "cosine_gap": float(np.mean(gaps)),
        "rel_quant_error": float(np.sqrt(err2 / norm2)) if norm2 > 0 else 0.0,
    }


@register
class TernaryStats(keras.callbacks.Callback):
    """Adds :func:`ternary_stats` of the model to the epoch logs (and so to History).

    Example:
        ```python
        layer = lq.layers.QuantDense(2, kernel_quantizer="ste_tern")
        model = keras.Sequential([keras.Input((4,)), layer])
        model.compile("adam", "mse")
        history = model.fit(np.ones((8, 4)), np.ones((8, 2)), verbose=0,
                            callbacks=[kw.callbacks.TernaryStats()])
        print(history.history["ternary_sparsity"])
        ```
    """

    def __init__(self, delta=0.7):
        super().__init__()
        self.delta, _ = validate_threshold(delta, None)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            stats = ternary_stats(self.model, self.delta)
            logs.update({f"ternary_{k}": v for k, v in stats.items()})

    def get_config(self):
        return {"delta": self.delta}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


__all__ = ["ternary_stats", "ternary_layers", "quantized_kernel", "TernaryStats"]
