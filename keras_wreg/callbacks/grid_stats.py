"""How close latent weights are to the binary grid, as numbers and as a callback."""

import numpy as np

from keras_wreg._introspect import latent
from keras_wreg._compat import keras, register, tf
from keras_wreg._grid import resolve_alpha, validate_alpha
from keras_wreg._validation import check_non_negative
from keras_wreg.optimizers.wrapper import binary_kernels
from keras_wreg._validation import check_model, validate_args


@validate_args(model=check_model)
def grid_stats(model, alpha=1.0, tolerance=0.1):
    r"""Quantization statistics of the binary kernels of ``model``, pooled over all weights.

    - ``quant_error``: :math:`\mathrm{mean}\,|w - \alpha\operatorname{sign}(w)|`
    - ``near_grid``: fraction of weights with :math:`\big||w| - \alpha\big| \le tol\cdot\alpha`

    each for the given ``alpha`` and (suffix ``_channel``) for the per-channel XNOR scale
    :math:`\alpha_c = \mathrm{mean}|W_c|`, which is comparable across methods that put the
    latent weights on different scales.
    """
    alpha = validate_alpha(alpha)
    tolerance = check_non_negative(tolerance, "tolerance", high=1e3)
    kernels = binary_kernels(model)
    if not kernels:
        return {}
    out = {}
    for suffix, mode in (("", alpha), ("_channel", "channel")):
        errors, near, count = 0.0, 0.0, 0
        for var in kernels:
            w = tf.convert_to_tensor(latent(var))
            a = resolve_alpha(w, mode)
            gap = tf.abs(tf.abs(w) - a)
            errors += float(tf.reduce_sum(gap))  # |w - a sign(w)| = ||w| - a|
            near += float(tf.reduce_sum(tf.cast(gap <= tolerance * a, tf.float32)))
            count += int(np.prod(w.shape))
        out[f"quant_error{suffix}"] = errors / count
        out[f"near_grid{suffix}"] = near / count
    return out


@register
class GridStats(keras.callbacks.Callback):
    """Adds :func:`grid_stats` of the binary kernels to the epoch logs (and so to History).

    Example:
        ```python
        layer = lq.layers.QuantDense(2, kernel_quantizer="ste_sign", kernel_constraint="weight_clip")
        model = keras.Sequential([keras.Input((4,)), layer])
        model.compile("adam", "mse")
        history = model.fit(np.ones((8, 4)), np.ones((8, 2)), callbacks=[kw.GridStats()], verbose=0)
        print(history.history["near_grid"])
        ```
    """

    def __init__(self, alpha=1.0, tolerance=0.1):
        super().__init__()
        self.alpha = validate_alpha(alpha)
        self.tolerance = check_non_negative(tolerance, "tolerance", high=1e3)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update(grid_stats(self.model, self.alpha, self.tolerance))

    def get_config(self):
        return {"alpha": self.alpha, "tolerance": self.tolerance}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


__all__ = ["grid_stats", "binary_kernels", "GridStats"]
