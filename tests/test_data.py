import shutil
from pathlib import Path

import numpy as np
import pytest

from keras_wreg import data

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_shared = pytest.mark.skipif(not (SHARED / "mnist").is_dir(),
                                  reason="../shared/data is not beside the project")


@needs_shared
def test_local_npz_mnist_by_name():
    splits = data.load_dataset("mnist", batch_size=32, test_subset=100, validation_split=0.1)
    assert splits.source.endswith("mnist")
    assert splits.input_shape == (28, 28, 1) and splits.num_classes == 10
    assert splits.num_train == 54000 and splits.num_validation == 6000 and splits.num_test == 100
    x, y = next(iter(splits.train))
    assert x.shape == (32, 28, 28, 1) and x.dtype.name == "float32"
    assert -1.0 <= float(x.numpy().min()) < float(x.numpy().max()) <= 1.0
    assert y.dtype.name == "int64"


@needs_shared
def test_class_folder_tree_decodes_once_and_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_WREG_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "tiny"
    for split, n in (("train", 6), ("test", 3)):
        for cls in ("airplane", "cat", "truck"):
            (root / split / cls).mkdir(parents=True)
            for f in sorted((SHARED / "cifar10" / split / cls).iterdir())[:n]:
                shutil.copy(f, root / split / cls / f.name)
    (x_tr, y_tr), (x_te, y_te), source = data.load_arrays(str(root))
    assert x_tr.shape == (18, 32, 32, 3) and x_tr.dtype == np.uint8
    assert list(np.bincount(y_tr)) == [6, 6, 6] and list(np.bincount(y_te)) == [3, 3, 3]
    cached = list((tmp_path / "cache").glob("*.npz"))
    assert len(cached) == 2
    again = data.load_arrays(str(root))
    np.testing.assert_array_equal(again[0][0], x_tr)
    splits = data.load_dataset(str(root), batch_size=4, augment=True)
    x, _ = next(iter(splits.train))
    assert x.shape == (4, 32, 32, 3)


def test_two_writers_of_one_folder_cache_do_not_collide(tmp_path, monkeypatch):
    """Two processes decoding the same class-folder tree at once (benchmark runs side by side):
    another writer finishes between this one's write and its rename; both must succeed."""
    import os

    import tensorflow as tf

    monkeypatch.setenv("KERAS_WREG_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / "train" / cls).mkdir(parents=True)
        for i in range(3):
            png = tf.io.encode_png(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).numpy()
            (tmp_path / "train" / cls / f"{i}.png").write_bytes(png)
    real_replace, calls = os.replace, []

    def replace(src, dst):
        calls.append(src)
        if len(calls) == 1:  # the other writer runs to the end first
            data._read_image_tree(tmp_path / "train", ["a", "b"])
        real_replace(src, dst)

    monkeypatch.setattr(data.os, "replace", replace)
    x, y = data._read_image_tree(tmp_path / "train", ["a", "b"])
    assert len(calls) == 2 and calls[0] != calls[1]
    assert x.shape == (6, 8, 8, 3) and list(y) == [0, 0, 0, 1, 1, 1]
    monkeypatch.undo()
    assert [p.name.endswith(".tmp.npz") for p in (tmp_path / "cache").iterdir()] == [False]
    assert next((tmp_path / "cache").iterdir()).stat().st_mode & 0o777 == 0o644
    np.testing.assert_array_equal(data._read_image_tree(tmp_path / "train", ["a", "b"])[0], x)


@needs_shared
def test_cifar10_by_name_from_shared_folder():
    (x_tr, y_tr), (x_te, y_te), source = data.load_arrays("cifar10")
    assert x_tr.shape == (50000, 32, 32, 3) and x_te.shape == (10000, 32, 32, 3)
    assert list(np.bincount(y_te)) == [1000] * 10
    splits = data.load_dataset("cifar10", test_subset=500)  # folders are sorted by class
    labels = np.concatenate([y.numpy() for _, y in splits.test])
    assert len(labels) == 500 and np.bincount(labels, minlength=10).min() > 25
    assert abs(x_tr[..., 0].mean() / 255 - 0.4913) < 0.01  # the README's channel mean


def test_sklearn_digits_is_real_offline_data():
    splits = data.load_dataset("digits", batch_size=16)
    assert splits.input_shape == (8, 8, 1) and splits.num_classes == 10
    assert splits.num_train + splits.num_test == 1797


def test_missing_dataset_names_places_searched_and_does_not_download(tmp_path):
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.load_dataset("svhn_cropped", data_dir=str(tmp_path))
    message = str(info.value)
    assert str(tmp_path / "svhn_cropped") in message
    assert "tensorflow_datasets" in message and "download=False" in message
    assert "KERAS_WREG_DATA_DIR" in message


def test_env_var_root_and_npz_validation(tmp_path, monkeypatch):
    folder = tmp_path / "toy"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        np.savez(folder / f"{split}.npz", x=rng.integers(0, 255, (20, 5, 5, 2), dtype=np.uint8),
                 y=np.arange(20) % 4)
    monkeypatch.setenv("KERAS_WREG_DATA_DIR", str(tmp_path))
    splits = data.load_dataset("toy", batch_size=5)
    assert splits.input_shape == (5, 5, 2) and splits.num_classes == 4
    np.savez(folder / "train.npz", x=np.zeros((3, 5, 5, 2), np.float32), y=np.zeros(3))
    with pytest.raises(ValueError, match="uint8"):
        data.load_dataset("toy")


@pytest.mark.parametrize("kwargs,name", [
    (dict(batch_size=0), "batch_size"), (dict(validation_split=1.0), "validation_split"),
    (dict(train_subset=-3), "train_subset"),
])
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        data.load_dataset("digits", **kwargs)


def test_split_seed_fixes_the_validation_split_across_seeds():
    def validation(**kwargs):
        splits = data.load_dataset("digits", batch_size=2000, validation_split=0.2, **kwargs)
        return next(iter(splits.validation))[0].numpy()

    fixed = [validation(seed=s, split_seed=0) for s in (1, 2)]
    np.testing.assert_array_equal(fixed[0], fixed[1])
    np.testing.assert_array_equal(fixed[0], validation(seed=0))  # split_seed defaults to seed
    assert not np.array_equal(validation(seed=1), validation(seed=2))
