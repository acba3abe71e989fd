r"""keras_wreg's training diagnostics as TensorBoard scalars and latent-weight histograms."""

import numpy as np

from keras_wreg._compat import keras, register, tf
from keras_wreg._grid import validate_alpha
from keras_wreg._validation import check_bool
from keras_wreg.callbacks.activation_balance import (
    ProbeConfig,
    activation_balance,
    binarizing_layers,
    probe_from_dataset,
)
from keras_wreg.callbacks.cluster import cluster_stats
from keras_wreg.callbacks.grid_stats import grid_stats
from keras_wreg.callbacks.ternary_stats import ternary_stats
from keras_wreg._introspect import latent, latent_kernels  # noqa: F401  (public here)
from keras_wreg.optimizers.wrapper import binary_kernels
from keras_wreg.quantizers.ternary import ternary_quantizers
from keras_wreg._validation import check_dataset, check_model, validate_args


def sign_flip_rate(before, after):
    """Fraction of weights whose sign differs between two lists of arrays (sign(0) = +1)."""
    flips, count = 0, 0
    for a, b in zip(before, after):
        flips += int(np.sum((np.asarray(a) >= 0) != (np.asarray(b) >= 0)))
        count += int(np.asarray(a).size)
    return flips / count if count else 0.0


@validate_args(model=check_model)
def diagnostics(model, alpha=1.0, probe=None, previous_signs=None):
    r"""Every keras_wreg diagnostic that applies to ``model``, as a flat ``{tag: float}``.

    - binary kernels (:func:`~keras_wreg.callbacks.grid_stats`): ``grid/quant_error``,
      ``grid/near_grid`` (and their ``_channel`` variants: distance to the grid and fraction
      within 10 % of it), and ``grid/sign_flip_rate`` (fraction of binary weights whose sign
      changed since ``previous_signs``, when given);
    - ternary kernels (:func:`~keras_wreg.callbacks.ternary_stats`): ``ternary/sparsity``,
      ``ternary/cosine_gap``, ``ternary/rel_quant_error``, and ``ternary/temperature`` (mean
      temperature of the :class:`~keras_wreg.RescaledSigmoidTernary` quantizers);
    - :class:`~keras_wreg.ClusterReg` layers (:func:`~keras_wreg.callbacks.cluster_stats`):
      ``cluster/usage`` (fraction of centres with at least one weight), ``cluster/mse``,
      ``cluster/dead``;
    - binarized activations (:func:`~keras_wreg.activation_balance`, needs ``probe`` inputs):
      ``activation/positive_fraction``, ``activation/channel_imbalance``.
    """
    out = {}
    kernels = binary_kernels(model)
    if kernels:
        out.update({f"grid/{k}": v for k, v in grid_stats(model, alpha=alpha).items()})
        if previous_signs is not None:
            now = [np.asarray(tf.convert_to_tensor(latent(v)))
                   for v in kernels]
            out["grid/sign_flip_rate"] = sign_flip_rate(previous_signs, now)
    stats = ternary_stats(model)
    out.update({f"ternary/{k}": float(v) for k, v in stats.items() if k != "levels_max"})
    quantizers = ternary_quantizers(model)
    if quantizers:
        out["ternary/temperature"] = float(np.mean([float(q.temperature) for q in quantizers]))
    clusters = cluster_stats(model)
    if clusters:
        usage = [1.0 - s["dead"] / len(s["centers"]) for s in clusters.values()]
        out["cluster/usage"] = float(np.mean(usage))
        out["cluster/mse"] = float(np.mean([s["mse"] for s in clusters.values()]))
        out["cluster/dead"] = float(sum(s["dead"] for s in clusters.values()))
    if probe is not None and binarizing_layers(model):
        balance = activation_balance(model, probe)
        out["activation/positive_fraction"] = balance["mean_positive_fraction"]
        out["activation/channel_imbalance"] = balance["mean_channel_imbalance"]
    return out


