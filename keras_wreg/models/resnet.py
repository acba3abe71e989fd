r"""Binary ResNet-18 for 32×32 inputs (Bi-Real / ReActNet layout) and its full-precision twin."""

from keras_wreg.models._common import (
    check_builder_args,
    check_layer_args,
    layer_quantizer,
    regularizer_factory,
)
from keras_wreg._compat import keras, lq
from keras_wreg.layers.fda import ThresholdSign, fda_unit
from keras_wreg._validation import (
    check_bool, check_choice, check_int, check_non_negative, check_positive, check_real)

FDA_MODES = ("none", "static", "full", "no_excite", "no_adjust", "adjust_only")
#: ``fda`` mode -> the parts of :func:`~keras_wreg.layers.fda_unit` it keeps (ablations)
FDA_PARTS = {"full": dict(adjust=True, excite=True, zero_point=True),
             "no_excite": dict(adjust=True, excite=False, zero_point=True),
             "no_adjust": dict(adjust=False, excite=True, zero_point=True),
             "adjust_only": dict(adjust=True, excite=False, zero_point=False)}


def _check_fda(fda):
    if fda is True:
        return "full"
    if fda is False or fda is None:
        return "none"
    check_choice(fda, FDA_MODES, "fda")
    if fda not in FDA_MODES:
        raise ValueError(f"`fda` must be a bool or one of {FDA_MODES}, got {fda!r}.")
    return fda


def _fresh_quantizer(quantizer):
    """A new Larq quantizer *layer* (fresh per unit) from a name, config or instance."""
    if isinstance(quantizer, keras.layers.Layer):
        config = {k: v for k, v in quantizer.get_config().items() if k != "name"}
        return quantizer.__class__.from_config(config)
    resolved = lq.quantizers.get(quantizer)
    if not isinstance(resolved, keras.layers.Layer):
        raise ValueError("`input_quantizer` must be a Larq quantizer layer (name such as "
                         f"'ste_sign', class or instance), got {quantizer!r}.")
    return resolved


