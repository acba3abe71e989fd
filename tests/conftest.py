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


@pytest.fixture(scope="session")
def mnist_small():
    """A small slice of real handwritten digits as batched pipelines: 3,000/1,000 MNIST images
    from a local copy, or, in a clone with no local MNIST, scikit-learn's bundled 8×8 digits
    (1,438/359 images)."""
    from keras_wreg import data

    return data.load_dataset(real_dataset(), batch_size=64, train_subset=3000, test_subset=1000)
