r"""Forward pass through the cluster centres, trained by the task loss (seed 004, issue 16).

The penalty of :class:`keras_wreg.ClusterReg` alone gives the centres gradient only from the
penalty; TF-MOT's ``cluster_weights`` and DKM (Cho et al., *DKM: Differentiable k-Means
Clustering Layer for Neural Network Compression*, ICLR 2022) let the task loss move them by
running the forward pass on the clustered weights. :class:`ClusterQuantizer` does that for a
Larq layer whose kernel is regularized by a ``ClusterReg``: it reads the centres of that
regularizer (one set of centres per layer, owned by the regularizer, a Layer).
"""

import math

from keras_wreg._compat import BaseQuantizer, keras, register_quantizer, tf
from keras_wreg._validation import check_bool, check_choice, check_positive
from keras_wreg.regularizers.cluster import ClusterReg
from keras_wreg._validation import check_model, validate_args

MODES = ("hard", "soft")


class _Ref:
    """A plain holder: keeps the regularizer reachable without Keras tracking it twice (the host
    layer already tracks it as its ``kernel_regularizer``)."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


class ClusterQuantizer(BaseQuantizer):
    r"""Replace every weight by a cluster centre in the forward pass; the task loss trains the
    centres.

    With :math:`c_1..c_K` the centres of the layer's :class:`~keras_wreg.ClusterReg` and
    :math:`a \in \{0, 1\}` the ``active`` switch (a non-trainable variable, 0 until
    :class:`keras_wreg.ClusterCallback` turns the phase on):

    .. math::

        a = 0:&\quad q(w) = w \\
        \text{hard}:&\quad j(i) = \arg\min_k |w_i - c_k|,\quad q_i = c_{j(i)},\quad
            \frac{\partial L}{\partial w_i} = \frac{\partial L}{\partial q_i}\ \text{(STE)},
            \quad \frac{\partial L}{\partial c_k} = \sum_{i:\,j(i)=k}
            \frac{\partial L}{\partial q_i} \\
        \text{soft}:&\quad p_{ik} = \operatorname{softmax}_k\Bigl(-\frac{(w_i - c_k)^2}
            {\tau\,\bar\Delta^2}\Bigr),\quad q_i = \sum_k p_{ik}\,c_k

    where :math:`\bar\Delta = (\max_k c_k - \min_k c_k)/(K-1)` (the mean
    centre spacing, so :math:`\tau` is scale-free) and the soft gradients are exact (DKM, by
    automatic differentiation, through :math:`\bar\Delta` too); as
    :math:`\tau \to 0` the soft form tends to the hard one. The hard output is computed as
    :math:`c_{j(i)} + (w_i - \mathrm{sg}(w_i))`, which equals :math:`c_{j(i)}` bit for bit, with
    the nearest centre chosen as :meth:`ClusterReg.assign` chooses it: a model trained in the
    hard phase and then snapped (:func:`keras_wreg.snap_weights`,
    :func:`keras_wreg.strip_clustering`) gives exactly the same outputs (no snap drop).

    Usage (one quantizer per layer, bound to that layer's regularizer; the keras_wreg model
    builders do it for a template ``ClusterQuantizer()``)::

        reg = ClusterReg(4)
        lq.layers.QuantConv2D(64, 3, kernel_regularizer=reg,
                              kernel_quantizer=ClusterQuantizer(reg))

    The regularizer is held, not tracked: the host tracks it. ``.keras`` files keep the pair
    (tf-keras restores an object serialized twice as one instance); after ``from_config`` or
    ``clone_model`` (no sharing), :func:`bind_cluster_quantizers` (called by every keras_wreg
    clustering helper and by :class:`~keras_wreg.ClusterCallback`) re-binds each quantizer to its
    host's regularizer.

    Args:
        regularizer: the layer's :class:`~keras_wreg.ClusterReg`, or None for a template.
        mode: ``"hard"`` (nearest centre, STE) or ``"soft"`` (softmax assignment).
        temperature: :math:`\tau > 0` of the soft mode (a variable; annealed by the callback).
        active: initial state of the switch (False: identity).
        metrics: Larq quantizer metrics.

    Raises:
        ValueError: for an unknown ``mode``, ``temperature <= 0``, a non-bool ``active`` or a
            ``regularizer`` that is not a ``ClusterReg``; calling an unbound quantizer.

    Example:
        ```python
        reg = kw.ClusterReg(num_centers=4)
        layer = lq.layers.QuantDense(8, kernel_regularizer=reg, kernel_quantizer=kw.ClusterQuantizer(reg))
        model = keras.Sequential([keras.Input((4,)), layer])
        ```
    """

    @property
    def precision(self):
        r"""Bits per weight for Larq's model summary: a bound quantizer's kernel is stored as a
        codebook index, :math:`\lceil\log_2 K\rceil` bits; a template (unbound) reports 32."""
        reg = self._ref.value if hasattr(self, "_ref") else None
        if reg is None:
            return 32
        return max(1, int(math.ceil(math.log2(reg.num_centers))))

    def __init__(self, regularizer=None, mode="hard", temperature=0.1, active=False, **kwargs):
        if isinstance(regularizer, dict):
            regularizer = keras.regularizers.get(regularizer)
        if regularizer is not None and not isinstance(regularizer, ClusterReg):
            raise ValueError(f"`regularizer` must be None or a ClusterReg, got {regularizer!r}.")
        self.mode = check_choice(mode, MODES, "mode")
        temperature = check_positive(temperature, "temperature")
        active = check_bool(active, "active")
        super().__init__(**kwargs)
        self._ref = _Ref(regularizer)
        self._active = self.add_weight(
            name="active", shape=(), dtype="float32", trainable=False,
            initializer=keras.initializers.Constant(float(active)))
        self._temperature = self.add_weight(
            name="temperature", shape=(), dtype="float32", trainable=False,
            initializer=keras.initializers.Constant(temperature))

    # -- state ---------------------------------------------------------------------
    @property
    def regularizer(self):
        """The bound :class:`~keras_wreg.ClusterReg` (None for a template)."""
        return self._ref.value

    def bind(self, regularizer):
        """Read the centres of ``regularizer`` (a ClusterReg) from now on; returns self."""
        if not isinstance(regularizer, ClusterReg):
            raise ValueError(f"`regularizer` must be a ClusterReg, got {regularizer!r}.")
        self._ref.value = regularizer
        return self

    def for_regularizer(self, regularizer):
        """A copy of this quantizer (mode, temperature, switch) bound to ``regularizer``: what a
        model builder gives each layer when a template is passed as ``kernel_quantizer``."""
        config = self.get_config()
        config.pop("regularizer", None)
        return type(self)(regularizer, **{k: v for k, v in config.items()
                                          if k in ("mode", "temperature", "active", "metrics")})

    @property
    def active(self):
        """The switch variable (1.0: forward through the centres)."""
        return self._active

    @property
    def temperature(self):
        r"""The variable holding :math:`\\tau`."""
        return self._temperature

    def set_active(self, value):
        """Turn the centre forward pass on (True) or off (False)."""
        self._active.assign(1.0 if check_bool(value, "active") else 0.0)

    def set_temperature(self, value):
        r"""Assign :math:`\\tau` (> 0)."""
        self._temperature.assign(check_positive(value, "temperature"))

    # -- forward ---------------------------------------------------------------------
    def quantize(self, w):
        """The clustered weights (the active branch), whatever the switch."""
        reg = self.regularizer
        if reg is None:
            raise ValueError("ClusterQuantizer is not bound to a ClusterReg: pass the layer's "
                             "regularizer, or call keras_wreg.bind_cluster_quantizers(model).")
        w = tf.convert_to_tensor(w)
        c = tf.cast(tf.convert_to_tensor(reg.centers), w.dtype)
        if self.mode == "hard":
            j = tf.argmin(tf.abs(w[..., None] - c), axis=-1)
            return _lookup(c, j) + (w - tf.stop_gradient(w))
        k = c.shape[0]
        spacing = (tf.reduce_max(c) - tf.reduce_min(c)) / (k - 1)
        scale = tf.cast(self._temperature, w.dtype) * tf.maximum(tf.square(spacing), 1e-12)
        p = tf.nn.softmax(-tf.square(w[..., None] - c) / scale, axis=-1)
        return tf.reduce_sum(p * c, axis=-1)

    def call(self, inputs):
        inputs = tf.convert_to_tensor(inputs)
        if self.regularizer is None:
            raise ValueError("ClusterQuantizer is not bound to a ClusterReg: pass the layer's "
                             "regularizer, or call keras_wreg.bind_cluster_quantizers(model).")
        outputs = tf.cond(self._active > 0.5, lambda: self.quantize(inputs),
                          lambda: tf.identity(inputs))
        super().call(outputs)
        return outputs

    def get_config(self):
        reg = self.regularizer
        return {
            **super().get_config(),
            "regularizer": None if reg is None else keras.regularizers.serialize(reg),
            "mode": self.mode,
            "temperature": float(keras.backend.get_value(self._temperature)),
            "active": bool(keras.backend.get_value(self._active) > 0.5),
        }


@tf.custom_gradient
def _lookup(centers, index):
    """``centers[index]`` with a dense gradient (a segment sum): ``tf.gather`` would hand the
    optimizer ``IndexedSlices`` with repeated indices, for which Adam's second moment sums the
    squares of the parts instead of squaring their sum."""
    def grad(dy):
        flat = tf.reshape(dy, [-1])
        return tf.math.unsorted_segment_sum(flat, tf.reshape(index, [-1]),
                                            tf.shape(centers)[0]), None

    return tf.gather(centers, index), grad


ClusterQuantizer = register_quantizer(ClusterQuantizer, "cluster_quantizer")

_KERNEL_ATTRS = (("kernel_quantizer", "kernel_regularizer"),
                 ("depthwise_quantizer", "depthwise_regularizer"),
                 ("pointwise_quantizer", "pointwise_regularizer"))


@validate_args(model=check_model)
def cluster_quantizers(model):
    """``[(layer, quantizer)]`` for every :class:`ClusterQuantizer` of the layers of ``model``."""
    found, seen = [], set()
    for layer in model.submodules:
        for q_attr, _ in _KERNEL_ATTRS:
            q = getattr(layer, q_attr, None)
            if isinstance(q, ClusterQuantizer) and id(q) not in seen:
                seen.add(id(q))
                found.append((layer, q))
    return found


@validate_args(model=check_model)
def bind_cluster_quantizers(model):
    """Bind every :class:`ClusterQuantizer` of ``model`` to its own layer's ``ClusterReg``.

    Needed after ``from_config`` / ``clone_model`` (which deserialize the quantizer's and the
    layer's regularizer separately); ``.keras`` loading keeps them bound. Returns the number of
    quantizers (re)bound.

    Raises:
        ValueError: for a ClusterQuantizer on a layer without a ClusterReg.
    """
    changed = 0
    for layer in model.submodules:
        for q_attr, r_attr in _KERNEL_ATTRS:
            q = getattr(layer, q_attr, None)
            if not isinstance(q, ClusterQuantizer):
                continue
            reg = getattr(layer, r_attr, None)
            if not isinstance(reg, ClusterReg):
                raise ValueError(f"Layer {layer.name!r} has a ClusterQuantizer but its "
                                 f"`{r_attr}` is {reg!r}, not a ClusterReg.")
            if q.regularizer is not reg:
                q.bind(reg)
                changed += 1
    return changed


@validate_args(model=check_model)
def set_cluster_phase(model, active=True, temperature=None):
    r"""Switch every :class:`ClusterQuantizer` of ``model`` on or off (and set :math:`\\tau`)."""
    active = check_bool(active, "active")
    if temperature is not None:
        temperature = check_positive(temperature, "temperature")
    quantizers = [q for _, q in cluster_quantizers(model)]
    for q in quantizers:
        q.set_active(active)
        if temperature is not None:
            q.set_temperature(temperature)
    return len(quantizers)


__all__ = ["ClusterQuantizer", "cluster_quantizers", "bind_cluster_quantizers",
           "set_cluster_phase", "MODES"]
