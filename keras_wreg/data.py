"""Train/test ``tf.data`` pipelines for tfds datasets, local image folders and ``.npz`` arrays.

Resolution order for a dataset *name* (``"cifar10"``, ``"mnist"``, ...):

1. local copies under each data root: ``<root>/<name>/{train,test}.npz`` (``x`` uint8 NHWC,
   ``y`` int) or ``<root>/<name>/{train,test}/<class>/<image>`` (class-per-folder images);
   the roots are ``data_dir``, ``$KERAS_WREG_DATA_DIR``, ``./data``, ``../shared/data``;
2. ``tensorflow_datasets.load(name, data_dir=..., download=download)``; ``download`` is False by
   default, so nothing downloads silently.

A path (to a folder tree or to a folder holding ``train.npz``/``test.npz``) is used directly.
Image folders are decoded once and cached as uint8 ``.npz`` under ``$KERAS_WREG_CACHE_DIR``
(default ``~/.cache/keras_wreg``), so 60,000 JPEGs are not decoded every epoch or every run.
"""

import dataclasses
import hashlib
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from keras_wreg._compat import tf
from keras_wreg._validation import (
    ArgumentTypeError, check_bool, check_int, check_optional, check_real)

TFDS_NAMES = ("cifar10", "cifar100", "svhn_cropped", "mnist", "fashion_mnist")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
_REPO_ROOT = Path(__file__).resolve().parent.parent


#: largest batch size accepted (beyond it, a typo)
MAX_BATCH_SIZE = 2**20


class DatasetNotFoundError(FileNotFoundError):
    """No local copy and no prepared tfds copy of a dataset could be found.

    Example:
        ```python
        try:
            kw.data.load_dataset("no_such_dataset", data_dir="nowhere")
        except kw.data.DatasetNotFoundError as err:
            print(err)
        ```
    """


class DataError(ValueError):
    """A dataset file or its labels are unusable; the message names the file (and label).

    Example:
        ```python
        try:
            kw.data.check_labels(np.array([0.5, 1.0]), "my labels")
        except kw.data.DataError as err:
            print(err)
        ```
    """


def _check_path(value, argname):
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise ArgumentTypeError(f"`{argname}` must be a folder path (str or os.PathLike), "
                                f"got {value!r}.")
    return value


def _check_name(name):
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if not isinstance(name, str) or not name.strip():
        raise ArgumentTypeError(f"`name` must be a dataset name or a path (a non-empty "
                                f"string), got {name!r}.")
    return name


@dataclasses.dataclass
class DataSplits:
    """Batched, prefetched pipelines plus what a model builder needs to know.

    Example:
        ```python
        splits = kw.data.load_dataset("digits", batch_size=32)
        print(splits.num_train, splits.num_validation, splits.num_test, splits.input_shape)
        for images, labels in splits.train.take(1):
            print(images.shape, labels.shape)
        ```
    """

    train: tf.data.Dataset
    test: tf.data.Dataset
    validation: "tf.data.Dataset | None"
    input_shape: tuple
    num_classes: int
    num_train: int
    num_test: int
    num_validation: int
    source: str


def data_roots(data_dir=None):
    """The folders searched for local copies, in order."""
    check_optional(_check_path, data_dir, "data_dir")
    roots = []
    if data_dir:
        roots.append(Path(data_dir))
    if os.environ.get("KERAS_WREG_DATA_DIR"):
        roots.append(Path(os.environ["KERAS_WREG_DATA_DIR"]))
    roots += [Path.cwd() / "data", Path.cwd().parent / "shared" / "data",
              _REPO_ROOT.parent / "shared" / "data"]
    unique = []
    for root in roots:
        root = root.resolve()
        if root not in unique:
            unique.append(root)
    return unique


def load_arrays(name, data_dir=None, download=False):
    """``(x_train, y_train), (x_test, y_test), source`` as uint8 NHWC / int64 numpy arrays."""
    name = _check_name(name)
    check_optional(_check_path, data_dir, "data_dir")
    download = check_bool(download, "download")
    if name == "digits":
        return (*load_digits_arrays(), "sklearn:digits")
    path = Path(name).expanduser()
    if path.is_dir():
        found = _load_local(path)
        if found is None:
            raise DatasetNotFoundError(
                f"{path} holds neither train.npz/test.npz nor train/ and test/ class folders."
            )
        return (*found, str(path))
    searched = []
    for root in data_roots(data_dir):
        candidate = root / name
        searched.append(str(candidate))
        found = _load_local(candidate) if candidate.is_dir() else None
        if found is not None:
            return (*found, str(candidate))
    arrays, tfds_error = _load_tfds(name, data_dir, download)
    if arrays is not None:
        return (*arrays, f"tfds:{name}")
    raise DatasetNotFoundError(
        f"Dataset {name!r} not found. Searched local copies in: {', '.join(searched)} "
        f"(expected {name}/train.npz + {name}/test.npz, or {name}/train/<class>/*.jpg + "
        f"{name}/test/<class>/*.jpg), and tensorflow_datasets "
        f"(data_dir={data_dir or '~/tensorflow_datasets'}, download={download}: {tfds_error}). "
        "Provide the data with --data-dir / data_dir=, the KERAS_WREG_DATA_DIR environment "
        "variable, or prepare it for tfds (`tfds build` / download=True where the network allows)."
    )


