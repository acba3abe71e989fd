r"""How balanced the binarized activations are: the fraction of +1 per layer (seed 001)."""

import numpy as np

from keras_wreg._compat import keras, lq, register, tf
from keras_wreg._validation import check_finite_array, check_int
from keras_wreg.layers.fda import ThresholdSign
from keras_wreg._validation import check_dataset, check_model, validate_args


@validate_args(dataset=check_dataset)
def probe_from_dataset(dataset, max_examples=256):
    """Up to ``max_examples`` inputs from the first batches of an ``(x, y)`` ``dataset`` (the
    probe batch of the diagnostic callbacks).

    Raises:
        ValueError: for a ``max_examples`` that is not a positive int, or an empty dataset.
    """
    max_examples = check_int(max_examples, "max_examples", low=1, high=10**7)
    parts, total = [], 0
    for x, _ in dataset:
        parts.append(np.asarray(x))
        total += len(parts[-1])
        if total >= max_examples:
            break
    if not parts:
        raise ValueError("`dataset` yielded no batch to take a probe from.")
    return np.concatenate(parts)[:max_examples]


@validate_args(model=check_model)
def binarizing_layers(model):
    """Layers of ``model`` whose output is a ±1 activation: :class:`~keras_wreg.ThresholdSign`
    and 1-bit Larq quantizers used as layers (e.g. ``lq.quantizers.SteSign()(x)``).

    Quantizers applied *inside* a ``QuantConv2D`` (its ``input_quantizer``) are not separate
    layers and cannot be probed; :func:`keras_wreg.models.resnet18` always binarizes with a
    separate layer so that every variant can be measured the same way.
    """
    out = []
    for layer in model.layers:
        if isinstance(layer, ThresholdSign):
            out.append(layer)
        elif (isinstance(layer, lq.quantizers.Quantizer)
              and getattr(layer, "precision", None) == 1):
            out.append(layer)
    return out


@validate_args(model=check_model)
def activation_balance(model, x, batch_size=128):
    r"""Balance of the binarized activations of ``model`` on the inputs ``x``.

    For every binarizing layer :math:`l` with output :math:`b \in \{-1, +1\}`:

    - ``positive_fraction[l]`` :math:`= \mathrm{mean}_{n,h,w,c}\,\mathbb 1[b > 0]`
      (0.5 = balanced),
    - ``channel_imbalance[l]`` :math:`= \mathrm{mean}_c\,|p_c - \tfrac12|`, with :math:`p_c`
      the fraction of +1 of channel :math:`c` over the examples and positions (0 = every
      channel balanced, 0.5 = every channel constant).

    Returns ``{"positive_fraction": {...}, "channel_imbalance": {...}, "mean_positive_fraction":
    float, "mean_channel_imbalance": float}`` (inference mode).
    """
    batch_size = check_int(batch_size, "batch_size", low=1, high=2**20)
    x = check_finite_array(x, "x")
    layers = binarizing_layers(model)
    if not layers:
        return {"positive_fraction": {}, "channel_imbalance": {},
                "mean_positive_fraction": float("nan"), "mean_channel_imbalance": float("nan")}
    probe = keras.Model(model.inputs, [layer.output for layer in layers])
    sums = [None] * len(layers)
    counts = [0] * len(layers)
    x = np.asarray(x)
    for start in range(0, len(x), batch_size):
        outputs = probe(tf.convert_to_tensor(x[start:start + batch_size]), training=False)
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        for i, b in enumerate(outputs):
            b = tf.reshape(tf.cast(b > 0, tf.float64), (-1, b.shape[-1]))
            part = tf.reduce_sum(b, axis=0).numpy()
            sums[i] = part if sums[i] is None else sums[i] + part
            counts[i] += int(b.shape[0])
    fractions, imbalance = {}, {}
    for layer, total, count in zip(layers, sums, counts):
        p = total / count
        fractions[layer.name] = float(np.mean(p))
        imbalance[layer.name] = float(np.mean(np.abs(p - 0.5)))
    return {"positive_fraction": fractions, "channel_imbalance": imbalance,
            "mean_positive_fraction": float(np.mean(list(fractions.values()))),
            "mean_channel_imbalance": float(np.mean(list(imbalance.values())))}


class ProbeConfig:
    """Config helpers of a callback holding probe inputs (``self.probe``): in the config they
    are nested lists (``None`` when not set), back to a float32 array in ``from_config``."""

    def probe_config(self):
        return None if self.probe is None else np.asarray(self.probe).tolist()

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if config.get("probe") is not None:
            config["probe"] = np.asarray(config["probe"], dtype=np.float32)
        return cls(**config)


@register
class ActivationBalance(ProbeConfig, keras.callbacks.Callback):
    """Logs the balance of the binarized activations (:func:`activation_balance`) on a fixed
    probe batch: ``act_pos_frac`` (mean over layers of the fraction of +1) and
    ``act_imbalance`` (mean per-channel :math:`|p_c - 1/2|`) go into the epoch logs (so into
    History); the per-layer values of every epoch (index 0 = before training) are kept in
    ``self.history``.

    Args:
        probe: input array (a few hundred examples) or None; a recipe's ``fit`` sets it from the
            first training batches when None (see :meth:`set_probe`).
        every: compute every ``every`` epochs (default 1).

    Example:
        ```python
        x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
        model = keras.Sequential([keras.Input((4,)), kw.ThresholdSign(input_dependent=False),
                                  keras.layers.Dense(2)])
        model.compile("adam", "mse")
        model.fit(x, np.ones((8, 2)), verbose=0, callbacks=[kw.ActivationBalance(probe=x)])
        ```
    """

    def __init__(self, probe=None, every=1):
        super().__init__()
        self.every = check_int(every, "every", low=1, high=10**7)
        self.probe = None if probe is None else check_finite_array(probe, "probe")
        self.history = []

    def set_probe(self, x):
        self.probe = np.asarray(x)
        return self

    @validate_args(dataset=check_dataset)
    def set_probe_from_dataset(self, dataset, max_examples=256):
        """Take up to ``max_examples`` inputs from the first batches of ``(x, y)`` ``dataset``."""
        return self.set_probe(probe_from_dataset(dataset, max_examples))

    def _measure(self, epoch, logs):
        if self.probe is None:
            return
        stats = activation_balance(self.model, self.probe)
        if not stats["positive_fraction"]:  # no binarized activations (e.g. the FP twin)
            return
        self.history.append(dict(epoch=epoch, **stats))
        if logs is not None:
            logs["act_pos_frac"] = stats["mean_positive_fraction"]
            logs["act_imbalance"] = stats["mean_channel_imbalance"]

    def on_train_begin(self, logs=None):
        self.history = []
        self._measure(0, None)

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every == 0:
            self._measure(epoch + 1, logs)

    def get_config(self):
        """``every`` and the probe inputs (as nested lists, ``None`` when not set yet)."""
        return {"probe": self.probe_config(), "every": self.every}


__all__ = ["binarizing_layers", "activation_balance", "probe_from_dataset", "ActivationBalance"]
