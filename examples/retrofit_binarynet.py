"""Adopt a keras_wreg method on a Larq BinaryNet written as in Larq's documentation.

The model below follows Larq's "BinaryNet on CIFAR10" tutorial: a ``Sequential`` of
``QuantConv2D``/``QuantDense`` layers with ``ste_sign`` weights and activations,
``weight_clip`` and ``BatchNormalization(momentum=0.999, scale=False)``, ending in a softmax
(``--width`` scales its 128-128-256-256-512-512 / 1024-1024 widths; the tutorial is width 128).
It is trained a little as plain Larq, then one line adopts WReg (with a clip wide enough for
WReg's tail), keeping the trained weights, and training goes on with CosineMomentum, or with
the pull decoupled from the loss (``--decoupled``: DecoupledRegularization in the optimizer).

    python examples/retrofit_binarynet.py --dataset digits --width 8 --epochs 2
"""

import argparse
import time

import numpy as np

import keras_wreg as kw
from keras_wreg._compat import keras, lq


def binarynet(input_shape, num_classes, width=128):
    """Larq's BinaryNet tutorial model, with its widths divided by ``128 / width``."""
    kwargs = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign",
                  kernel_constraint="weight_clip", use_bias=False)
    w = width
    return keras.models.Sequential([
        lq.layers.QuantConv2D(w, (3, 3), kernel_quantizer="ste_sign",
                              kernel_constraint="weight_clip", use_bias=False,
                              input_shape=input_shape),
        keras.layers.BatchNormalization(momentum=0.999, scale=False),
        lq.layers.QuantConv2D(w, (3, 3), padding="same", **kwargs),
        keras.layers.MaxPool2D(pool_size=(2, 2), strides=(2, 2)),
        keras.layers.BatchNormalization(momentum=0.999, scale=False),
        lq.layers.QuantConv2D(2 * w, (3, 3), padding="same", **kwargs),
        keras.layers.BatchNormalization(momentum=0.999, scale=False),
        lq.layers.QuantConv2D(2 * w, (3, 3), padding="same", **kwargs),
        keras.layers.MaxPool2D(pool_size=(2, 2), strides=(2, 2)),
        keras.layers.BatchNormalization(momentum=0.999, scale=False),
        lq.layers.QuantConv2D(4 * w, (3, 3), padding="same", **kwargs),
        keras.layers.BatchNormalization(momentum=0.999, scale=False),
        lq.layers.QuantConv2D(4 * w, (3, 3), padding="same", **kwargs),
        keras.layers.MaxPool2D(pool_size=(2, 2), strides=(2, 2), padding="same"),
        keras.layers.BatchNormalization(momentum=0.999, scale=False),
        keras.layers.Flatten(),
        lq.layers.QuantDense(8 * w, **kwargs),
        keras.layers.BatchNormalization(momentum=0.999, scale=False),
        lq.layers.QuantDense(8 * w, **kwargs),
        keras.layers.BatchNormalization(momentum=0.999, scale=False),
        lq.layers.QuantDense(num_classes, **kwargs),
        keras.layers.BatchNormalization(momentum=0.999, scale=False),
        keras.layers.Activation("softmax"),
    ])


def adopt(model, decoupled=False, strength=3e-7):
    """The one line (plus the optimizer) that moves a Larq model to keras_wreg."""
    if decoupled:  # the pull as its own step: no penalty in the loss, only a wider clip
        copy = kw.apply(model, kernel_constraint=lq.constraints.WeightClip(2.0))
        optimizer = kw.CosineMomentum(kw.DecoupledRegularization(
            keras.optimizers.Adam(1e-3), kw.WReg(strength=strength, reduce="sum")))
    else:
        copy = kw.apply(model, kernel_regularizer=kw.WReg(strength=strength),
                        kernel_constraint=lq.constraints.WeightClip(2.0))
        optimizer = kw.CosineMomentum(keras.optimizers.Adam(1e-3))
    copy.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    return copy


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-subset", type=int, default=None)
    parser.add_argument("--decoupled", action="store_true")
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    splits = kw.data.load_dataset(args.dataset, batch_size=64, train_subset=args.train_subset)
    model = binarynet(splits.input_shape, splits.num_classes, args.width)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(splits.train, epochs=args.epochs, verbose=0)
    larq_acc = model.evaluate(splits.test, verbose=0)[1]

    start = time.perf_counter()
    wreg = adopt(model, decoupled=args.decoupled)
    seconds = time.perf_counter() - start
    same = all(np.array_equal(a, b) for a, b in zip(model.get_weights(), wreg.get_weights()))
    copy_acc = wreg.evaluate(splits.test, verbose=0)[1]
    print(f"plain Larq BinaryNet after {args.epochs} epochs: test accuracy {larq_acc:.4f}")
    print(f"kw.apply: {len(wreg.matched_layers)} layers changed in {seconds:.2f} s, weights "
          f"kept: {same}, accuracy of the copy before training {copy_acc:.4f}, "
          f"regularization terms: {len(wreg.losses)}")
    wreg.fit(splits.train, epochs=args.epochs, verbose=0)
    stats = kw.callbacks.grid_stats(wreg, alpha="channel")
    print(f"after {args.epochs} more epochs with "
          f"{'DecoupledRegularization' if args.decoupled else 'WReg'} + CosineMomentum: test "
          f"accuracy {wreg.evaluate(splits.test, verbose=0)[1]:.4f}, near-grid fraction "
          f"{stats['near_grid']:.3f}")
    return 0


if __name__ == "__main__":
    main()
