"""VGG-small in HWGQ-Net's layout: BN(no affine) + HWGQ before every binary layer (seed 002)."""

import logging

from keras_wreg.models._common import (
    check_builder_args,
    check_layer_args,
    layer_quantizer,
    regularizer_factory,
)
from keras_wreg._compat import keras, lq
from keras_wreg.layers.hwgq import hwgq_block
from keras_wreg.quantizers.hwgq import HWGQ, ScaledSign
from keras_wreg._validation import check_bool


def vgg_small_hwgq(
    input_shape,
    num_classes,
    *,
    width=64,
    kernel_quantizer=None,
    input_quantizer=None,
    kernel_constraint=None,
    kernel_regularizer=None,
    binary_classifier=True,
    bn_center=False,
    name=None,
):
    """VGG-small (w, w, 2w, 2w, 4w, 4w conv, 3 max-pools, one classifier) for HWGQ-Net.

    ``QConv(w) → [BN → Q_a → QConv(w)] → MaxPool → [BN → Q_a → QConv(2w)] → ... → MaxPool →
    [BN → Q_a] → Flatten → QDense(classes) → BN → softmax``

    Every BN that feeds an activation quantizer ``Q_a`` is ``BatchNormalization(center=False,
    scale=False)`` (:func:`keras_wreg.layers.hwgq_block`), so ``Q_a`` sees unit-variance inputs.
    The first conv sees the raw image (no activation quantizer) but has binary weights; the
    classifier is binary too by default, which the ~30x compression ratio needs.

    Args:
        input_shape, num_classes, width: as :func:`keras_wreg.models.vgg_small`.
        kernel_quantizer: weight quantizer of every conv/dense (default
            :class:`~keras_wreg.ScaledSign`).
        input_quantizer: activation quantizer layer of every block (default
            :class:`~keras_wreg.HWGQ` 2-bit; an int means HWGQ with that many bits).
        kernel_constraint: default None (no ``weight_clip``, which would cap the scales).
        kernel_regularizer: a Keras regularizer (copied per layer), a factory, or None.
        binary_classifier: quantize the classifier (default); otherwise a float Dense.
        bn_center: give the block BNs a learnable offset (off in HWGQ-Net).
        name: model name.
    """
    check_builder_args(input_shape, num_classes, width, name)
    binary_classifier = check_bool(binary_classifier, "binary_classifier")
    bn_center = check_bool(bn_center, "bn_center")
    check_layer_args(kernel_quantizer, None, kernel_constraint)
    if kernel_quantizer is None:
        kernel_quantizer = ScaledSign()
    if input_quantizer is None:
        input_quantizer = HWGQ(2)

    def kq():
        return lq.quantizers.get_kernel_quantizer(lq.quantizers.serialize(kernel_quantizer)) \
            if isinstance(kernel_quantizer, keras.layers.Layer) else kernel_quantizer

    regularizer = regularizer_factory(kernel_regularizer)

    # Larq warns about binary kernels without a constraint; no clip is deliberate here.
    larq_log = logging.getLogger("larq.layers_base")
    level = larq_log.level
    larq_log.setLevel(logging.ERROR)
    try:
        return _build(input_shape, num_classes, width, kq, input_quantizer, kernel_constraint,
                      regularizer, binary_classifier, bn_center, name)
    finally:
        larq_log.setLevel(level)


def _build(input_shape, num_classes, width, kq, input_quantizer, kernel_constraint, regularizer,
           binary_classifier, bn_center, name):
    inputs = keras.Input(shape=tuple(input_shape))
    x = inputs
    widths = [width, width, 2 * width, 2 * width, 4 * width, 4 * width]
    for i, filters in enumerate(widths):
        if i > 0:
            x = hwgq_block(x, input_quantizer, center=bn_center)
        reg = regularizer()
        x = lq.layers.QuantConv2D(
            filters, 3, padding="same", use_bias=False,
            kernel_quantizer=layer_quantizer(kq(), reg), kernel_constraint=kernel_constraint,
            kernel_regularizer=reg,
        )(x)
        if i % 2 == 1:
            x = keras.layers.MaxPool2D(2, 2)(x)
    if binary_classifier:
        x = hwgq_block(x, input_quantizer, center=bn_center)
        x = keras.layers.Flatten()(x)
        reg = regularizer()
        x = lq.layers.QuantDense(num_classes, use_bias=False,
                                 kernel_quantizer=layer_quantizer(kq(), reg),
                                 kernel_constraint=kernel_constraint, kernel_regularizer=reg)(x)
    else:
        x = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-4)(x)
        x = keras.layers.Activation("relu")(x)
        x = keras.layers.Flatten()(x)
        x = keras.layers.Dense(num_classes, use_bias=False)(x)
    x = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-4, scale=False)(x)
    outputs = keras.layers.Activation("softmax", dtype="float32")(x)  # float32 under mixed precision
    return keras.Model(inputs, outputs, name=name or f"vgg_small_hwgq_w{width}")


__all__ = ["vgg_small_hwgq"]