@register
class QuantizationTensorBoard(ProbeConfig, keras.callbacks.Callback):
    r"""Writes :func:`diagnostics` as TensorBoard scalars and the latent kernels as histograms.

    Use it next to Keras' own ``tf.keras.callbacks.TensorBoard`` (losses, metrics, graph): at
    every epoch end (and once before training, step 0) it writes, under
    ``<log_dir>/diagnostics``, the scalars of :func:`diagnostics` (tags ``grid/...``,
    ``ternary/...``, ``cluster/...``, ``activation/...``) and one histogram
    ``latent/<layer>`` per quantized or regularized kernel, at step = epoch index + 1 (a second
    ``fit`` call, as in the two-stage recipes, continues the step count).

    Args:
        log_dir: the TensorBoard log directory (the same as Keras' callback is fine).
        alpha: the grid scale of the binary statistics (as :class:`~keras_wreg.GridStats`).
        probe: inputs on which activation balance is measured (None: skip; a recipe's ``fit``
            may set it with :meth:`set_probe_from_dataset`).
        histograms: write latent-weight histograms (True).

    Raises:
        ValueError: for an empty ``log_dir``.

    Example:
        ```python
        layer = lq.layers.QuantDense(2, kernel_quantizer="ste_sign", kernel_constraint="weight_clip")
        model = keras.Sequential([keras.Input((4,)), layer])
        model.compile("adam", "mse")
        model.fit(np.ones((8, 4)), np.ones((8, 2)), verbose=0,
                  callbacks=[kw.callbacks.QuantizationTensorBoard("logs")])  # tensorboard --logdir logs
        ```
    """

    def __init__(self, log_dir, alpha=1.0, probe=None, histograms=True):
        super().__init__()
        if not str(log_dir):
            raise ValueError("`log_dir` must be a non-empty path.")
        self.log_dir = str(log_dir)
        self.alpha = validate_alpha(alpha)
        check_bool(histograms, "histograms")
        self.probe = None if probe is None else np.asarray(probe)
        self.histograms = bool(histograms)
        self._writer = None
        self._signs = None
        self._offset = 0  # epochs of earlier fit calls (multi-stage recipes continue the steps)

    def get_config(self):
        """The arguments, the probe inputs as nested lists (``None`` when not set)."""
        return {"log_dir": self.log_dir, "alpha": self.alpha, "probe": self.probe_config(),
                "histograms": self.histograms}

    @validate_args(dataset=check_dataset)
    def set_probe_from_dataset(self, dataset, max_examples=256):
        """Take up to ``max_examples`` inputs from the first ``(x, y)`` batches of ``dataset``."""
        self.probe = probe_from_dataset(dataset, max_examples)
        return self

    def _snapshot(self):
        return [np.asarray(tf.convert_to_tensor(latent(v)))
                for v in binary_kernels(self.model)]

    def _write(self, step):
        values = diagnostics(self.model, self.alpha, self.probe, self._signs)
        self._signs = self._snapshot()
        with self._writer.as_default(step=step):
            for tag, value in values.items():
                if np.isfinite(value):
                    tf.summary.scalar(tag, value)
            if self.histograms:
                for name, kernel in latent_kernels(self.model):
                    tf.summary.histogram(f"latent/{name}", tf.convert_to_tensor(kernel))
        self._writer.flush()
        return values

    def on_train_begin(self, logs=None):
        self._writer = tf.summary.create_file_writer(f"{self.log_dir}/diagnostics")
        self._signs = None
        self._epochs = 0
        if self._offset == 0:
            self._write(0)
        else:
            self._signs = self._snapshot()

    def on_epoch_end(self, epoch, logs=None):
        self._epochs = epoch + 1
        self._write(self._offset + epoch + 1)

    def on_train_end(self, logs=None):
        self._offset += self._epochs
        if self._writer is not None:
            self._writer.close()
            self._writer = None


__all__ = ["QuantizationTensorBoard", "diagnostics", "latent_kernels", "sign_flip_rate"]
