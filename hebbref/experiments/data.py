"""The arrays a training run needs: train, validation and test splits.

``--data`` names a dataset known to ``hebbref.datasets`` (``fashion-mnist``,
``fashion-mnist-mini``, ``mnist``, ``cifar10``, ``cifar100``) or an ``.npz`` file of
your own holding ``x_train, y_train, x_test, y_test`` (and optionally ``x_val, y_val``);
images are float (N, C, H, W) in [0, 1], labels integers.

The split follows SPEC §6: train on ``train`` (the training set less its last
``val_size`` images), select on ``val`` (those last images), report ``test``.
``val_size`` defaults to 5,000 or a tenth of the training set, whichever is smaller
(``hebbref.datasets.default_val_size``); 0 keeps every image for training. An .npz file
with its own ``x_val, y_val`` uses them; one without has no validation set unless
``val_size`` is given. ``Splits.description`` says in words how the data was split.

A user's file is checked before anything trains: x arrays of real, finite numbers with
one image shape (integer pixels such as 0..255 are refused: divide them first); y arrays of whole numbers, one per image; every class 0..C-1 present in
``y_train`` (so one stray label of 1,000,000 cannot make a 1,000,001-class network), and
no label in ``y_val`` or ``y_test`` outside it. Each error names the file and the array.
"""
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError


@dataclass
class Splits:
    x_train: np.ndarray  # (N, C, H, W) float in [0, 1]
    y_train: np.ndarray  # (N,) int64
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    description: str = ""  # how the data was split, in words

    @property
    def input_shape(self):
        return tuple(self.x_train.shape[1:])

    @property
    def n_classes(self):
        labels = [y for y in (self.y_train, self.y_val, self.y_test) if y.size]
        return int(max(y.max() for y in labels)) + 1


def _from_npz(path, val_size=None):
    try:
        with np.load(path, allow_pickle=False) as arrays:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in arrays]
            if missing:
                raise DataError(f"{path} lacks the arrays {', '.join(missing)}")
            if ("x_val" in arrays) != ("y_val" in arrays):
                raise DataError(f"{path} holds only one of x_val and y_val; give both or neither")
            loaded = {k: arrays[k] for k in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
                      if k in arrays}
    except DataError:
        raise
    except Exception as error:  # OSError, ValueError, BadZipFile, EOFError, zlib.error: not a good .npz
        raise DataError(f"cannot read {path} as an .npz file of arrays: {error}") from None
    check_user_arrays(path, loaded)
    x, y = loaded["x_train"], loaded["y_train"]
    if "x_val" in loaded:
        if val_size is not None:
            raise ConfigError(f"{path} holds its own x_val and y_val; --val-size is for files without them")
        x_val, y_val, how = loaded["x_val"], loaded["y_val"], f"x_val of {path.name}"
    elif val_size:
        if not val_size < len(x):
            raise ConfigError(f"--val-size {val_size} must be smaller than the {len(x)} images of {path}:x_train")
        x, x_val, y, y_val = x[:-val_size], x[-val_size:], y[:-val_size], y[-val_size:]
        how = f"the last {val_size} of x_train, --val-size"
    else:
        x_val, y_val = x[:0], y[:0]
        how = "none: the file has no x_val" + ("" if val_size == 0 else "; --val-size N holds out the last N")
    return Splits(x, y, x_val, y_val, loaded["x_test"], loaded["y_test"], how)


def _whole_labels(path, name, y):
    """``y`` as int64, or a DataError naming the file and array when they are not whole numbers."""
    where = f"{path}:{name}"
    if y.ndim != 1:
        raise DataError(f"{where} must be a 1-D array of integer labels, got shape {y.shape}")
    if y.dtype.kind in "iu":
        return y.astype(np.int64)
    if y.dtype.kind != "f":
        raise DataError(f"{where} must hold integer labels, got dtype {y.dtype}")
    bad = ~np.isfinite(y) | (y != np.round(y))
    if bad.any():
        raise DataError(f"{where} must hold integer labels, got {y[bad][0].item()!r} at index {np.flatnonzero(bad)[0]} "
                        f"({int(bad.sum())} such values); labels are class numbers 0..C-1")
    return y.astype(np.int64)


