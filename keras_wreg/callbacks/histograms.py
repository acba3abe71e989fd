"""Latent-weight histograms at the start and end of training (the grid forming), as a PNG."""

import os

import numpy as np

from keras_wreg._introspect import latent
from keras_wreg._compat import keras, register, tf
from keras_wreg._grid import resolve_alpha
from keras_wreg._validation import check_choice, check_int, check_iterable, check_real, check_str
from keras_wreg.callbacks.grid_stats import binary_kernels

SCALES = ("channel", "mean", None)


def _all_kernel_values(model, scale="channel"):
    r"""Latent values of the binary kernels (else every kernel), optionally in grid units.

    ``scale="channel"`` divides each output channel by :math:`\alpha_c = \mathrm{mean}|W_c|`,
    ``"mean"`` each tensor by :math:`\mathrm{mean}|W|`, so the grid sits at :math:`\pm 1`
    whatever the layer's scale; ``None`` keeps the raw latent values.
    """
    kernels = binary_kernels(model) or [
        v for v in model.trainable_weights if "kernel" in v.name
    ]
    if not kernels:
        return np.zeros(0, np.float32)
    values = []
    for var in kernels:
        w = tf.convert_to_tensor(latent(var))
        if scale is not None:
            alpha = resolve_alpha(w, scale)
            w = w / tf.maximum(alpha, tf.cast(1e-12, w.dtype))
        values.append(np.asarray(w.numpy()).ravel())
    return np.concatenate(values)


def plot_weight_histograms(snapshots, path, title="latent weights", grid=None, bins=121,
                           xlabel="latent weight"):
    """Write a PNG with one histogram per ``(label, values)`` in ``snapshots``.

    ``grid`` (e.g. ``[-1, 1]``) draws dashed lines at the grid points.
    """
    bins = check_int(bins, "bins", low=1, high=10**5)
    title = check_str(title, "title", allow_empty=True)
    xlabel = check_str(xlabel, "xlabel", allow_empty=True)
    snapshots = check_iterable(snapshots, "snapshots", item_name="(label, values) pair",
                               min_length=1)
    grid = None if grid is None else check_iterable(grid, "grid", item_check=check_real,
                                                    item_name="number")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(snapshots), figsize=(5 * len(snapshots), 3.4), squeeze=False)
    for ax, (label, values) in zip(axes[0], snapshots):
        values = np.asarray(values).ravel()
        ax.hist(values, bins=bins, color="tab:blue", alpha=0.85)
        for g in grid or ():
            ax.axvline(g, color="tab:red", linestyle="--", linewidth=1)
        ax.set_title(f"{label} (n={values.size})")
        ax.set_xlabel(xlabel)
    axes[0][0].set_ylabel("count")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@register
class WeightHistograms(keras.callbacks.Callback):
    r"""Snapshots the binary kernels at train begin and end and writes the histograms PNG.

    By default the values are drawn in units of the per-channel grid scale,
    :math:`w/\alpha_c` with :math:`\alpha_c = \mathrm{mean}|W_c|`, so the dashed grid lines at
    :math:`\pm 1` show whether the weights reached the grid whatever its scale (``scale=None``
    draws raw latent values).

    Example:
        ```python
        layer = lq.layers.QuantDense(2, kernel_quantizer="ste_sign", kernel_constraint="weight_clip")
        model = keras.Sequential([keras.Input((4,)), layer])
        model.compile("adam", "mse")
        model.fit(np.ones((8, 4)), np.ones((8, 2)), verbose=0,
                  callbacks=[kw.callbacks.WeightHistograms("weights.png")])  # start vs end histogram
        ```
    """

    def __init__(self, path, grid=(-1.0, 1.0), title="binary latent weights", scale="channel"):
        super().__init__()
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"`path` must be a file path (str or os.PathLike), got {path!r}.")
        self.scale = check_choice(scale, SCALES, "scale")
        self.path = str(path)
        self.grid = check_iterable(grid, "grid", item_check=check_real, item_name="number") \
            if grid is not None else None
        self.grid = self.grid or None
        self.title = check_str(title, "title", allow_empty=True)
        self.start = None
        self.end = None

    def on_train_begin(self, logs=None):
        self.start = _all_kernel_values(self.model, self.scale)

    def on_train_end(self, logs=None):
        self.end = _all_kernel_values(self.model, self.scale)
        xlabel = {"channel": "latent weight / α_c (per-channel grid at ±1)",
                  "mean": "latent weight / mean|W| (grid at ±1)"}.get(self.scale, "latent weight")
        plot_weight_histograms([("start", self.start), ("end", self.end)], self.path,
                               title=self.title, grid=self.grid, xlabel=xlabel)

    def get_config(self):
        return {"path": self.path, "grid": self.grid, "title": self.title, "scale": self.scale}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


__all__ = ["WeightHistograms", "plot_weight_histograms"]
