"""Shared fixtures. Importing keras_wreg first sets the legacy-Keras switch."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras_wreg  # noqa: E402,F401
from keras_wreg._compat import tf  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    tf.keras.utils.set_random_seed(0)
    np.random.seed(0)
    yield
    tf.keras.backend.clear_session()


@pytest.fixture(scope="session")
def mnist_small():
    """A small slice of real MNIST (from ../shared/data) as batched pipelines."""
    from keras_wreg import data

    return data.load_dataset("mnist", batch_size=64, train_subset=3000, test_subset=1000)
