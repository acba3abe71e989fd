"""BinaryNet-style VGG-small for small images, open to every keras_wreg method."""

from keras_wreg.models._common import (
    check_builder_args, check_layer_args, layer_quantizer, regularizer_factory)
from keras_wreg._compat import keras, lq
from keras_wreg._validation import check_bool

_DEFAULT = object()


def vgg_small(
    input_shape,
    num_classes,
    *,
    width=64,
    kernel_quantizer="ste_sign",
    input_quantizer="ste_sign",
    kernel_constraint="weight_clip",
    kernel_regularizer=None,
    activation_block=None,
    binary_classifier=True,
    name=None,
):
    """Binary VGG-small: 6 conv layers (w, w, 2w, 2w, 4w, 4w), 3 max-pools, one classifier.

    The layout of Larq's BinaryNet CIFAR-10 example (Courbariaux et al. 2016) with VGG-small's
    widths (Zhang et al. 2018, LQ-Nets; 128-128-256-256-512-512 at ``width=128``):

    ``QConv(w) → BN → QConv(w) → MaxPool → BN → QConv(2w) → BN → QConv(2w) → MaxPool → BN →
    QConv(4w) → BN → QConv(4w) → MaxPool → BN → Flatten → QDense(classes) → BN → softmax``

    The first conv sees the full-precision image (no input quantizer) but has binary weights.
    Every quantized layer gets the same ``kernel_quantizer``, ``input_quantizer``,
    ``kernel_constraint`` and ``kernel_regularizer`` (a regularizer *instance* is copied per
    layer through its config, a callable factory is called once per layer), so any method plugs
    into the same network.

    Args:
        input_shape: e.g. ``(32, 32, 3)``.
        num_classes: number of classes (>= 2).
        width: base width ``w`` (> 0).
        kernel_quantizer, input_quantizer, kernel_constraint: Larq layer arguments; pass
            ``None`` for all three to get the full-precision twin (see :func:`vgg_small_fp`).
        kernel_regularizer: a Keras regularizer, a zero-argument factory returning one, or None.
        activation_block: optional callable ``x -> x`` inserted after each BN that feeds a
            quantized layer (e.g. a BN+HWGQ block); replaces nothing else.
        binary_classifier: quantize the final classifier too (BinaryNet); otherwise it is
            full precision.
        name: model name.

    Returns:
        An uncompiled ``tf.keras.Model``.
    """
    check_builder_args(input_shape, num_classes, width, name)
    binary_classifier = check_bool(binary_classifier, "binary_classifier")
    check_layer_args(kernel_quantizer, input_quantizer, kernel_constraint)
    if activation_block is not None and not callable(activation_block):
        raise TypeError(f"`activation_block` must be None or a callable x -> x, "
                        f"got {activation_block!r}.")

    regularizer = regularizer_factory(kernel_regularizer)


    def quant():
        reg = regularizer()
        return dict(kernel_quantizer=layer_quantizer(kernel_quantizer, reg),
                    kernel_constraint=kernel_constraint, kernel_regularizer=reg)

    bn = dict(momentum=0.9, epsilon=1e-4, scale=False)

    def block_input(x):
        return activation_block(x) if activation_block is not None else x

    inputs = keras.Input(shape=tuple(input_shape))
    x = inputs
    widths = [width, width, 2 * width, 2 * width, 4 * width, 4 * width]
    for i, filters in enumerate(widths):
        x = lq.layers.QuantConv2D(
            filters, 3, padding="same", use_bias=False,
            input_quantizer=None if i == 0 else input_quantizer, **quant(),
        )(x)
        if i % 2 == 1:
            x = keras.layers.MaxPool2D(2, 2)(x)
        x = keras.layers.BatchNormalization(**bn)(x)
        if i + 1 < len(widths) or binary_classifier:
            x = block_input(x)
    x = keras.layers.Flatten()(x)
    if binary_classifier:
        x = lq.layers.QuantDense(num_classes, use_bias=False, input_quantizer=input_quantizer,
                                 **quant())(x)
    else:
        x = keras.layers.Dense(num_classes, use_bias=False)(x)
    x = keras.layers.BatchNormalization(**bn)(x)
    outputs = keras.layers.Activation("softmax", dtype="float32")(x)  # float32 under mixed precision
    return keras.Model(inputs, outputs, name=name or f"vgg_small_w{width}")


def vgg_small_fp(input_shape, num_classes, *, width=64, name=None, **_ignored):
    """The full-precision twin of :func:`vgg_small`: same layers, no quantizers or clip, ReLU
    where the binary net has its sign activation."""
    return vgg_small(
        input_shape, num_classes, width=width, kernel_quantizer=None, input_quantizer=None,
        kernel_constraint=None, kernel_regularizer=None,
        activation_block=lambda x: keras.layers.Activation("relu")(x),
        name=name or f"vgg_small_fp_w{width}",
    )


__all__ = ["vgg_small", "vgg_small_fp"]
