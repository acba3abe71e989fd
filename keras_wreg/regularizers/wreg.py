r"""W-shaped, position-dependent regularizer for binary weights (seed 000)."""

from keras_wreg._introspect import latent
from keras_wreg._compat import keras, register, tf
from keras_wreg._grid import distance_to_grid, resolve_alpha, validate_alpha
from keras_wreg._numerics import saturate_cast, to_float32
from keras_wreg._validation import (
    check_choice, check_iterable, check_model, check_non_negative, validate_args)

_BRANCHES = ("l1", "l2")
_REDUCTIONS = ("mean", "sum")


@register
class WReg(keras.regularizers.Regularizer):
    r"""W-regularizer: a W-shaped penalty with minima at :math:`\pm\alpha`.

    Different pieces of the curve act on weights at different positions
    (Liu & Chen, *A Binary Quantization Method Incorporating W-regularization and Variational
    Cosine Momentum*, 2023; ICCC 2022). The exact formula is not published; this is the
    reconstruction of ``docs/methods.md`` built on BNN+ (Darabi et al., 2018):

    .. math::

        R(w) = \begin{cases}
            a \, (\alpha - |w|)^{p_\mathrm{in}}  & |w| < \alpha
                \quad\text{(inner branch: push outward)}\\
            b \, (|w| - \alpha)^{p_\mathrm{out}} & |w| > \alpha
                \quad\text{(tail branch: pull back)}\\
            0 & |w| = \alpha
        \end{cases}

        \mathrm{penalty}(W) = \lambda \cdot \operatorname{reduce}_i R(w_i)

    with :math:`p = 1` for ``"l1"`` and :math:`p = 2` for ``"l2"``. Both ``"l1"`` is BNN+'s
    :math:`R_1 = |\alpha - |w||`, both ``"l2"`` is BNN+'s :math:`R_2 = (\alpha - |w|)^2`.
    The penalty is continuous, zero on the grid and (for the inner branch) largest at 0.

    Gradient (per weight, before reduction): :math:`-a\,p_\mathrm{in}(\alpha-|w|)^{p_\mathrm{in}-1}
    \operatorname{sign}(w)` inside, :math:`b\,p_\mathrm{out}(|w|-\alpha)^{p_\mathrm{out}-1}
    \operatorname{sign}(w)` in the tail; the sub-gradient used at the kinks :math:`w = 0` and
    :math:`|w| = \alpha` is 0, so there is never a NaN.

    Args:
        strength: :math:`\lambda \ge 0` (default 3e-7 with ``reduce="sum"``: chosen on a
            held-out CIFAR-10 split, see ``benchmarks/RESULTS.md``; 3e-6 and more cost accuracy
            at short schedules).
        alpha: grid scale: ``"channel"`` (default; :math:`\mathrm{mean}|W_c|` per output
            channel, last axis, the XNOR scale), ``"mean"`` (:math:`\mathrm{mean}|W|` of the
            tensor) or a positive number (``1.0`` matches ``ste_sign``'s :math:`\pm 1`);
            data-dependent scales are held constant (stop-gradient).
        inner: ``"l1"`` or ``"l2"``, the shape of the branch :math:`|w| < \alpha`.
        outer: ``"l1"`` or ``"l2"``, the shape of the tail branch :math:`|w| > \alpha`.
        inner_weight: :math:`a \ge 0`.
        outer_weight: :math:`b \ge 0`.
        reduce: ``"sum"`` (default; strength per weight, like Keras' L1/L2) or ``"mean"``
            (strength per layer, independent of its size).

    Raises:
        ValueError: for a negative strength or weight, a non-positive alpha or an unknown option.

    Pitfalls: Larq's ``weight_clip`` constrains weights to :math:`[-1, 1]`, which makes the tail
    branch dead when :math:`\alpha = 1`; use a wider clip (e.g. ``WeightClip(2.0)``) or none.
    L2 weight decay pulls towards 0 and fights the :math:`\pm\alpha` attractor.

    Example:
        ```python
        reg = kw.WReg(strength=1e-6, alpha="channel")  # W-shaped pull to +-alpha_c
        conv = lq.layers.QuantConv2D(16, 3, kernel_quantizer="ste_sign", kernel_regularizer=reg)
        print(float(reg(tf.constant([[-1.0, 0.2, 1.0]]))))
        ```
    """

    def __init__(
        self,
        strength=3e-7,
        alpha="channel",
        inner="l1",
        outer="l2",
        inner_weight=1.0,
        outer_weight=1.0,
        reduce="sum",
    ):
        self.strength = check_non_negative(strength, "strength")
        self.alpha = validate_alpha(alpha)
        self.inner = check_choice(inner, _BRANCHES, "inner")
        self.outer = check_choice(outer, _BRANCHES, "outer")
        self.inner_weight = check_non_negative(inner_weight, "inner_weight")
        self.outer_weight = check_non_negative(outer_weight, "outer_weight")
        self.reduce = check_choice(reduce, _REDUCTIONS, "reduce")

    def pointwise(self, w):
        """The unreduced, unscaled penalty :math:`R(w)` of every weight."""
        w = tf.convert_to_tensor(w)
        if not w.dtype.is_floating:
            raise ValueError(f"WReg needs floating-point weights, got dtype {w.dtype.name}.")
        dtype = w.dtype
        w = to_float32(w)  # float16/bfloat16 are computed in float32
        alpha = resolve_alpha(w, self.alpha)
        gap = tf.abs(w) - alpha  # < 0 inside, > 0 in the tail
        inside = self.inner_weight * _power(tf.nn.relu(-gap), self.inner)
        tail = self.outer_weight * _power(tf.nn.relu(gap), self.outer)
        # relu has zero gradient at 0, so both kinks (|w| = alpha and, for the inner branch's
        # abs, w = 0) give a zero sub-gradient and never NaN.
        return saturate_cast(inside + tail, dtype)

    def __call__(self, w):
        w = tf.convert_to_tensor(w)
        r = self.pointwise(to_float32(w))
        reduced = tf.reduce_sum(r) if self.reduce == "sum" else tf.reduce_mean(r)
        return saturate_cast(self.strength * reduced, w.dtype)

    def distance(self, w):
        """Distance of every weight to the nearest grid point (for diagnostics)."""
        w = tf.convert_to_tensor(w)
        return distance_to_grid(w, resolve_alpha(w, self.alpha))

    def get_config(self):
        return {
            "strength": self.strength,
            "alpha": self.alpha,
            "inner": self.inner,
            "outer": self.outer,
            "inner_weight": self.inner_weight,
            "outer_weight": self.outer_weight,
            "reduce": self.reduce,
        }


