"""fetch() against a local HTTP server on 127.0.0.1: success, mirrors, and every failure.

The server runs in a daemon thread, answers from a table of routes and stops itself
after 60 s at the latest (the fixture stops it at once when the test ends).
"""
import gzip
import hashlib
import http.server
import io
import threading
from pathlib import Path

import numpy as np
import pytest

from hebbref.datasets import clear_cache, fetch, load_dataset
from hebbref.datasets.fetch import DOWNLOADS, Download, RemoteFile
from hebbref.errors import DataError

from data_files import write_idx_dataset

DEBIAN = Path("/usr/share/datasets/fashion-mnist")


class Handler(http.server.BaseHTTPRequestHandler):
    routes = {}  # path -> (status, body, how): how is "whole" or "cut" (closes after half the body)
    requests = []

    def do_GET(self):
        self.requests.append(self.path)
        status, body, how = self.routes.get(self.path, (404, b"not found", "whole"))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if how == "cut" else body)
        if how == "cut":
            self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    routes, requests = {}, []
    handler = type("TestHandler", (Handler,), {"routes": routes, "requests": requests})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    deadline = threading.Timer(60, httpd.shutdown)  # bounded: never outlives a stuck test
    deadline.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.routes, httpd.requests = routes, requests
    yield httpd
    deadline.cancel()
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@pytest.fixture
def tiny_mnist(tmp_path, server, monkeypatch):
    """Four tiny IDX files served under /pub/, pinned by their MD5 in a stand-in table entry."""
    source = tmp_path / "source"
    written = write_idx_dataset(source, n_train=5, n_test=3)
    files = []
    for path in sorted(source.iterdir()):
        body = path.read_bytes()
        server.routes[f"/pub/{path.name}"] = (200, body, "whole")
        files.append(RemoteFile(path.name, (hashlib.md5(body).hexdigest(),)))
    monkeypatch.setitem(DOWNLOADS, "mnist", Download("mnist", (f"{server.url}/down/", f"{server.url}/pub/"),
                                                     tuple(files)))
    clear_cache()
    return written


def folder_listing(folder):
    return sorted(p.name for p in Path(folder).iterdir()) if Path(folder).exists() else []


def test_fetch_falls_back_to_the_next_url_then_loads(tmp_path, server, tiny_mnist):
    progress = io.StringIO()
    paths = fetch("mnist", data_dir=tmp_path / "data", progress=progress)
    assert folder_listing(tmp_path / "data" / "mnist") == sorted(p.name for p in paths)  # no .part left
    assert len(paths) == 4 and "100%" in progress.getvalue()
    assert sum(r.startswith("/down/") for r in server.requests) == 4  # the first base 404s for each file
    x, y = load_dataset("mnist", "test", data_dir=tmp_path / "data")
    np.testing.assert_array_equal(y, tiny_mnist["test"][1])
    np.testing.assert_array_equal(x, tiny_mnist["test"][0][:, None] / np.float32(255))


def test_files_already_present_are_not_downloaded_again(tmp_path, server, tiny_mnist):
    fetch("mnist", data_dir=tmp_path)
    server.requests.clear()
    progress = io.StringIO()
    fetch("mnist", data_dir=tmp_path, progress=progress)
    assert server.requests == [] and progress.getvalue().count("already present, checksum ok") == 4


def test_mirror_replaces_the_published_urls(tmp_path, server, tiny_mnist):
    for path, route in list(server.routes.items()):
        server.routes[path.replace("/pub/", "/mirror/x/")] = route
    fetch("mnist", data_dir=tmp_path, mirror=f"{server.url}/mirror/x")
    assert len(server.requests) == 4 and all(r.startswith("/mirror/x/") for r in server.requests)
    assert len(folder_listing(tmp_path / "mnist")) == 4


def test_checksum_mismatch_leaves_no_file(tmp_path, server, tiny_mnist):
    server.routes["/pub/t10k-labels-idx1-ubyte.gz"] = (200, gzip.compress(b"something else"), "whole")
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz fails its checksum.*deleted") as caught:
        fetch("mnist", data_dir=tmp_path)
    assert "\n" not in str(caught.value)
    assert "t10k-labels-idx1-ubyte.gz" not in folder_listing(tmp_path / "mnist")
    assert all(not name.endswith(".part") for name in folder_listing(tmp_path / "mnist"))


def test_a_bad_file_in_place_is_replaced(tmp_path, server, tiny_mnist):
    bad = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"half a file")
    fetch("mnist", data_dir=tmp_path)
    assert bad.read_bytes() == server.routes["/pub/train-images-idx3-ubyte.gz"][1]


def test_interrupted_download_leaves_no_file(tmp_path, server, tiny_mnist):
    server.routes["/pub/train-images-idx3-ubyte.gz"] = (200, b"x" * 200_000, "cut")
    with pytest.raises(DataError, match="interrupted") as caught:
        fetch("mnist", data_dir=tmp_path)
    assert "\n" not in str(caught.value)
    left = folder_listing(tmp_path / "mnist")
    assert "train-images-idx3-ubyte.gz" not in left and not any(name.endswith(".part") for name in left)


@pytest.mark.parametrize("status", [500, 404])
def test_server_errors(tmp_path, server, tiny_mnist, status):
    server.routes["/pub/train-labels-idx1-ubyte.gz"] = (status, b"oops", "whole")
    with pytest.raises(DataError, match=f"could not fetch train-labels-idx1-ubyte.gz: .*answered 404.*answered {status}"):
        fetch("mnist", data_dir=tmp_path)
    assert "train-labels-idx1-ubyte.gz" not in folder_listing(tmp_path / "mnist")


def test_unreachable_host(tmp_path, server, tiny_mnist):
    port = server.server_address[1]
    server.shutdown()
    server.server_close()
    with pytest.raises(DataError, match="cannot reach|interrupted"):
        fetch("mnist", data_dir=tmp_path, mirror=f"http://127.0.0.1:{port}/", timeout=2)


def test_unknown_names():
    with pytest.raises(DataError, match="unknown dataset 'svhn' to fetch"):
        fetch("svhn")
    with pytest.raises(DataError, match="ships inside hebbref"):
        fetch("fashion-mnist-mini")


def test_pinned_digests_are_well_formed():
    for name, download in DOWNLOADS.items():
        for remote in download.files:
            assert remote.md5 or remote.sha256, name
            assert all(len(d) == 32 and int(d, 16) >= 0 for d in remote.md5), name
            assert all(len(d) == 64 and int(d, 16) >= 0 for d in remote.sha256), name


@pytest.mark.skipif(not DEBIAN.is_dir(), reason="Fashion-MNIST is not installed in /usr/share/datasets/fashion-mnist")
def test_real_fashion_mnist_passes_the_pinned_table(tmp_path, server):
    """Debian's files served from a mirror pass the real pinned SHA-256s and load like the originals."""
    for path in DEBIAN.iterdir():
        server.routes[f"/fm/{path.name}"] = (200, path.read_bytes(), "whole")
    fetch("fashion-mnist", data_dir=tmp_path, mirror=f"{server.url}/fm/")
    for path in DEBIAN.iterdir():
        assert (tmp_path / "fashion-mnist" / path.name).read_bytes() == path.read_bytes()
    clear_cache()
    np.testing.assert_array_equal(load_dataset("fashion-mnist", "test", data_dir=tmp_path)[1],
                                  load_dataset("fashion-mnist", "test", data_dir=DEBIAN.parent / "none")[1])
