"""CIFAR-10 and CIFAR-100, in the two formats their authors publish.

Python version (``cifar-10-python.tar.gz``, ``cifar-100-python.tar.gz``, or the folders
they unpack to): each batch is a Python 2 pickle of a dict with byte-string keys::

    b"data"           uint8 array (N, 3072): 1024 red, 1024 green, 1024 blue values,
                      each a 32x32 image in row-major order  -> reshape (N, 3, 32, 32)
    b"labels"         list of N ints in 0..9                 (CIFAR-10)
    b"fine_labels"    list of N ints in 0..99                (CIFAR-100)
    b"coarse_labels"  list of N ints in 0..19                (CIFAR-100)
    b"batch_label", b"filenames"                             (ignored)

CIFAR-10 has ``data_batch_1`` .. ``data_batch_5`` (10,000 images each) and
``test_batch`` in ``cifar-10-batches-py/``; CIFAR-100 has ``train`` (50,000) and
``test`` (10,000) in ``cifar-100-python/``.

Binary version (``cifar-10-binary.tar.gz`` or ``cifar-10-batches-bin/``): files
``data_batch_1.bin`` .. ``data_batch_5.bin`` and ``test_batch.bin``, each a run of
3073-byte records: 1 label byte, then the 3072 pixel bytes in the order above.

The restricted unpickler
------------------------
``pickle.load`` will call any function a file names, so a doctored "CIFAR" file could
run code. :class:`RestrictedUnpickler` resolves only the four globals the official
files contain, the pieces NumPy needs to rebuild a uint8 array:
``numpy.core.multiarray._reconstruct`` (``numpy._core.multiarray._reconstruct`` in
files written by NumPy 2), ``numpy.ndarray`` and ``numpy.dtype``. Any other global
(``os.system``, ``builtins.eval``, ``_codecs.encode``, ...) raises a DataError before
anything is called. Tar archives are read member by member in memory; nothing is
extracted to disk, so member names cannot write outside the data folder.
"""
import io
import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError
from .idx import check_labels

IMAGE_SHAPE = (3, 32, 32)
RECORD_SIZE = 1 + 3072  # binary version: label byte + pixels


def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct  # NumPy >= 2
    except ImportError:  # pragma: no cover - NumPy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


# (module, name) -> object: everything an official CIFAR pickle may ask for
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class ForbiddenGlobal(pickle.UnpicklingError):
    """A pickle asked for a global outside ``ALLOWED_GLOBALS``."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that admits only ``ALLOWED_GLOBALS``: the official files load, nothing runs."""

    def find_class(self, module, name):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise ForbiddenGlobal(
                f"refusing to load {module}.{name}: official CIFAR files hold only NumPy arrays, lists and bytes"
            ) from None


def load_pickle(data, where):
    """Unpickle one CIFAR batch (bytes) with the restricted unpickler -> dict with byte-string keys."""
    try:
        batch = RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except ForbiddenGlobal as error:
        raise DataError(f"{where}: {error}") from None
    except Exception as error:  # any other failure of a corrupt pickle: EOFError, ValueError, ...
        raise DataError(f"{where} is not a valid CIFAR pickle ({type(error).__name__}: {error})") from None
    if not isinstance(batch, dict):
        raise DataError(f"{where} is not a valid CIFAR pickle: it holds a {type(batch).__name__}, not a dict")
    return batch


def batch_arrays(batch, label_key, n_classes, where):
    """Images (N, 3, 32, 32) uint8 and labels (N,) from one unpickled batch, checked."""
    if b"data" not in batch or label_key not in batch:
        raise DataError(f"{where} lacks the {b'data'!r} or {label_key!r} entry of a CIFAR batch")
    data = batch[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{where}: {b'data'!r} should be a uint8 array (N, 3072), got "
                        f"{getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}")
    labels = np.asarray(batch[label_key], dtype=np.int64)  # (N,)
    if labels.shape != (len(data),):
        raise DataError(f"{where} holds {len(data)} images but {labels.size} labels")
    check_labels(labels, n_classes, where)
    return data.reshape(-1, *IMAGE_SHAPE), labels  # (N, 3, 32, 32), (N,)


class BatchSource:
    """Named members of a tar.gz archive or files of a folder, read as bytes."""

    def __init__(self, path, inner_folder):
        self.path = Path(path)
        self.inner_folder = inner_folder
        self._members = None
        if self.path.is_file():
            self._members = self._read_archive()

    def _read_archive(self):
        members = {}
        try:
            with tarfile.open(self.path, "r:gz") as archive:
                for member in archive:
                    if member.isfile():
                        members[member.name] = archive.extractfile(member).read()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
            raise DataError(f"cannot read {self.path}: not a complete tar.gz archive ({error or type(error).__name__})") from None
        return members

    def read(self, name):
        if self._members is None:
            try:
                return (self.path / name).read_bytes()
            except OSError:
                raise DataError(f"{self.path} lacks {name}") from None
        member = f"{self.inner_folder}/{name}"
        if member not in self._members:
            raise DataError(f"{self.path} lacks {member}")
        return self._members[member]

    def where(self, name):
        return f"{self.path}:{name}" if self._members is not None else str(self.path / name)


def read_batches(source, names, label_key, n_classes):
    """Concatenate the batches ``names`` of a python-version source -> (N, 3, 32, 32), (N,)."""
    parts = [batch_arrays(load_pickle(source.read(name), source.where(name)), label_key, n_classes,
                          source.where(name)) for name in names]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def read_cifar10_python(path):
    """CIFAR-10 python version (tar.gz or ``cifar-10-batches-py/``) -> dict of split -> (images, labels)."""
    source = BatchSource(path, "cifar-10-batches-py")
    return {
        "train": read_batches(source, [f"data_batch_{i}" for i in range(1, 6)], b"labels", 10),
        "test": read_batches(source, ["test_batch"], b"labels", 10),
    }


def read_cifar100_python(path, label_mode="fine"):
    """CIFAR-100 python version (tar.gz or ``cifar-100-python/``); fine (100) or coarse (20) labels."""
    source = BatchSource(path, "cifar-100-python")
    key, n_classes = {"fine": (b"fine_labels", 100), "coarse": (b"coarse_labels", 20)}[label_mode]
    return {split: read_batches(source, [split], key, n_classes) for split in ("train", "test")}


def read_binary_batch(data, where, n_classes=10):
    """Records of (label byte, 3072 pixel bytes) -> (N, 3, 32, 32) uint8, (N,) int64."""
    if len(data) == 0 or len(data) % RECORD_SIZE:
        raise DataError(f"{where} is truncated or corrupt: {len(data)} bytes is not a whole number "
                        f"of {RECORD_SIZE}-byte records")
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD_SIZE)  # (N, 3073)
    labels = records[:, 0].astype(np.int64)  # (N,)
    check_labels(labels, n_classes, where)
    return records[:, 1:].reshape(-1, *IMAGE_SHAPE), labels  # (N, 3, 32, 32), (N,)


def read_cifar10_binary(path):
    """CIFAR-10 binary version (tar.gz or ``cifar-10-batches-bin/``) -> dict of split -> (images, labels)."""
    source = BatchSource(path, "cifar-10-batches-bin")

    def batches(names):
        parts = [read_binary_batch(source.read(name), source.where(name)) for name in names]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    return {"train": batches([f"data_batch_{i}.bin" for i in range(1, 6)]), "test": batches(["test_batch.bin"])}