def resnet18(
    input_shape,
    num_classes,
    *,
    width=64,
    kernel_quantizer="ste_sign",
    input_quantizer="ste_sign",
    kernel_constraint="weight_clip",
    kernel_regularizer=None,
    fda="none",
    groups=4,
    reduction=4,
    epsilon=1e-5,
    pool="channel",
    balance_penalty=0.0,
    binary=True,
    name=None,
):
    r"""Binary ResNet-18 for CIFAR-sized inputs with a switch for the FDA modules (seed 001).

    Layout (Bi-Real-Net / ReActNet style, one shortcut around every binary convolution; first
    and last layers full precision)::

        stem:   Conv3×3(w) → BN                                   (full precision)
        4 stages of widths w, 2w, 4w, 8w, strides 1, 2, 2, 2; 2 basic blocks each, i.e.
        16 binary units:
            b = binarize(x)                      # see `fda`
            y = BinaryConv3×3(b) → BN → PReLU    # kernel: kernel_quantizer (α_c absorbed by BN)
            y = y + shortcut(x)                  # identity, or AvgPool(2) → Conv1×1 → BN (FP)
        head:   GlobalAvgPool → Dense(classes) → softmax         (full precision)

    ``binarize`` is chosen by ``fda``:

    - ``"none"`` (or False): the Larq ``input_quantizer`` (default ``ste_sign``) as a separate
      layer: plain Larq binary ResNet-18.
    - ``"static"``: :class:`~keras_wreg.ThresholdSign` with ``input_dependent=False``,
      :math:`\operatorname{sign}(x - \tau_c)` with learnable :math:`\tau_c` (RSign-like).
    - ``"full"`` (or True): :func:`~keras_wreg.layers.fda_unit`:
      :math:`\operatorname{sign}(\mathrm{FDA}(x) - \tau_c - \delta_c\,\mathrm{GE}(x)_{g(c)})`.
    - ablations of ``"full"``: ``"no_excite"`` (FDA and a static :math:`\tau_c`),
      ``"no_adjust"`` (no FDA: :math:`x` and the excited threshold), ``"adjust_only"`` (FDA, then
      Larq's sign).

    Binarization is always a separate layer (never the conv's ``input_quantizer``) so
    :func:`~keras_wreg.callbacks.activation_balance` can measure every variant.

    Args:
        input_shape: e.g. ``(32, 32, 3)``.
        num_classes: int >= 2.
        width: base width (64 is ResNet-18; use e.g. 16 on CPU).
        kernel_quantizer, kernel_constraint, kernel_regularizer: of the 16 binary convolutions
            (a regularizer instance is copied per layer; a zero-argument factory is called).
        input_quantizer: the activation quantizer when ``fda="none"``.
        fda: ``"none"`` | ``"static"`` | ``"full"`` (or a bool).
        groups, reduction, epsilon, pool, balance_penalty: of the FDA modules (``groups`` must
            divide ``width``).
        binary: False builds the full-precision twin (see :func:`resnet18_fp`).
        name: model name.

    Returns:
        An uncompiled ``tf.keras.Model``.

    Raises:
        ValueError: for a bad width, class count, input shape, ``fda`` value, or FDA argument.
    """
    check_builder_args(input_shape, num_classes, width, name)
    binary = check_bool(binary, "binary")
    check_layer_args(kernel_quantizer, input_quantizer, kernel_constraint)
    fda = _check_fda(fda) if binary else "none"
    groups = check_int(groups, "groups", low=1, high=width)
    check_real(reduction, "reduction", low=1.0, high=1e4)
    check_positive(epsilon, "epsilon", high=1.0)
    check_choice(pool, ("channel", "group"), "pool")
    check_non_negative(balance_penalty, "balance_penalty")
    if FDA_PARTS.get(fda, {}).get("excite") and width % groups:
        raise ValueError(f"`groups` must be a positive int dividing `width` ({width}), "
                         f"got {groups!r}.")

    regularizer = regularizer_factory(kernel_regularizer)

    def bn(x, layer_name=None):
        return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=layer_name)(x)

    def binarize(x, prefix):
        if not binary:
            return x
        if fda in FDA_PARTS:
            return fda_unit(x, groups=groups, reduction=reduction, epsilon=epsilon, pool=pool,
                            balance_penalty=balance_penalty, name=prefix, **FDA_PARTS[fda])
        if fda == "static":
            return ThresholdSign(input_dependent=False, balance_penalty=balance_penalty,
                                 name=f"{prefix}_sign")(x)
        quantizer = _fresh_quantizer(input_quantizer)
        return quantizer.__class__.from_config({**quantizer.get_config(),
                                                "name": f"{prefix}_sign"})(x)

    def unit(x, filters, stride, prefix):
        b = binarize(x, prefix)
        if binary:
            reg = regularizer()
            y = lq.layers.QuantConv2D(
                filters, 3, strides=stride, padding="same", use_bias=False,
                input_quantizer=None, kernel_quantizer=layer_quantizer(kernel_quantizer, reg),
                kernel_constraint=kernel_constraint, kernel_regularizer=reg,
                name=f"{prefix}_conv")(b)
        else:
            y = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False,
                                    name=f"{prefix}_conv")(b)
        y = bn(y, f"{prefix}_bn")
        y = keras.layers.PReLU(shared_axes=[1, 2],
                               alpha_initializer=keras.initializers.Constant(0.25),
                               name=f"{prefix}_prelu")(y)
        shortcut = x
        if stride != 1 or x.shape[-1] != filters:
            if stride != 1:
                shortcut = keras.layers.AveragePooling2D(
                    stride, padding="same", name=f"{prefix}_pool")(shortcut)
            shortcut = keras.layers.Conv2D(filters, 1, use_bias=False,
                                           name=f"{prefix}_down")(shortcut)
            shortcut = bn(shortcut, f"{prefix}_down_bn")
        return keras.layers.Add(name=f"{prefix}_add")([y, shortcut])

    inputs = keras.Input(shape=tuple(input_shape))
    x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = bn(x, "stem_bn")
    for stage, multiplier in enumerate((1, 2, 4, 8)):
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            prefix = f"s{stage + 1}b{block + 1}"
            x = unit(x, width * multiplier, stride, f"{prefix}u1")
            x = unit(x, width * multiplier, 1, f"{prefix}u2")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(num_classes, name="classifier")(x)
    outputs = keras.layers.Activation("softmax", name="softmax", dtype="float32")(x)
    default = f"resnet18_{'fp' if not binary else fda}_w{width}"
    return keras.Model(inputs, outputs, name=name or default)


def resnet18_fp(input_shape, num_classes, *, width=64, name=None, **_ignored):
    """The full-precision twin of :func:`resnet18`: the same layers (stem, 16 conv units with
    per-unit shortcut, BN and PReLU, head) with real-valued activations and weights and no
    binarization layers."""
    return resnet18(input_shape, num_classes, width=width, binary=False,
                    name=name or f"resnet18_fp_w{width}")


def resnet18_fda(input_shape, num_classes, **kwargs):
    """:func:`resnet18` with the full FDA modules (``fda="full"``)."""
    kwargs.setdefault("fda", "full")
    return resnet18(input_shape, num_classes, **kwargs)


__all__ = ["resnet18", "resnet18_fp", "resnet18_fda", "FDA_MODES"]
