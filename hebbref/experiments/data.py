"""The arrays a training run needs: train, validation and test splits.

``--data`` names a dataset known to ``hebbref.datasets`` (``fashion-mnist``,
``fashion-mnist-mini``, ``mnist``, ``cifar10``, ``cifar100``) or an ``.npz`` file of
your own holding ``x_train, y_train, x_test, y_test`` (and optionally ``x_val, y_val``);
images are float (N, C, H, W) in [0, 1], labels integers.

The split follows SPEC §6: train on ``train`` (the training set less its last
5,000 images), select on ``val`` (those last 5,000), report ``test``.
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

    @property
    def input_shape(self):
        return tuple(self.x_train.shape[1:])

    @property
    def n_classes(self):
        labels = [y for y in (self.y_train, self.y_val, self.y_test) if y.size]
        return int(max(y.max() for y in labels)) + 1


def _from_npz(path):
    try:
        with np.load(path, allow_pickle=False) as arrays:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in arrays]
            if missing:
                raise DataError(f"{path} lacks the arrays {', '.join(missing)}")
            empty_x = arrays["x_train"][:0]
            return Splits(
                arrays["x_train"], arrays["y_train"],
                arrays["x_val"] if "x_val" in arrays else empty_x,
                arrays["y_val"] if "y_val" in arrays else np.zeros(0, np.int64),
                arrays["x_test"], arrays["y_test"],
            )
    except (OSError, ValueError) as error:
        if isinstance(error, DataError):
            raise
        raise DataError(f"cannot read {path} as an .npz file of arrays: {error}") from None


def _from_datasets(name, data_dir):
    try:
        from ..datasets import load_dataset
    except ImportError:
        raise DataError(
            f"cannot load dataset {name!r}: hebbref.datasets is not installed; "
            "pass an .npz file instead"
        ) from None
    parts = [load_dataset(name, split, data_dir=data_dir) for split in ("train", "val", "test")]
    return Splits(*parts[0], *parts[1], *parts[2])


def load_splits(data, data_dir=None, train_size=None):
    """Splits for ``data`` (a dataset name or an .npz path), the first ``train_size`` train images only."""
    if str(data).endswith(".npz"):
        splits = _from_npz(Path(data))
    else:
        splits = _from_datasets(data, data_dir)
    splits.y_train, splits.y_val, splits.y_test = (
        np.asarray(y, dtype=np.int64) for y in (splits.y_train, splits.y_val, splits.y_test)
    )
    if train_size is not None:
        if train_size > len(splits.x_train):
            raise ConfigError(
                f"--train-size {train_size} is larger than the {len(splits.x_train)} training images of {data}"
            )
        splits.x_train, splits.y_train = splits.x_train[:train_size], splits.y_train[:train_size]
    return splits
