"""The datasets hebbref knows: their folders, the file layouts accepted, and readers.

A reader takes the path it was found at and returns ``{"train": (images, labels),
"test": (images, labels)}`` with images uint8 (N, C, H, W) and labels int64 (N,).

==================  ==========  ============================================================
name                folder      files accepted in the folder, first found wins
==================  ==========  ============================================================
mnist               mnist/      train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz],
                                t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]
fashion-mnist       fashion-    the same four IDX names (also /usr/share/datasets/fashion-mnist/)
                    mnist/
cifar10             cifar10/    cifar-10-batches-py/, cifar-10-python.tar.gz,
                                cifar-10-batches-bin/, cifar-10-binary.tar.gz
cifar100            cifar100/   cifar-100-python/, cifar-100-python.tar.gz
fashion-mnist-mini  (package)   hebbref/data/fashion-mnist-mini.npz, shipped with hebbref
==================  ==========  ============================================================
"""
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import zipfile

import numpy as np

from ..errors import DataError
from . import cifar
from .idx import check_labels, read_idx_pair
from .locations import SYSTEM_FOLDERS, search_folders

IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MINI_FILE = "fashion-mnist-mini.npz"


@dataclass(frozen=True)
class Dataset:
    name: str
    folder: str | None  # subfolder of the data folder; None: shipped inside the package
    n_classes: int
    image_shape: tuple  # (C, H, W)
    layouts: tuple  # ((relative path, reader), ...) tried in order; "IDX" for the four IDX files
    how_to_get: str


def idx_files(folder):
    """The four IDX files in ``folder`` ({base name: path}, .gz preferred), or the names missing."""
    found, missing = {}, []
    for base in (name for pair in IDX_NAMES.values() for name in pair):
        for candidate in (folder / f"{base}.gz", folder / base):
            if candidate.is_file():
                found[base] = candidate
                break
        else:
            missing.append(f"{base}.gz")
    return found, missing


def read_idx_folder(folder, n_classes=10):
    """MNIST or Fashion-MNIST: the four IDX files of a folder -> images (N, 1, 28, 28)."""
    found, missing = idx_files(folder)
    if missing:
        raise DataError(f"{folder} lacks {', '.join(missing)}")
    splits = {}
    for split, (images_name, labels_name) in IDX_NAMES.items():
        images, labels = read_idx_pair(found[images_name], found[labels_name], n_classes)
        splits[split] = images[:, None], labels.astype(np.int64)  # (N, 1, 28, 28), (N,)
    return splits


def mini_path():
    """Where the embedded fashion-mnist-mini arrays lie inside the installed package."""
    return Path(str(resources.files("hebbref") / "data" / MINI_FILE))


def read_mini(path):
    """fashion-mnist-mini: uint8 arrays in a compressed npz (no pickles: allow_pickle=False)."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            splits = {split: (arrays[f"x_{split}"][:, None], arrays[f"y_{split}"].astype(np.int64))
                      for split in ("train", "test")}
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(f"cannot read {path}: {error}; reinstall hebbref") from None
    for split, (_, labels) in splits.items():
        check_labels(labels, 10, f"{path}:y_{split}")
    return splits


def _fetch_hint(name):
    return f"run `hebbref data fetch {name}`"


DATASETS = {
    "mnist": Dataset("mnist", "mnist", 10, (1, 28, 28), (("IDX", read_idx_folder),),
                     _fetch_hint("mnist")),
    "fashion-mnist": Dataset("fashion-mnist", "fashion-mnist", 10, (1, 28, 28), (("IDX", read_idx_folder),),
                             _fetch_hint("fashion-mnist") + " or `apt install dataset-fashion-mnist`"),
    "cifar10": Dataset("cifar10", "cifar10", 10, (3, 32, 32), (
        ("cifar-10-batches-py", cifar.read_cifar10_python),
        ("cifar-10-python.tar.gz", cifar.read_cifar10_python),
        ("cifar-10-batches-bin", cifar.read_cifar10_binary),
        ("cifar-10-binary.tar.gz", cifar.read_cifar10_binary),
    ), _fetch_hint("cifar10")),
    "cifar100": Dataset("cifar100", "cifar100", 100, (3, 32, 32), (
        ("cifar-100-python", cifar.read_cifar100_python),
        ("cifar-100-python.tar.gz", cifar.read_cifar100_python),
    ), _fetch_hint("cifar100")),
    "fashion-mnist-mini": Dataset("fashion-mnist-mini", None, 10, (1, 28, 28), (), "reinstall hebbref"),
}


def get_dataset(name):
    """The catalog entry for ``name``; an unknown name raises a DataError listing the known ones."""
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        raise DataError(f"unknown dataset {name!r}; expected one of {', '.join(map(repr, DATASETS))}") from None


def locate(name, data_dir=None):
    """``(path, reader)`` for the first layout of ``name`` found, searching the folders in order.

    Raises a DataError that names the folders searched, the files expected and how to get them.
    """
    dataset = get_dataset(name)
    if dataset.folder is None:
        return mini_path(), read_mini
    folders = search_folders(dataset.folder, data_dir)
    for folder in folders:
        for relative, reader in dataset.layouts:
            if relative == "IDX":
                found, missing = idx_files(folder)
                if found and not missing:
                    return folder, reader
                if found:  # some IDX files here but not all: say which are missing
                    raise DataError(f"{name}: {folder} lacks {', '.join(missing)}; {dataset.how_to_get}")
            elif (folder / relative).exists():
                return folder / relative, reader
    expected = "the four IDX files (train-images-idx3-ubyte.gz, ...)" if dataset.layouts[0][0] == "IDX" \
        else " or ".join(relative for relative, _ in dataset.layouts)
    searched = ", ".join(str(f) for f in folders)
    raise DataError(f"{name} not found: looked for {expected} in {searched}; {dataset.how_to_get}")


__all__ = ["DATASETS", "Dataset", "SYSTEM_FOLDERS", "get_dataset", "locate", "mini_path"]
