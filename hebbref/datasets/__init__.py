"""Image datasets in their published formats: ``load_dataset(name, split) -> (x, y)``.

    x, y = load_dataset("fashion-mnist", "train")      # x (55000, 1, 28, 28) float32 in [0, 1]
    x, y = load_dataset("cifar10", "test")             # x (10000, 3, 32, 32), y int64 in 0..9
    x, y = load_dataset("cifar100", "val", label_mode="coarse")   # y in 0..19
    x, y = load_dataset("fashion-mnist-mini", "train") # shipped with hebbref, no download

Splits (SPEC §6: the last 5,000 training images were the validation set):

    train      the official training set minus its last ``val_size`` images
    val        the last ``val_size`` images of the official training set
    train+val  the whole official training set
    test       the official test set

``val_size`` defaults to 5,000 (the paper's) or a tenth of the training set, whichever is
smaller: 5,000 for the full sets, 1,000 for ``fashion-mnist-mini``, 833 for an 8,334-image
set. ``val_size=0`` keeps every training image for training. Pixels are divided by 255.

Files are looked up as ``hebbref.datasets.locations`` describes; the accepted file
layouts are listed in ``hebbref.datasets.catalog``; ``hebbref data fetch NAME``
downloads them (``hebbref.datasets.fetch``). Decoded uint8 arrays are kept in memory,
keyed by the file's path, size and modification time, so a second call (any split)
does not read the file again. Every problem with the files raises a DataError.
"""
import numpy as np

from ..errors import ConfigError, DataError
from .catalog import DATASETS, get_dataset, locate
from .fetch import fetch

SPLITS = ("train", "val", "train+val", "test")
LABEL_MODES = ("fine", "coarse")
DEFAULT_VAL_SIZE = 5000

_decoded = {}  # (name, path, label_mode, file stamps) -> {"train": (uint8, int64), "test": ...}


def dataset_names():
    """The names ``load_dataset`` accepts."""
    return list(DATASETS)


def _stamp(path):
    """(name, size, mtime) of the file, or of every file directly in the folder: changes when they do."""
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    return tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)


def load_arrays(name, data_dir=None, label_mode="fine"):
    """Decoded uint8 arrays of both official splits, from the memory cache when unchanged on disk.

    Returns ``(path, {"train": (images (N, C, H, W) uint8, labels (N,) int64), "test": ...})``.
    """
    dataset = get_dataset(name)
    if label_mode not in LABEL_MODES:
        raise ConfigError(f"unknown label_mode {label_mode!r}; expected 'fine' or 'coarse'")
    if label_mode == "coarse" and name != "cifar100":
        raise ConfigError(f"label_mode='coarse' exists only for cifar100, not {name}")
    path, reader = locate(dataset.name, data_dir)
    key = (name, str(path), label_mode, _stamp(path))
    if key not in _decoded:
        splits = reader(path, label_mode) if name == "cifar100" else reader(path)
        for split, (images, labels) in splits.items():
            if images.shape[1:] != dataset.image_shape:
                raise DataError(f"{path}: {split} images of shape {images.shape[1:]}, expected {dataset.image_shape}")
        _decoded[key] = splits
    return path, _decoded[key]


def clear_cache():
    """Forget every decoded array (they are re-read from disk on the next call)."""
    _decoded.clear()


def default_val_size(name, n_train):
    """5,000 (SPEC §6) or a tenth of the ``n_train`` training images, whichever is smaller."""
    return min(DEFAULT_VAL_SIZE, n_train // 10)


def load_dataset(name, split, data_dir=None, val_size=None, label_mode="fine"):
    """One split of a dataset as ``(x, y)``: x float32 (N, C, H, W) in [0, 1], y int64 (N,).

    name        'mnist', 'fashion-mnist', 'cifar10', 'cifar100' or 'fashion-mnist-mini'
    split       'train', 'val', 'train+val' or 'test'
    data_dir    the data folder (else $HEBBREF_DATA, else the user cache folder)
    val_size    images held out from the end of the training set (default: 5,000 or a
                tenth of the set, whichever is smaller; 0: none)
    label_mode  'fine' (default) or 'coarse' (the 20 superclasses of cifar100)

    A missing, truncated or corrupt file raises a DataError (a ValueError) that says
    which file and how to get a good one.
    """
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; expected one of {', '.join(map(repr, SPLITS))}")
    _, splits = load_arrays(name, data_dir, label_mode)
    images, labels = splits["test" if split == "test" else "train"]  # (N, C, H, W) uint8, (N,)
    if split in ("train", "val"):
        n_train = len(images)
        n_val = default_val_size(name, n_train) if val_size is None else val_size
        if not isinstance(n_val, (int, np.integer)) or isinstance(n_val, bool) or not 0 <= n_val < n_train:
            raise ConfigError(f"val_size must be an integer in 0..{n_train - 1} for {name}, got {n_val!r}")
        cut = n_train - n_val
        images, labels = (images[:cut], labels[:cut]) if split == "train" else (images[cut:], labels[cut:])
    x = np.divide(images, np.float32(255), dtype=np.float32)  # (N, C, H, W) in [0, 1], one pass
    return x, labels.astype(np.int64)


__all__ = ["DATASETS", "SPLITS", "clear_cache", "dataset_names", "fetch", "load_arrays", "load_dataset"]
