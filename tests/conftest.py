"""Shared fixtures. Importing keras_wreg first sets the legacy-Keras switch.

Every test runs with TensorFlow op determinism and the same seeds, so a test that trains gives
the same numbers, hence the same verdict, on every run of a machine (and, CPU kernels being
deterministic, the same verdict across machines up to float reassociation, for which the
training tests keep margins measured over several seeds).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras_wreg  # noqa: E402,F401
from keras_wreg._compat import tf  # noqa: E402

tf.config.experimental.enable_op_determinism()


def real_dataset():
    """The real dataset the data-dependent tests use: MNIST from a local copy
    (``../shared/data``, ``./data``, ``$KERAS_WREG_DATA_DIR``) when there is one, else
    scikit-learn's bundled digits, exactly as ``keras-wreg train`` chooses
    (:func:`keras_wreg.data.default_dataset`). ``KERAS_WREG_TEST_DATASET`` forces one."""
    from keras_wreg import data

    return os.environ.get("KERAS_WREG_TEST_DATASET") or data.default_dataset()


@pytest.fixture(autouse=True)
def _seed():
    tf.keras.utils.set_random_seed(0)
    np.random.seed(0)
    yield
    tf.keras.backend.clear_session()


def _digits_as_mnist(batch_size, train_size):
    """scikit-learn's digits shaped like the MNIST slice: 28×28 (bilinear upsampling of the
    8×8 images) and the 1,438 training images repeated up to ``train_size`` per epoch, so that
    the models (their strides) and the step budgets the tests were calibrated with on MNIST
    apply unchanged."""
    from keras_wreg import data

    (x_tr, y_tr), (x_te, y_te) = data.load_digits_arrays()

    def resize(x):
        x = tf.image.resize(tf.cast(x, tf.float32), (28, 28), method="bilinear")
        return np.clip(np.round(x.numpy()), 0, 255).astype(np.uint8)

    x_tr, x_te = resize(x_tr), resize(x_te)
    reps = -(-train_size // len(x_tr))
    x_tr, y_tr = np.concatenate([x_tr] * reps)[:train_size], np.concatenate([y_tr] * reps)[
        :train_size]
    return data.DataSplits(
        train=data.make_pipeline(x_tr, y_tr, batch_size, shuffle=True, seed=0),
        test=data.make_pipeline(x_te, y_te, batch_size), validation=None,
        input_shape=tuple(x_tr.shape[1:]), num_classes=10, num_train=len(x_tr),
        num_test=len(x_te), num_validation=0, source="sklearn:digits (28x28, repeated)")


@pytest.fixture(scope="session")
def mnist_small():
    """A small slice of real handwritten digits as batched pipelines: 3,000/1,000 MNIST images
    from a local copy or, in a clone with no local MNIST, scikit-learn's bundled digits shaped
    like it (:func:`_digits_as_mnist`: 3,000 training images per epoch, 359 test images)."""
    from keras_wreg import data

    if real_dataset() == "digits":
        return _digits_as_mnist(batch_size=64, train_size=3000)
    return data.load_dataset(real_dataset(), batch_size=64, train_subset=3000, test_subset=1000)