@validate_args(model=check_model)
def snap_binary(model, alpha="channel", layers=None):
    r"""Project kernels onto the binary grid: :math:`w \leftarrow lpha\,\mathrm{sign}(w)`
    (:math:`\mathrm{sign}(0) = +1`), the end of the W-regularizer's homotopy.

    With ``alpha="channel"`` each output channel gets its own :math:`lpha_c =
    \mathrm{mean}|W_c|` (the grid WReg pulls to); the snapped kernel holds exactly two values per
    channel, which a following BatchNormalization or a magnitude-aware sign reads unchanged.

    Args:
        model: a tf-keras model.
        alpha: a positive number, ``"mean"`` or ``"channel"``.
        layers: the layers whose ``kernel`` is snapped (default: every Larq quantized layer).

    Returns:
        The number of kernels snapped.
    """
    from keras_wreg._introspect import flat_layers

    alpha = validate_alpha(alpha)
    if layers is None:
        layers = [la for la in flat_layers(model)
                  if type(la).__module__.startswith("larq") and hasattr(la, "kernel")]
    layers = check_iterable(layers, "layers", item_types=keras.layers.Layer, item_name="layer")
    if any(not hasattr(layer, "kernel") for layer in layers):
        raise ValueError("`layers` must hold layers with a `kernel`.")
    count = 0
    for layer in layers:
        kernel = latent(layer.kernel)
        w = tf.convert_to_tensor(kernel)
        scale = resolve_alpha(w, alpha)
        kernel.assign(tf.where(w >= 0, scale, -scale) * tf.ones_like(w))
        count += 1
    return count


def _power(x, branch):
    return x if branch == "l1" else tf.square(x)


__all__ = ["WReg", "snap_binary"]