def _load_local(folder):
    folder = Path(folder)
    if (folder / "train.npz").is_file() and (folder / "test.npz").is_file():
        train, test = _read_npz(folder / "train.npz"), _read_npz(folder / "test.npz")
        check_splits(train[1], test[1], folder / "train.npz", folder / "test.npz")
        return train, test
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        classes = sorted(p.name for p in (folder / "train").iterdir() if p.is_dir())
        if classes:
            extra = sorted(p.name for p in (folder / "test").iterdir()
                           if p.is_dir() and p.name not in classes)
            if extra:
                raise DataError(f"{folder / 'test'}: class folder(s) {extra} are not among the "
                                f"training classes of {folder / 'train'} ({classes}).")
            train = _read_image_tree(folder / "train", classes)
            test = _read_image_tree(folder / "test", classes)
            check_splits(train[1], test[1], folder / "train", folder / "test")
            return train, test
    return None


def check_labels(y, where):
    """Integer class labels (int64, 1-D) from ``y``; DataError naming ``where`` and the label
    for NaN, non-integer or negative labels."""
    y = np.asarray(y)
    if y.dtype.kind not in "biuf":
        raise DataError(f"{where}: labels must be numbers, got dtype {y.dtype}.")
    y = y.reshape(-1)
    if y.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(y))
        if bad.size:
            raise DataError(f"{where}: label {y[bad[0]]!r} at index {bad[0]} is not a number "
                            "(labels must be integers >= 0).")
        bad = np.flatnonzero(y != np.round(y))
        if bad.size:
            raise DataError(f"{where}: label {y[bad[0]]!r} at index {bad[0]} is not an integer "
                            "(labels must be integers >= 0).")
    bad = np.flatnonzero(y < 0)
    if bad.size:
        raise DataError(f"{where}: label {y[bad[0]]!r} at index {bad[0]} is negative "
                        "(labels must be integers >= 0).")
    return y.astype(np.int64)


def check_splits(y_train, y_test, train_where, test_where):
    """DataError unless the training labels hold >= 2 classes and every test label is one of
    them."""
    classes = np.unique(y_train)
    if classes.size < 2:
        raise DataError(f"{train_where}: the training labels hold a single class "
                        f"({classes.tolist()}); a classifier needs at least 2.")
    unknown = np.setdiff1d(np.unique(y_test), classes)
    if unknown.size:
        raise DataError(f"{test_where}: test label {int(unknown[0])} is not among the training "
                        f"classes of {train_where} ({_short_list(classes)}).")


def _short_list(values, limit=12):
    values = [int(v) for v in values]
    return str(values) if len(values) <= limit else f"{values[:limit]}... ({len(values)} classes)"


def _read_npz(path):
    path = Path(path)
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty (0 bytes); expected a .npz archive with arrays 'x' "
                        "and 'y'.")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not hasattr(loaded, "files"):
            raise DataError(f"{path} holds a single array, not a .npz archive with arrays "
                            "'x' (uint8 NHWC images) and 'y' (int labels).")
        with loaded as arrays:
            if "x" not in arrays.files or "y" not in arrays.files:
                found = arrays.files or "no arrays"
                raise DataError(f"{path} must hold arrays 'x' (uint8 NHWC images) and 'y' (int "
                                f"labels), found {found}.")
            x, y = arrays["x"], arrays["y"]
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise DataError(f"{path} is not a readable .npz archive of arrays 'x' and 'y' "
                        f"({type(err).__name__}: {err}).") from err
    y = check_labels(y, path)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.dtype != np.uint8:
        raise DataError(f"{path}: 'x' must be uint8 NHWC, got {x.dtype} {x.shape}.")
    if len(x) == 0:
        raise DataError(f"{path}: 'x' holds no examples.")
    if len(x) != len(y):
        raise DataError(f"{path}: {len(x)} images but {len(y)} labels.")
    return x, y


