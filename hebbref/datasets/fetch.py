"""Download a dataset's published files, checked against pinned checksums.

    fetch("fashion-mnist")                         # into the data folder (see locations.py)
    fetch("cifar10", data_dir="data", mirror="https://example.org/cifar/")

For every file of the dataset: if it is already in the data folder and passes its
checksum, it is kept. Otherwise it is downloaded from each base URL in turn (or only
from ``mirror``, a folder holding the same file names) into a temporary
``.NAME.XXXX.part`` file in the same folder, its MD5 and SHA-256 are computed while it
streams in, and only if one of them equals a pinned value is it renamed to its
published name (``os.replace``: atomic). A short download (the server closed before
Content-Length bytes), a server error (404, 500, ...), an unreachable host or a
checksum mismatch raises a DataError, and the partial file is deleted.

Pinned checksums (hex digests of the file as downloaded):

- MNIST: the MD5s in torchvision's ``torchvision/datasets/mnist.py`` (pytorch/vision,
  commit 01977a187961243eaf66ead246fd92a5c6c7ccfc), the same four values many other
  projects list; read there, not checked against a download here (no internet).
- Fashion-MNIST: the MD5s published by Zalando (and in the same torchvision file), and the
  SHA-256 of the files Debian's ``dataset-fashion-mnist`` 0.0~git20200523.55506a9-1
  installs in /usr/share/datasets/fashion-mnist/, computed here with ``sha256sum``.
  Debian recompressed the files (their gzip headers carry no file name and a 2020 time
  stamp), so their bytes differ from the published ones: either identity is accepted.
- CIFAR-10 / CIFAR-100: the MD5s published on https://www.cs.toronto.edu/~kriz/cifar.html.
"""
import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from .locations import data_folder

CHUNK = 1 << 16  # bytes read per step


@dataclass(frozen=True)
class RemoteFile:
    name: str  # the published file name, kept in the data folder
    md5: tuple = ()  # accepted MD5 hex digests
    sha256: tuple = ()  # accepted SHA-256 hex digests

    def accepts(self, md5, sha256):
        return md5 in self.md5 or sha256 in self.sha256


@dataclass(frozen=True)
class Download:
    folder: str  # subfolder of the data folder
    base_urls: tuple  # tried in order; a file's URL is base + name
    files: tuple


def _idx(digests_md5, digests_sha256=None):
    names = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    sha = digests_sha256 or [None] * 4
    return tuple(RemoteFile(n, (m,), (s,) if s else ()) for n, m, s in zip(names, digests_md5, sha))


DOWNLOADS = {
    "mnist": Download("mnist", (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",  # torchvision's mirror of the files below
        "http://yann.lecun.com/exdb/mnist/",  # the original publisher (often refuses downloads)
    ), _idx(["f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
             "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c"])),
    "fashion-mnist": Download("fashion-mnist", (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ), _idx(["8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
             "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310"],
            ["b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
             "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
             "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
             "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05"])),
    "cifar10": Download("cifar10", ("https://www.cs.toronto.edu/~kriz/",), (
        RemoteFile("cifar-10-python.tar.gz", ("c58f30108f718f92721af3b95e74349a",)),)),
    "cifar10-binary": Download("cifar10", ("https://www.cs.toronto.edu/~kriz/",), (
        RemoteFile("cifar-10-binary.tar.gz", ("c32a1d4ab5d03f1284b67883e8d87530",)),)),
    "cifar100": Download("cifar100", ("https://www.cs.toronto.edu/~kriz/",), (
        RemoteFile("cifar-100-python.tar.gz", ("eb9058c3a382ffc7106e4002c42a8d85",)),)),
}


def get_download(name):
    if name == "fashion-mnist-mini":
        raise DataError("fashion-mnist-mini ships inside hebbref: nothing to fetch")
    try:
        return DOWNLOADS[name]
    except (KeyError, TypeError):
        raise DataError(f"unknown dataset {name!r} to fetch; expected one of {', '.join(map(repr, DOWNLOADS))}") from None


class ProgressBar:
    """``name  [#########-----------]  45%  11.9/26.4 MB`` redrawn in place on ``stream``."""

    def __init__(self, stream, label, total, width=30):
        self.stream, self.label, self.total, self.width = stream, label, total, width
        self.done, self.shown, self.drawn = 0, None, False

    def update(self, n):
        self.done += n
        if self.stream is None:
            return
        if self.total:
            percent = min(100, 100 * self.done // self.total)
            if percent == self.shown:
                return
            self.shown = percent
            filled = self.width * percent // 100
            bar = f"[{'#' * filled}{'-' * (self.width - filled)}] {percent:3d}%  " \
                  f"{self.done / 1e6:.1f}/{self.total / 1e6:.1f} MB"
        else:
            bar = f"{self.done / 1e6:.1f} MB"
        self.stream.write(f"\r{self.label}  {bar}")
        self.stream.flush()
        self.drawn = True

    def close(self):
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()


def file_digests(path):
    """(md5, sha256) hex digests of a file, read in chunks."""
    md5, sha256 = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            md5.update(chunk)
            sha256.update(chunk)
    return md5.hexdigest(), sha256.hexdigest()


def download(url, destination, remote, progress=None, timeout=60):
    """Stream ``url`` into a temporary file beside ``destination``; rename it only if its checksum passes."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=destination.parent, prefix=f".{remote.name}.", suffix=".part")
    try:
        md5, sha256 = hashlib.md5(), hashlib.sha256()
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            bar = ProgressBar(progress, remote.name, total)
            try:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    md5.update(chunk)
                    sha256.update(chunk)
                    bar.update(len(chunk))
            finally:
                bar.close()
        if total is not None and bar.done != total:
            raise DataError(f"download of {url} interrupted: {bar.done} of {total} bytes")
        if not remote.accepts(md5.hexdigest(), sha256.hexdigest()):
            raise DataError(f"{url} fails its checksum (md5 {md5.hexdigest()}, expected "
                            f"{' or '.join(remote.md5 + remote.sha256)}); the download was deleted")
        os.replace(temporary, destination)
    except urllib.error.HTTPError as error:
        raise DataError(f"{url}: the server answered {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        raise DataError(f"cannot reach {url}: {error.reason}") from None
    except (http.client.HTTPException, OSError) as error:
        raise DataError(f"download of {url} interrupted: {type(error).__name__} {error}".rstrip()) from None
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return destination


def fetch(name, data_dir=None, mirror=None, progress=None, timeout=60):
    """Download dataset ``name`` into the data folder; return the paths of its checked files.

    ``mirror``: a base URL holding the same file names, used instead of the published ones.
    ``progress``: a text stream (e.g. sys.stderr) for the progress bars, or None.
    """
    spec = get_download(name)
    folder = data_folder(data_dir)[0] / spec.folder
    bases = (mirror.rstrip("/") + "/",) if mirror else spec.base_urls
    paths = []
    for remote in spec.files:
        destination = folder / remote.name
        if destination.is_file() and remote.accepts(*file_digests(destination)):
            if progress is not None:
                progress.write(f"{remote.name}  already present, checksum ok\n")
            paths.append(destination)
            continue
        failures = []
        for base in bases:
            try:
                paths.append(download(base + remote.name, destination, remote, progress, timeout))
                break
            except DataError as error:
                failures.append(str(error))
        else:
            raise DataError(f"could not fetch {remote.name}: {'; '.join(failures)}")
    return paths
