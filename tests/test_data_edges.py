"""Bad data files and labels get a clear error naming the file (and label); the decoded-folder
cache follows every file. Small synthetic files in tmp_path."""

import os

import numpy as np
import pytest
from PIL import Image

from keras_wreg import data


def _npz(path, x=None, y=None, **extra):
    arrays = dict(extra)
    if x is not None:
        arrays["x"] = x
    if y is not None:
        arrays["y"] = y
    np.savez(path, **arrays)


def _pair(folder, y_train, y_test, n=None):
    folder.mkdir(parents=True, exist_ok=True)
    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    _npz(folder / "train.npz", np.zeros((len(y_train), 4, 4, 1), np.uint8), y_train)
    _npz(folder / "test.npz", np.zeros((len(y_test), 4, 4, 1), np.uint8), y_test)
    return folder


@pytest.mark.parametrize("labels,words", [
    ([0, 1, -1, 2], ["-1", "negative", "index 2"]),
    ([0, 1.5, 1, 0], ["1.5", "not an integer"]),
    ([0, np.nan, 1, 0], ["nan", "not a number"]),
])
def test_bad_training_labels_name_file_and_label(tmp_path, labels, words):
    folder = _pair(tmp_path / "d", labels, [0, 1])
    with pytest.raises(data.DataError) as info:
        data.load_arrays(str(folder))
    message = str(info.value)
    assert "train.npz" in message and all(w in message for w in words), message


def test_test_label_outside_training_classes(tmp_path):
    folder = _pair(tmp_path / "d", [0, 1, 2, 1], [0, 7])
    with pytest.raises(data.DataError, match=r"test.npz: test label 7 is not among"):
        data.load_arrays(str(folder))


def test_single_training_class(tmp_path):
    folder = _pair(tmp_path / "d", [3, 3, 3], [3])
    with pytest.raises(data.DataError, match=r"train.npz: the training labels hold a single"):
        data.load_dataset(str(folder))


def test_float_integral_labels_are_accepted(tmp_path):
    folder = _pair(tmp_path / "d", np.asarray([0.0, 1.0, 2.0]), [1])
    (x, y), _, _ = data.load_arrays(str(folder))
    assert y.dtype == np.int64 and y.tolist() == [0, 1, 2]


@pytest.mark.parametrize("kind", ["empty_file", "text_file", "no_arrays", "single_array",
                                  "missing_y", "no_examples", "length_mismatch"])
def test_bad_npz_files_get_a_clear_message(tmp_path, kind):
    folder = _pair(tmp_path / "d", [0, 1], [0, 1])
    bad = folder / "train.npz"
    if kind == "empty_file":
        bad.write_bytes(b"")
    elif kind == "text_file":
        bad.write_text("hello, not an archive\n")
    elif kind == "no_arrays":
        np.savez(bad)
    elif kind == "single_array":
        with open(bad, "wb") as f:
            np.save(f, np.zeros(3))
    elif kind == "missing_y":
        _npz(bad, np.zeros((2, 4, 4, 1), np.uint8))
    elif kind == "no_examples":
        _npz(bad, np.zeros((0, 4, 4, 1), np.uint8), np.zeros(0, np.int64))
    else:
        _npz(bad, np.zeros((3, 4, 4, 1), np.uint8), np.zeros(2, np.int64))
    with pytest.raises(data.DataError) as info:
        data.load_arrays(str(folder))
    assert str(bad) in str(info.value), str(info.value)
    assert "Traceback" not in str(info.value)


def _tree(root, per_class=2, size=6, classes=("a", "b")):
    for split in ("train", "test"):
        for c, cls in enumerate(classes):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixels = np.full((size, size, 3), 40 * c + 10 * i, np.uint8)
                Image.fromarray(pixels).save(root / split / cls / f"{i}.png")
    return root


@pytest.mark.parametrize("kind", ["empty", "garbage", "truncated", "other_shape"])
def test_bad_image_file_is_named(tmp_path, monkeypatch, kind):
    monkeypatch.setenv("KERAS_WREG_CACHE_DIR", str(tmp_path / "cache"))
    root = _tree(tmp_path / "imgs")
    bad = root / "train" / "b" / "1.png"
    if kind == "empty":
        bad.write_bytes(b"")
    elif kind == "garbage":
        bad.write_bytes(b"\x89PNG not really" * 3)
    elif kind == "truncated":
        bad.write_bytes(bad.read_bytes()[:40])
    else:
        Image.fromarray(np.zeros((7, 6, 3), np.uint8)).save(bad)
    with pytest.raises(data.DataError) as info:
        data.load_arrays(str(root))
    assert str(bad) in str(info.value), str(info.value)


def test_test_folder_with_unknown_class(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_WREG_CACHE_DIR", str(tmp_path / "cache"))
    root = _tree(tmp_path / "imgs")
    (root / "test" / "zebra").mkdir()
    with pytest.raises(data.DataError, match=r"zebra.*not among the training classes"):
        data.load_arrays(str(root))


def test_single_class_folder_tree(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_WREG_CACHE_DIR", str(tmp_path / "cache"))
    root = _tree(tmp_path / "imgs", classes=("only",))
    with pytest.raises(data.DataError, match="single class"):
        data.load_arrays(str(root))


def test_cache_follows_a_replaced_middle_image(tmp_path, monkeypatch):
    """Replacing any image (not only the first or last) invalidates the decoded cache."""
    monkeypatch.setenv("KERAS_WREG_CACHE_DIR", str(tmp_path / "cache"))
    root = _tree(tmp_path / "imgs", per_class=3)
    (x1, y1), _, _ = data.load_arrays(str(root))
    middle = root / "train" / "a" / "1.png"
    stat = middle.stat()
    Image.fromarray(np.full((6, 6, 3), 255, np.uint8)).save(middle)
    os.utime(middle, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same mtime: size differs
    (x2, _), _, _ = data.load_arrays(str(root))
    assert x2[1].min() == 255 and x1[1].max() < 255
    Image.fromarray(np.full((6, 6, 3), 7, np.uint8)).save(middle)  # same size, new mtime
    (x3, _), _, _ = data.load_arrays(str(root))
    assert x3[1].max() == 7
    again, _, _ = data.load_arrays(str(root))  # unchanged: served from the cache
    np.testing.assert_array_equal(again[0], x3)
    assert len(list((tmp_path / "cache").glob("*-train-*.npz"))) == 3