def _read_image_tree(folder, classes):
    files, labels = [], []
    for index, cls in enumerate(classes):
        if not (folder / cls).is_dir():
            continue  # a training class without test images
        names = sorted(p for p in (folder / cls).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        files += [str(p) for p in names]
        labels += [index] * len(names)
    if not files:
        raise DatasetNotFoundError(f"No images under {folder}.")
    cache = _cache_path(folder, files)
    if cache.is_file():
        return _read_npz(cache)
    x = _decode_images(files)
    y = np.asarray(labels, dtype=np.int64)
    cache.parent.mkdir(parents=True, exist_ok=True)
    # a temporary file of this writer's own: processes that decode the same folder at once
    # (two benchmark runs side by side) each write whole files, and the last rename wins
    fd, tmp = tempfile.mkstemp(dir=cache.parent, prefix=cache.stem + ".", suffix=".tmp.npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, x=x, y=y)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide a shared cache from other users
        os.replace(tmp, cache)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return x, y


def _cache_path(folder, files):
    """Cache file of a decoded folder; its name hashes every path, size and mtime, so any
    added, removed, replaced or touched image gives a new cache."""
    digest = hashlib.sha1()
    digest.update(str(folder.resolve()).encode())
    digest.update(str(len(files)).encode())
    for f in files:
        stat = os.stat(f)
        digest.update(f"{f}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    root = Path(os.environ.get("KERAS_WREG_CACHE_DIR", Path.home() / ".cache" / "keras_wreg"))
    return root / f"{folder.parent.name}-{folder.name}-{digest.hexdigest()[:12]}.npz"


def _decode_one(path):
    return tf.io.decode_image(tf.io.read_file(path), channels=0, expand_animations=False)


def _decode_images(files):
    """Decode every image once with TensorFlow's decoder (parallel), as uint8 NHWC.

    Raises:
        DataError: naming the first empty, corrupt or truncated image, or an image whose shape
            differs from the first one's.
    """
    for f in files:
        if os.stat(f).st_size == 0:
            raise DataError(f"{f} is an empty image file (0 bytes).")
    ds = tf.data.Dataset.from_tensor_slices(files).map(_decode_one,
                                                       num_parallel_calls=tf.data.AUTOTUNE)
    try:
        images = [img.numpy() for img in ds]
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError, tf.errors.UnknownError):
        images = []
        for f in files:  # find the culprit, sequentially
            try:
                images.append(_decode_one(f).numpy())
            except (tf.errors.InvalidArgumentError, tf.errors.DataLossError,
                    tf.errors.UnknownError) as err:
                message = str(err).strip().splitlines()[0] if str(err).strip() else ""
                raise DataError(f"{f} is not a readable image (corrupt or truncated?): "
                                f"{message}") from None
    first = images[0].shape
    for f, im in zip(files, images):
        if im.shape != first:
            raise DataError(f"{f} has shape {im.shape} but {files[0]} has {first}; resize the "
                            "images to one size first.")
    return np.stack(images).astype(np.uint8)


def _load_tfds(name, data_dir, download):
    try:
        import tensorflow_datasets as tfds
    except ImportError as err:  # pragma: no cover
        return None, f"tensorflow_datasets not importable ({err})"
    try:
        splits = tfds.load(name, split=["train", "test"], data_dir=data_dir, as_supervised=True,
                           batch_size=-1, download=download)
    except Exception as err:  # tfds raises many types; we re-raise one clear error
        return None, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    (x_tr, y_tr), (x_te, y_te) = [tfds.as_numpy(s) for s in splits]
    y_tr, y_te = check_labels(y_tr, f"tfds:{name} train"), check_labels(y_te, f"tfds:{name} test")
    return ((x_tr.astype(np.uint8), y_tr.astype(np.int64)),
            (x_te.astype(np.uint8), y_te.astype(np.int64))), None


def _preprocess(x, y, augment, pad):
    x = tf.cast(x, tf.float32) / 127.5 - 1.0  # [-1, 1], as in Larq's examples
    if augment:
        height, width = x.shape[0], x.shape[1]
        x = tf.image.random_flip_left_right(x)
        x = tf.pad(x, [[pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
        x = tf.image.random_crop(x, [height, width, x.shape[2]])
    return x, y


def make_pipeline(x, y, batch_size, shuffle=False, augment=False, seed=0, pad=4):
    """A batched, prefetched pipeline over in-memory uint8 arrays (scaled to [-1, 1])."""
    batch_size = check_int(batch_size, "batch_size", low=1, high=MAX_BATCH_SIZE)
    shuffle = check_bool(shuffle, "shuffle")
    augment = check_bool(augment, "augment")
    seed = check_int(seed, "seed", low=0)
    pad = check_int(pad, "pad", low=0, high=4096)
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        ds = ds.shuffle(min(len(x), 50_000), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(lambda a, b: _preprocess(a, b, augment, pad), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def load_dataset(
    name,
    *,
    data_dir=None,
    batch_size=128,
    augment=False,
    validation_split=0.0,
    train_subset=None,
    test_subset=None,
    seed=0,
    download=False,
    split_seed=None,
):
    """Batched train/test(/validation) pipelines for a dataset name or local path.

    Args:
        name: a tfds name (``cifar10``, ``cifar100``, ``svhn_cropped``, ``mnist``,
            ``fashion_mnist``, ...) or a path to a class-per-folder tree / ``.npz`` folder.
        data_dir: first folder to search for local copies; also tfds' ``data_dir``.
        batch_size: batch size (> 0).
        augment: standard CIFAR augmentation (random flip, 4-pixel reflect-pad + random crop).
        validation_split: fraction of the (shuffled, seeded) training set held out, in [0, 1).
        train_subset, test_subset: keep N examples: the first N of the seeded shuffle of the
            training set (after the validation split), a seeded random N of the test set;
            ``None`` keeps all.
        seed: seed of the split and of the shuffling.
        download: let tfds download (False by default: nothing downloads silently).
        split_seed: seed of the validation split alone (default: ``seed``); fixed, it keeps
            one held-out split across runs whose ``seed`` varies the data order and
            augmentation (the benchmarks' protocol: split seed 0).

    Returns:
        :class:`DataSplits`.

    Raises:
        DatasetNotFoundError: listing the places searched and how to provide the data.
        ValueError: for a bad batch size, split or subset.
    """
    name = _check_name(name)
    check_optional(_check_path, data_dir, "data_dir")
    batch_size = check_int(batch_size, "batch_size", low=1, high=MAX_BATCH_SIZE)
    augment = check_bool(augment, "augment")
    validation_split = check_real(validation_split, "validation_split", low=0.0, high=1.0,
                                  high_open=True)
    train_subset = check_optional(check_int, train_subset, "train_subset", low=1)
    test_subset = check_optional(check_int, test_subset, "test_subset", low=1)
    seed = check_int(seed, "seed", low=0)
    download = check_bool(download, "download")
    split_seed = seed if split_seed is None else check_int(split_seed, "split_seed", low=0)
    (x_train, y_train), (x_test, y_test), source = load_arrays(name, data_dir, download)
    order = np.random.default_rng(split_seed).permutation(len(x_train))
    x_train, y_train = x_train[order], y_train[order]
    n_val = int(round(len(x_train) * validation_split))
    x_val, y_val = x_train[:n_val], y_train[:n_val]
    x_train, y_train = x_train[n_val:], y_train[n_val:]
    if train_subset is not None:
        x_train, y_train = x_train[:train_subset], y_train[:train_subset]
    if test_subset is not None:  # a seeded random subset: folder-ordered test sets are sorted
        keep = np.sort(np.random.default_rng(seed + 1).permutation(len(x_test))[:test_subset])
        x_test, y_test = x_test[keep], y_test[keep]
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    train = make_pipeline(x_train, y_train, batch_size, shuffle=True, augment=augment, seed=seed)
    test = make_pipeline(x_test, y_test, batch_size)
    val = make_pipeline(x_val, y_val, batch_size) if n_val else None
    return DataSplits(
        train=train, test=test, validation=val, input_shape=tuple(x_train.shape[1:]),
        num_classes=num_classes, num_train=len(x_train), num_test=len(x_test),
        num_validation=n_val, source=source,
    )


def default_dataset(data_dir=None):
    """The CLI's offline default: MNIST if a local copy exists, else scikit-learn's digits.

    scikit-learn ships the 1,797 real 8×8 handwritten digits (UCI optdigits test set), so the
    main job runs offline on real data on any fresh machine.
    """
    check_optional(_check_path, data_dir, "data_dir")
    for root in data_roots(data_dir):
        if (root / "mnist" / "train.npz").is_file() and (root / "mnist" / "test.npz").is_file():
            return "mnist"
    return "digits"


def load_digits_arrays():
    """scikit-learn's bundled digits as uint8 NHWC 8×8×1 in 0..255, split 80/20 (seeded)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(1234).permutation(len(x))
    x, y = x[order], y[order]
    n_test = len(x) // 5
    return (x[n_test:], y[n_test:]), (x[:n_test], y[:n_test])


__all__ = [
    "load_dataset", "load_arrays", "make_pipeline", "data_roots", "default_dataset",
    "load_digits_arrays", "DataSplits", "DatasetNotFoundError", "DataError", "TFDS_NAMES",
    "check_labels", "check_splits",
]
