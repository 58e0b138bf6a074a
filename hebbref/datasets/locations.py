"""Where hebbref looks for data, in order.

1. the ``data_dir`` argument (``--data-dir`` on the command line), else
2. the ``HEBBREF_DATA`` environment variable, else
3. the user cache folder: ``$XDG_CACHE_HOME/hebbref``, or ``~/.cache/hebbref``;

that is one *data folder*, in which every dataset has its own subfolder (``mnist/``,
``fashion-mnist/``, ``cifar10/``, ``cifar100/``) holding the files under their published
names. After it, a dataset's *system folders* are searched: Fashion-MNIST is found in
``/usr/share/datasets/fashion-mnist/``, where Debian's ``dataset-fashion-mnist``
package installs the four IDX files.
"""
import os
from pathlib import Path

# dataset folder name -> folders a system package installs it in (searched after the data folder)
SYSTEM_FOLDERS = {
    "fashion-mnist": (Path("/usr/share/datasets/fashion-mnist"),),
}


def cache_folder():
    """``$XDG_CACHE_HOME/hebbref``, or ``~/.cache/hebbref`` when XDG_CACHE_HOME is unset or empty."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hebbref"


def data_folder(data_dir=None):
    """The one data folder in use and why: ``(path, "data_dir argument" | "HEBBREF_DATA" | "user cache")``."""
    if data_dir is not None:
        return Path(data_dir).expanduser(), "data_dir argument"
    if os.environ.get("HEBBREF_DATA"):
        return Path(os.environ["HEBBREF_DATA"]).expanduser(), "HEBBREF_DATA"
    return cache_folder(), "user cache"


def search_folders(folder_name, data_dir=None):
    """The folders searched for one dataset, in order: data folder's subfolder, then system folders."""
    root, _ = data_folder(data_dir)
    return [root / folder_name, *SYSTEM_FOLDERS.get(folder_name, ())]