def check_user_arrays(path, arrays):
    """Check the arrays of a user's .npz file (see the module's docstring); labels become int64."""
    shape = None
    for part in ("train", "val", "test"):
        if f"x_{part}" not in arrays:
            continue
        x, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
        where = f"{path}:x_{part}"
        if x.dtype.kind not in "iuf":
            raise DataError(f"{where} must hold real numbers, got dtype {x.dtype}")
        if x.ndim < 2:
            raise DataError(f"{where} must be (N, C, H, W) or (N, D) images, got shape {x.shape}")
        if shape is None:
            shape = x.shape[1:]
        elif x.shape[1:] != shape:
            raise DataError(f"{where} holds images of shape {x.shape[1:]} but x_train's are {shape}")
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            raise DataError(f"{where} holds NaN or infinite values")
        if x.dtype.kind in "iu" and x.size and x.max() > 1:
            raise DataError(f"{where} holds integers up to {x.max()}; hebbref expects images as floats in "
                            f"[0, 1]: divide by {255 if x.max() <= 255 else x.max()} first")
        y = arrays[f"y_{part}"] = _whole_labels(path, f"y_{part}", y)
        if len(x) != len(y):
            raise DataError(f"{path}: x_{part} holds {len(x)} images but y_{part} holds {len(y)} labels")
        if y.size and y.min() < 0:
            raise DataError(f"{path}:y_{part} holds the negative label {y.min()}; labels are 0..C-1")
    if not len(arrays["y_train"]):
        raise DataError(f"{path}:x_train holds no images")
    y = arrays["y_train"]
    n_classes = int(y.max()) + 1
    if n_classes < 2:
        raise DataError(f"{path}:y_train holds only the label 0; a classifier needs at least two classes")
    absent = np.setdiff1d(np.arange(n_classes), y)
    if absent.size:
        raise DataError(
            f"{path}:y_train has labels up to {n_classes - 1} but never the labels {_some(absent)}; "
            f"labels must be class numbers 0..C-1 with every class present in y_train")
    for part in ("val", "test"):
        other = arrays.get(f"y_{part}")
        if other is not None and other.size and other.max() >= n_classes:
            raise DataError(f"{path}:y_{part} holds the label {other.max()}, a class y_train never has "
                            f"(its labels are 0..{n_classes - 1})")


def _some(values, k=5):
    shown = ", ".join(str(v) for v in values[:k])
    return shown + (f", ... ({len(values)} labels)" if len(values) > k else "")


def _from_datasets(name, data_dir, val_size=None):
    try:
        from ..datasets import load_dataset
    except ImportError:
        raise DataError(
            f"cannot load dataset {name!r}: hebbref.datasets is not installed; "
            "pass an .npz file instead"
        ) from None
    parts = [load_dataset(name, split, data_dir=data_dir, val_size=val_size) for split in ("train", "val", "test")]
    n_val = len(parts[1][1])
    how = (f"the last {n_val} of the official training set, "
           + ("--val-size" if val_size is not None else "the default: 5,000 or a tenth, whichever is smaller"))
    if n_val == 0:
        how = "none: --val-size 0"
    return Splits(*parts[0], *parts[1], *parts[2], how)


def load_splits(data, data_dir=None, train_size=None, val_size=None):
    """Splits for ``data`` (a dataset name or an .npz path), the first ``train_size`` train images only.

    ``val_size``: images held out from the end of the training set for validation
    (None: the dataset's default, or the file's own x_val; 0: none).
    """
    if str(data).endswith(".npz"):
        splits = _from_npz(Path(data), val_size)
    else:
        splits = _from_datasets(data, data_dir, val_size)
    splits.y_train, splits.y_val, splits.y_test = (
        np.asarray(y, dtype=np.int64) for y in (splits.y_train, splits.y_val, splits.y_test)
    )
    if train_size is not None:
        if train_size > len(splits.x_train):
            raise ConfigError(
                f"--train-size {train_size} is larger than the {len(splits.x_train)} training images of {data}"
            )
        used = f" (the first {train_size} of {len(splits.y_train)}, --train-size)"
        splits.x_train, splits.y_train = splits.x_train[:train_size], splits.y_train[:train_size]
    else:
        used = ""
    splits.description = (f"data {data}: {len(splits.y_train)} training images{used}, {len(splits.y_val)} "
                          f"validation ({splits.description}), {len(splits.y_test)} test")
    return splits
