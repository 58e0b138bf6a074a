"""Tiny dataset files in the exact published formats, for the dataset tests.

- IDX (MNIST, Fashion-MNIST): magic 0x00000803 / 0x00000801, big-endian dimensions,
  unsigned bytes; gzipped when the name ends in ``.gz``.
- CIFAR python version: Python 2 pickles (protocol 2, ``str`` written as BINSTRING,
  NumPy arrays through ``numpy.core.multiarray._reconstruct``), as the official files
  are, in ``cifar-10-batches-py/`` or ``cifar-100-python/``, or a tar.gz of that folder.
- CIFAR-10 binary version: 3073-byte records in ``cifar-10-batches-bin/`` or its tar.gz.

Every writer returns the arrays it wrote, so tests compare what is read with them.
"""
import gzip
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np

from hebbref.datasets.cifar import ALLOWED_GLOBALS

_RECONSTRUCT = ALLOWED_GLOBALS[("numpy.core.multiarray", "_reconstruct")]


class Python2Pickler(pickle._Pickler):
    """Writes pickles as Python 2's cPickle did: byte and text strings as BINSTRING,
    NumPy's reconstructor under its NumPy 1 name ``numpy.core.multiarray``."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_string(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_py2_string
    dispatch[str] = save_py2_string

    def save_global(self, obj, name=None):
        if obj is _RECONSTRUCT:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
        else:
            super().save_global(obj, name)


def python2_pickle(obj):
    stream = io.BytesIO()
    Python2Pickler(stream, protocol=2).dump(obj)
    return stream.getvalue()


def random_images(rng, n, shape):
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)


# ---------------------------------------------------------------- IDX

def idx_bytes(array):
    """An IDX file of unsigned bytes: 0x00 0x00 0x08 ndim, big-endian dims, data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_file(path, data):
    """Write ``data``, gzipped when the name ends in .gz (mtime 0: reproducible bytes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data, mtime=0) if path.name.endswith(".gz") else data)
    return path


def write_idx_dataset(folder, n_train=12, n_test=6, gz=True, seed=0, n_classes=10):
    """The four MNIST-named IDX files in ``folder`` -> {"train": (images, labels), "test": ...}."""
    rng = np.random.default_rng(seed)
    suffix = ".gz" if gz else ""
    written = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = random_images(rng, n, (28, 28))
        labels = rng.integers(0, n_classes, size=n).astype(np.uint8)
        write_file(Path(folder) / f"{prefix}-images-idx3-ubyte{suffix}", idx_bytes(images))
        write_file(Path(folder) / f"{prefix}-labels-idx1-ubyte{suffix}", idx_bytes(labels))
        written[split] = images, labels
    return written


# ---------------------------------------------------------------- CIFAR

def write_members(folder, inner, members, as_tar, archive_name):
    """``members`` ({name: bytes}) as files of ``folder/inner/`` or as ``folder/archive_name`` (tar.gz)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not as_tar:
        for name, data in members.items():
            write_file(folder / inner / name, data)
        return folder / inner
    path = folder / archive_name
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(f"{inner}/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def cifar10_batch(rng, n, name):
    images = random_images(rng, n, (3, 32, 32))
    labels = rng.integers(0, 10, size=n)
    batch = {b"batch_label": f"{name} of 5".encode(), b"labels": [int(v) for v in labels],
             b"data": images.reshape(n, 3072), b"filenames": [f"img_{i}.png".encode() for i in range(n)]}
    return images, labels, python2_pickle(batch)


def write_cifar10_python(folder, per_batch=4, n_test=3, as_tar=True, seed=0):
    rng = np.random.default_rng(seed)
    members, train = {}, []
    for i in range(1, 6):
        images, labels, members[f"data_batch_{i}"] = cifar10_batch(rng, per_batch, f"training batch {i}")
        train.append((images, labels))
    test_images, test_labels, members["test_batch"] = cifar10_batch(rng, n_test, "testing batch 1")
    members["batches.meta"] = python2_pickle({b"num_cases_per_batch": per_batch, b"num_vis": 3072,
                                              b"label_names": [b"airplane", b"automobile"]})
    path = write_members(folder, "cifar-10-batches-py", members, as_tar, "cifar-10-python.tar.gz")
    written = {"train": (np.concatenate([t[0] for t in train]), np.concatenate([t[1] for t in train])),
               "test": (test_images, test_labels)}
    return path, written


def write_cifar10_binary(folder, per_batch=4, n_test=3, as_tar=True, seed=0):
    rng = np.random.default_rng(seed)
    members, written = {}, {"train": ([], []), "test": ([], [])}
    for name, split, n in [(f"data_batch_{i}.bin", "train", per_batch) for i in range(1, 6)] + \
            [("test_batch.bin", "test", n_test)]:
        images = random_images(rng, n, (3, 32, 32))
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        members[name] = np.concatenate([labels[:, None], images.reshape(n, 3072)], axis=1).tobytes()
        written[split][0].append(images)
        written[split][1].append(labels)
    members["batches.meta.txt"] = b"airplane\nautomobile\n"
    path = write_members(folder, "cifar-10-batches-bin", members, as_tar, "cifar-10-binary.tar.gz")
    return path, {split: (np.concatenate(a), np.concatenate(b)) for split, (a, b) in written.items()}


def write_cifar100_python(folder, n_train=6, n_test=4, as_tar=True, seed=0):
    rng = np.random.default_rng(seed)
    members, written = {}, {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = random_images(rng, n, (3, 32, 32))
        fine = rng.integers(0, 100, size=n)
        coarse = fine // 5  # any map 0..99 -> 0..19 will do for the test
        members[split] = python2_pickle({
            b"filenames": [f"img_{i}.png".encode() for i in range(n)], b"batch_label": split.encode(),
            b"fine_labels": [int(v) for v in fine], b"coarse_labels": [int(v) for v in coarse],
            b"data": images.reshape(n, 3072)})
        written[split] = images, fine, coarse
    members["meta"] = python2_pickle({b"fine_label_names": [b"apple"], b"coarse_label_names": [b"fish"]})
    path = write_members(folder, "cifar-100-python", members, as_tar, "cifar-100-python.tar.gz")
    return path, written


def write_tiny_separable(path, cyclic_labels=False, seed=0):
    """Three separable classes of 4×4 images in a user ``.npz``: enough to learn something in one epoch.

    Class c lights row c of the image. Splits of 120 / 30 / 60 images; labels drawn at
    random, or ``cyclic_labels`` (0, 1, 2, 0, ...) so that every split holds every class.
    Returns ``str(path)``.
    """
    rng = np.random.default_rng(seed)

    def split(n):
        y = np.arange(n) % 3 if cyclic_labels else rng.integers(0, 3, n)
        x = 0.3 * rng.random((n, 1, 4, 4), dtype=np.float32)
        for c in range(3):
            x[y == c, 0, c, :] += 0.7
        return x, y

    (xt, yt), (xv, yv), (xs, ys) = split(120), split(30), split(60)
    np.savez(path, x_train=xt, y_train=yt, x_val=xv, y_val=yv, x_test=xs, y_test=ys)
    return str(path)
