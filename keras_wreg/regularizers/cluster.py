r"""Cluster regularizer with trainable centres (seed 004)."""

import numpy as np

from keras_wreg._introspect import latent
from keras_wreg._compat import keras, register, tf
from keras_wreg._numerics import to_float32
from keras_wreg._validation import (
    check_bool, check_choice, check_finite_array, check_int, check_non_negative, check_positive)
from keras_wreg._validation import check_model, validate_args

FORMS = ("hard", "soft", "product")
INITS = ("linear", "quantile", "kmeans++", "kmeans")

# Below this, exp(-d_min / tau) is replaced by the bound; the soft penalty's relative error is
# then below 1e-30 (see ``_soft_min``).
_TINY = 1e-30


#: most centres per layer: a 10-bit codebook (the penalty holds an (n, K) distance matrix)
MAX_CENTERS = 1024


@register
class ClusterReg(keras.layers.Layer, keras.regularizers.Regularizer):
    r"""Pull the weights of one layer into ``K`` clusters whose centres are trained too.

    Malchiodi, Ferraretto & Frasca, *Quantization-Aware Regularizers for Deep Neural Networks
    Compression*, arXiv:2602.03614 (2026). Only the abstract is public: "per-layer
    regularization terms drive weights to form clusters; the centres are network parameters
    learned by backpropagation". The penalties below are the reconstruction of ``docs/methods.md``
    [REC]. For a layer with weights :math:`w_1..w_n` and centres :math:`c_1..c_K`, with
    :math:`d_{ik} = (w_i - c_k)^2`:

    .. math::

        \text{hard (default)}\quad R &= \frac1n \sum_i \min_k d_{ik} \\
        \text{soft}\quad R &= \frac1n \sum_i -\tau \log\Bigl(1 - \prod_k
            \bigl(1 - e^{-d_{ik}/\tau}\bigr)\Bigr) \\
        \text{product}\quad R &= \frac1n \sum_i \Bigl(\prod_k d_{ik}\Bigr)^{1/K} \\
        \mathrm{loss} &\mathrel{+}= \lambda \, s \, R

    where :math:`\lambda` is ``strength`` and :math:`s\in[0, 1]` is the warm-up factor (a
    non-trainable weight, 1 unless :class:`keras_wreg.ClusterCallback` ramps it).

    The **soft** form deviates from the literal ``docs/methods.md`` soft-min
    :math:`-\tau\log\sum_k e^{-d_{ik}/\tau}`: that one is *negative* on a centre (it equals
    :math:`-\tau\log(1 + \sum_{k\neq j} e^{-d_{jk}/\tau})` there), so the quantization grid is not
    its zero set. The "noisy-or" form above is exactly 0 on every centre, positive elsewhere, and
    squeezed between the two: :math:`\min_k d - \tau\log K \le R_\text{soft} \le \min_k d`, so it
    tends to the hard form as :math:`\tau\to 0`. It is computed stably as
    :math:`R = m - \tau \log g`, :math:`m = \min_k d_k`,
    :math:`g = P + (1 - P)/e^{-m/\tau}`, :math:`P = \prod_{k \ne j}(1 - e^{-d_k/\tau})`
    (:math:`j` the nearest centre), with :math:`g \in [1, K]`.

    Gradients (per weight, before the :math:`1/n`): hard :math:`\partial R/\partial w_i =
    2(w_i - c_{j(i)})`, :math:`\partial R/\partial c_k = -2\sum_{i: j(i)=k}(w_i - c_k)` (ties
    split equally, as ``tf.reduce_min`` does); soft and product by automatic differentiation.
    The product form has an infinite slope on a centre for :math:`K > 2`; there its value and
    (sub)gradient are set to 0, so there is never a NaN. Because :math:`R` is a mean, the centre
    gradients do not grow with :math:`n`; ``center_grad_scale`` :math:`\rho` gives the centres a
    smaller learning rate: the penalty sees :math:`\rho\,c + (1-\rho)\,\mathrm{sg}(c)` (value
    :math:`c`, gradient scaled by :math:`\rho`; :math:`\mathrm{sg}` = stop-gradient).
    ``reduce="sum"`` replaces :math:`\frac1n\sum_i` by :math:`\sum_i`.

    Scale of ``strength``: with ``reduce="mean"`` the pull on one weight is
    :math:`2\lambda s (w_i - c_j)/n`, so :math:`\lambda` must grow with the layer size to
    matter next to the task loss; the ``cluster`` recipe uses ``reduce="sum"`` with
    :math:`\lambda = 10` (and 100 in the CIFAR-10 benchmark), ramped up by the callback.

    The centres are weights of this object, which is a tf-keras ``Layer``: used as
    ``kernel_regularizer=ClusterReg(4)`` it becomes a tracked sub-layer of its host, so the
    centres are in ``model.trainable_variables`` (they train), in checkpoints, in ``.keras`` files
    and in SavedModels. Create it inside ``strategy.scope()`` when training distributed (as the
    model). Use **one instance per layer** (a shared instance would share its centres).

    Centres are initialised from the host's weights by :meth:`initialize` (called by
    :class:`keras_wreg.ClusterCallback` at the start of training, or by
    :func:`keras_wreg.initialize_centers`): ``"linear"`` (evenly between min and max),
    ``"quantile"`` (the :math:`(k + \frac12)/K` quantiles), ``"kmeans++"`` (scikit-learn's
    k-means++ seeding) or ``"kmeans"`` (scikit-learn's full k-means). :meth:`reseed` replaces dead
    centres (no weight assigned) and duplicates. Pitfall: L2 weight decay acts as a hidden extra
    centre at 0; prefer no weight decay on clustered kernels.

    Args:
        num_centers: :math:`2 \le K \le 1024` (``MAX_CENTERS``).
        form: ``"hard"``, ``"soft"`` or ``"product"``.
        strength: :math:`\lambda \ge 0`.
        temperature: :math:`\tau > 0` of the soft form.
        init: centre initialisation, one of ``"linear"``, ``"quantile"``, ``"kmeans++"``,
            ``"kmeans"``.
        center_grad_scale: factor :math:`> 0` on the centres' gradient.
        reduce: ``"mean"`` (default, the :math:`\frac1n` above: strength per layer, centre
            gradients independent of :math:`n`) or ``"sum"`` (strength per weight, like Keras'
            L2; then scale the centres' gradient down with ``center_grad_scale``).
        seed: seed of the k-means initialisations.

    Raises:
        ValueError: for ``num_centers < 2``, an unknown ``form`` or ``init``, ``temperature <= 0``,
            a negative ``strength``, a non-positive ``center_grad_scale`` or an unknown
            ``reduce``.

    Example:
        ```python
        reg = kw.ClusterReg(num_centers=4)  # 4 trainable centres for this layer
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, kernel_regularizer=reg)])
        kw.initialize_centers(model)  # k-means++ on the weights
        print(reg.get_centers())
        ```
    """

    def __init__(
        self,
        num_centers=4,
        form="hard",
        strength=1.0,
        temperature=1e-3,
        init="kmeans++",
        center_grad_scale=1.0,
        reduce="mean",
        seed=0,
        **kwargs,
    ):
        num_centers = check_int(num_centers, "num_centers", low=2, high=MAX_CENTERS)
        form = check_choice(form, FORMS, "form")
        init = check_choice(init, INITS, "init")
        strength = check_non_negative(strength, "strength")
        temperature = check_positive(temperature, "temperature")
        center_grad_scale = check_positive(center_grad_scale, "center_grad_scale", high=1e3)
        reduce = check_choice(reduce, ("mean", "sum"), "reduce")
        seed = check_int(seed, "seed", low=0)
        for key in ("name", "trainable", "dtype"):  # Layer keys from older configs
            kwargs.pop(key, None)
        if kwargs:
            raise ValueError(f"Unknown arguments for ClusterReg: {sorted(kwargs)}.")
        super().__init__(dtype="float32")
        self.num_centers = int(num_centers)
        self.form = form
        self.strength = strength
        self.temperature = temperature
        self.init = init
        self.center_grad_scale = center_grad_scale
        self.reduce = reduce
        self.seed = int(seed)
        # Created here (shape known) so they exist as soon as the host layer does, under the
        # caller's distribution strategy.
        self.centers = self.add_weight(
            name="centers", shape=(self.num_centers,), dtype="float32", trainable=True,
            initializer=keras.initializers.Constant(np.linspace(-1.0, 1.0, self.num_centers)),
        )
        self.warmup = self.add_weight(
            name="warmup", shape=(), dtype="float32", trainable=False,
            initializer=keras.initializers.Constant(1.0),
        )
        self.initialized = self.add_weight(
            name="initialized", shape=(), dtype="float32", trainable=False,
            initializer=keras.initializers.Constant(0.0),
        )
        # training steps seen by ClusterCallback (its delay/warm-up clock), so that a run
        # restored from a checkpoint (BackupAndRestore) continues the schedule
        self.step = self.add_weight(
            name="step", shape=(), dtype="int64", trainable=False,
            initializer=keras.initializers.Constant(0),
        )
        self.built = True

    def load_own_variables(self, store):
        """``.keras`` loading; files written before the ``step`` counter existed hold three
        variables (centres, warm-up, initialised) and restore with ``step = 0``."""
        variables = self._trainable_weights + self._non_trainable_weights
        if len(store.keys()) == len(variables) - 1:
            for i, v in enumerate(v for v in variables if v is not self.step):
                v.assign(store[f"{i}"])
            self.step.assign(0)
            return
        super().load_own_variables(store)

    # -- penalty ---------------------------------------------------------------------
    def _centers_for_grad(self):
        c = tf.convert_to_tensor(self.centers)
        if self.center_grad_scale != 1.0:
            s = self.center_grad_scale
            c = s * c + (1.0 - s) * tf.stop_gradient(c)
        return c

    def pointwise(self, w, centers=None):
        """The unreduced, unscaled penalty of every weight (flattened)."""
        w = tf.convert_to_tensor(w)
        if not w.dtype.is_floating:
            raise ValueError(f"ClusterReg needs floating-point weights, got {w.dtype.name}.")
        w = tf.reshape(tf.cast(to_float32(w), tf.float32), (-1, 1))
        c = self._centers_for_grad() if centers is None else tf.cast(centers, tf.float32)
        d = tf.square(w - tf.reshape(c, (1, -1)))  # (n, K)
        if self.form == "hard":
            return tf.reduce_min(d, axis=1)
        if self.form == "soft":
            return _soft_min(d, self.temperature)
        return _geometric_mean(d)

    def penalty(self, w):
        """:math:`R(w)`: the mean (or sum) pointwise penalty, without strength and warm-up."""
        r = self.pointwise(w)
        return tf.reduce_mean(r) if self.reduce == "mean" else tf.reduce_sum(r)

    def __call__(self, w):
        # Bypasses Layer.__call__: a regularizer is called on a weight, not on layer inputs.
        return (self.strength * tf.convert_to_tensor(self.warmup)) * self.penalty(w)

    def call(self, w):
        return self.penalty(w)

    # -- eager helpers ---------------------------------------------------------------
    def get_centers(self):
        """The centres as a numpy array."""
        return np.asarray(self.centers.numpy(), dtype=np.float32)

    def assign(self, w):
        """Index of the nearest centre of every weight (numpy, same shape as ``w``)."""
        w = np.asarray(w, dtype=np.float32)
        c = self.get_centers()
        return np.argmin(np.abs(w[..., None] - c), axis=-1)

    def snapped(self, w):
        """``w`` with every weight replaced by its nearest centre (numpy)."""
        return self.get_centers()[self.assign(w)].astype(np.asarray(w).dtype)

    def initialize(self, w, method=None, force=False):
        """Set the centres from the weights ``w`` (once, unless ``force``); returns them."""
        force = check_bool(force, "force")
        if float(self.initialized.numpy()) > 0 and not force:
            return self.get_centers()
        method = check_choice(method or self.init, INITS, "method")
        centers = initial_centers(w, self.num_centers, method=method, seed=self.seed)
        self.centers.assign(centers)
        self.initialized.assign(1.0)
        return self.get_centers()

    def reseed(self, w, min_count=1, duplicate_tol=1e-3):
        """Move dead centres (fewer than ``min_count`` weights) and duplicates.

        A centre closer than ``duplicate_tol * (max(w) - min(w))`` to a lower-indexed one counts
        as a duplicate. Each moved centre goes to the weight currently worst served (the largest
        distance to its nearest centre), which is the k-means++ choice with the maximum instead of
        sampling. Returns the indices of the moved centres.
        """
        min_count = check_int(min_count, "min_count", low=1)
        duplicate_tol = check_non_negative(duplicate_tol, "duplicate_tol", high=1.0)
        w = np.asarray(w, dtype=np.float32).ravel()
        c = self.get_centers().copy()
        span = float(w.max() - w.min()) if w.size else 0.0
        moved = []
        counts = np.bincount(np.argmin(np.abs(w[:, None] - c), axis=1), minlength=c.size)
        for k in range(c.size):
            duplicate = any(abs(c[k] - c[j]) <= duplicate_tol * span for j in range(k))
            if counts[k] < min_count or duplicate:
                others = np.delete(c, k)  # holds the centres moved so far at their new place
                dist = np.min(np.abs(w[:, None] - others[None, :]), axis=1)
                c[k] = w[int(np.argmax(dist))]
                moved.append(k)
        if moved:
            self.centers.assign(c)
        return moved

    def get_config(self):
        return {
            "num_centers": self.num_centers,
            "form": self.form,
            "strength": self.strength,
            "temperature": self.temperature,
            "init": self.init,
            "center_grad_scale": self.center_grad_scale,
            "reduce": self.reduce,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _soft_min(d, tau):
    """Noisy-or soft minimum of the rows of ``d`` (see :class:`ClusterReg`), NaN-free."""
    k = tf.shape(d)[1]
    m = tf.reduce_min(d, axis=1, keepdims=True)
    nearest = tf.equal(tf.range(k, dtype=tf.int64)[None, :], tf.argmin(d, axis=1)[:, None])
    e_min = tf.maximum(tf.exp(-m / tau), _TINY)  # exp(-m/tau) clamped away from 0
    u = tf.exp(-(d - m) / tau)  # in (0, 1], 1 at the nearest centre
    a = tf.where(nearest, tf.zeros_like(d), tf.minimum(e_min * u, 1.0 - 1e-6))
    log_p = tf.reduce_sum(tf.math.log1p(-a), axis=1, keepdims=True)
    p = tf.exp(log_p)
    g = p - tf.math.expm1(log_p) / e_min  # P + (1 - P) / e_min, in [1, K]
    return tf.squeeze(m - tau * tf.math.log(g), axis=1)


def _geometric_mean(d):
    """``(prod_k d_k)^(1/K)`` per row; value and gradient 0 where some ``d_k == 0``."""
    on_center = tf.reduce_any(tf.equal(d, 0.0), axis=1)
    safe = tf.where(tf.equal(d, 0.0), tf.ones_like(d), d)
    value = tf.exp(tf.reduce_mean(tf.math.log(safe), axis=1))
    return tf.where(on_center, tf.zeros_like(value), value)


def initial_centers(w, num_centers, method="kmeans++", seed=0, max_samples=20000):
    r"""``num_centers`` sorted initial centres for the values ``w`` (numpy float32).

    ``"linear"``: evenly spaced between min and max; ``"quantile"``: the
    :math:`(k + \\frac12)/K` quantiles; ``"kmeans++"``: scikit-learn's ``kmeans_plusplus``
    seeding; ``"kmeans"``: scikit-learn's ``KMeans`` (k-means++ start, 3 restarts). k-means runs
    on at most ``max_samples`` values drawn without replacement. Duplicates (fewer distinct
    values than centres) are spread evenly so that the centres stay distinct.
    """
    check_choice(method, INITS, "method")
    num_centers = check_int(num_centers, "num_centers", low=2, high=MAX_CENTERS)
    seed = check_int(seed, "seed", low=0)
    max_samples = check_int(max_samples, "max_samples", low=num_centers)
    w = check_finite_array(w, "w").astype(np.float64).ravel()
    if w.size == 0:
        raise ValueError("`w` is empty: cannot initialise centres.")
    lo, hi = float(w.min()), float(w.max())
    if method == "linear":
        c = np.linspace(lo, hi, num_centers)
    elif method == "quantile":
        c = np.quantile(w, (np.arange(num_centers) + 0.5) / num_centers)
    else:
        from sklearn.cluster import KMeans, kmeans_plusplus

        rng = np.random.default_rng(seed)
        x = w if w.size <= max_samples else rng.choice(w, max_samples, replace=False)
        x = x.reshape(-1, 1)
        if np.unique(x).size < num_centers:
            c = np.linspace(lo, hi, num_centers)
        elif method == "kmeans++":
            c, _ = kmeans_plusplus(x, num_centers, random_state=seed)
            c = c.ravel()
        else:
            c = KMeans(num_centers, n_init=3, random_state=seed).fit(x).cluster_centers_.ravel()
    c = np.sort(np.asarray(c, dtype=np.float64))
    if np.unique(c).size < num_centers:  # e.g. quantiles of a tensor with few values
        span = max(hi - lo, 1e-3)
        c = c + np.linspace(-0.5, 0.5, num_centers) * span / num_centers
    return c.astype(np.float32)


# Host-layer attribute holding a regularizer -> attribute holding the regularized weight.
_REGULARIZED = {
    "kernel_regularizer": "kernel",
    "depthwise_regularizer": "depthwise_kernel",
    "pointwise_regularizer": "pointwise_kernel",
    "bias_regularizer": "bias",
    "embeddings_regularizer": "embeddings",
}


@validate_args(model=check_model)
def clustered_weights(model):
    """``[(layer, weight, regularizer)]`` for every weight regularized by a :class:`ClusterReg`.

    For Larq layers with a kernel quantizer the weight is the latent (full-precision) variable.
    A :class:`~keras_wreg.quantizers.ClusterQuantizer` of such a layer is (re)bound to the
    layer's regularizer on the way (``from_config`` and ``clone_model`` deserialize them apart).
    """
    found = []
    for layer in model.submodules:
        if isinstance(layer, ClusterReg) or not isinstance(layer, keras.layers.Layer):
            continue
        for reg_attr, weight_attr in _REGULARIZED.items():
            reg = getattr(layer, reg_attr, None)
            weight = getattr(layer, weight_attr, None)
            if isinstance(reg, ClusterReg) and weight is not None:
                # Larq QuantizedVariable: cluster (and snap) the latent, full-precision weight
                found.append((layer, latent(weight), reg))
                _bind_quantizer(getattr(layer, reg_attr.replace("_regularizer", "_quantizer"),
                                        None), reg)
    return found


def _bind_quantizer(quantizer, reg):
    """Re-bind a :class:`keras_wreg.quantizers.ClusterQuantizer` (duck-typed: it has ``bind``
    and ``for_regularizer``) to its host's regularizer, e.g. after ``from_config``."""
    if hasattr(quantizer, "for_regularizer") and callable(getattr(quantizer, "bind", None)) \
            and getattr(quantizer, "regularizer", None) is not reg:
        quantizer.bind(reg)


@validate_args(model=check_model)
def initialize_centers(model, method=None, force=False):
    """Initialise the centres of every :class:`ClusterReg` in ``model`` from its weight.

    Regularizers already initialised (e.g. restored from a file) are left alone unless
    ``force``. Returns ``{layer name: centres}``.
    """
    if method is not None:
        check_choice(method, INITS, "method")
    check_bool(force, "force")
    return {layer.name: reg.initialize(weight.numpy(), method=method, force=force)
            for layer, weight, reg in clustered_weights(model)}


@validate_args(model=check_model)
def snap_weights(model):
    """Replace every clustered weight by its nearest centre, in place.

    Returns ``{layer name: number of distinct values after the snap}``.
    """
    out = {}
    for layer, weight, reg in clustered_weights(model):
        snapped = reg.snapped(weight.numpy())
        weight.assign(snapped)
        out[layer.name] = int(np.unique(snapped).size)
    return out


__all__ = ["ClusterReg", "initial_centers", "clustered_weights", "initialize_centers",
           "snap_weights"]
