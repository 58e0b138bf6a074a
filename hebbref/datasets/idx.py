"""IDX files: the format of MNIST and Fashion-MNIST, gzipped or not.

An IDX file is a 4-byte magic number, one big-endian uint32 per dimension, then the
values in C order::

    bytes 0-1   0x00 0x00
    byte  2     type code (0x08 = unsigned byte, the only type MNIST uses)
    byte  3     number of dimensions d (3 for images, 1 for labels)
    4*d bytes   the dimensions, big-endian uint32: (N, 28, 28) or (N,)
    the rest    prod(dimensions) values

A file whose name ends in ``.gz`` is gunzipped first. Anything that does not fit this
layout (wrong magic, fewer or more bytes than the header promises, a broken gzip
stream) raises a DataError naming the file.
"""
import gzip
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError

UNSIGNED_BYTE = 0x08


def read_bytes(path):
    """The file's bytes, gunzipped when the name ends in ``.gz``."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if path.name.endswith(".gz"):
            return gzip.decompress(raw)
        return raw
    except (OSError, EOFError, zlib.error) as error:  # BadGzipFile is an OSError
        reason = "truncated gzip stream" if isinstance(error, EOFError) else str(error) or type(error).__name__
        raise DataError(f"cannot read {path}: {reason}") from None


def read_idx(path, ndim):
    """Read an IDX file of unsigned bytes with ``ndim`` dimensions -> uint8 array.

    >>> # train-images-idx3-ubyte: ndim 3 -> (60000, 28, 28); labels: ndim 1 -> (60000,)
    """
    data = read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{path} is not an IDX file: magic number {data[:4].hex() or 'missing'}")
    if data[2] != UNSIGNED_BYTE:
        raise DataError(f"{path}: IDX type code 0x{data[2]:02x}, expected 0x08 (unsigned byte)")
    if data[3] != ndim:
        raise DataError(f"{path}: IDX file with {data[3]} dimensions, expected {ndim}")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DataError(f"{path} is truncated: {len(data)} bytes, shorter than its {header_size}-byte header")
    shape = tuple(int(n) for n in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = header_size + int(np.prod(shape))
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "too long"
        raise DataError(f"{path} is {what}: {len(data)} bytes, its header {shape} says {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape)


def read_idx_header(path):
    """The dimensions an IDX file's header declares, reading only the header."""
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as stream:
            head = stream.read(4)
            if len(head) < 4 or head[:2] != b"\0\0":
                raise DataError(f"{path} is not an IDX file")
            dims = stream.read(4 * head[3])
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"cannot read {path}: {error or type(error).__name__}") from None
    if len(dims) != 4 * head[3]:
        raise DataError(f"{path} is truncated: its header ends after {4 + len(dims)} bytes")
    return tuple(int(n) for n in np.frombuffer(dims, dtype=">u4"))


def check_idx_length(path):
    """The dimensions an IDX file's header declares, after checking the file holds exactly that many bytes.

    Reads the file once without keeping it (a gzipped one is decompressed in chunks), so
    ``hebbref data list`` sees a truncated file without decoding every image.
    """
    path = Path(path)
    shape = read_idx_header(path)
    expected = 4 + 4 * len(shape) + int(np.prod(shape, dtype=np.int64))
    if path.name.endswith(".gz"):
        length = 0
        try:
            with gzip.open(path, "rb") as stream:
                while chunk := stream.read(1 << 20):
                    length += len(chunk)
        except (OSError, EOFError, zlib.error) as error:
            reason = "truncated gzip stream" if isinstance(error, EOFError) else str(error) or type(error).__name__
            raise DataError(f"cannot read {path}: {reason}") from None
    else:
        length = path.stat().st_size
    if length != expected:
        what = "truncated" if length < expected else "too long"
        raise DataError(f"{path} is {what}: {length} bytes, its header {shape} says {expected}")
    return shape


def read_idx_pair(images_path, labels_path, n_classes):
    """Images (N, H, W) uint8 and labels (N,) uint8 from two IDX files, checked against each other."""
    images = read_idx(images_path, ndim=3)  # (N, H, W)
    labels = read_idx(labels_path, ndim=1)  # (N,)
    if len(images) != len(labels):
        raise DataError(f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels")
    check_labels(labels, n_classes, labels_path)
    return images, labels


def check_labels(labels, n_classes, where):
    """Raise a DataError if a label lies outside 0..n_classes-1."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        bad = labels[(labels < 0) | (labels >= n_classes)][0]
        raise DataError(f"{where}: label {bad} out of range 0..{n_classes - 1}")
