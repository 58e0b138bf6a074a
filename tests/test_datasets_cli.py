"""``hebbref data list`` and ``hebbref data fetch``: output, exit status, one-line errors."""
import pytest

from hebbref.cli import main
from hebbref.datasets import clear_cache, locations

from data_files import write_cifar10_binary, write_idx_dataset
from test_datasets_fetch import server, tiny_mnist  # noqa: F401  (fixtures)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("HEBBREF_DATA", raising=False)
    monkeypatch.setattr(locations, "SYSTEM_FOLDERS", {})
    clear_cache()
    yield
    clear_cache()


def rows(output):
    return {line.split()[0]: line.split() for line in output.splitlines()[2:]}


def test_list_counts_what_is_present(tmp_path, capsys):
    write_idx_dataset(tmp_path / "mnist", n_train=7, n_test=3, gz=False)
    write_cifar10_binary(tmp_path / "cifar10", per_batch=2, n_test=5, as_tar=True)
    assert main(["data", "list", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"data folder: {tmp_path} (data_dir argument)"
    table = rows(out)
    assert table["mnist"][1:] == ["7", "3", str(tmp_path / "mnist")]
    assert table["cifar10"][1:] == ["10", "5", str(tmp_path / "cifar10" / "cifar-10-binary.tar.gz")]
    assert table["fashion-mnist"][1:4] == ["-", "-", "missing:"]
    assert table["fashion-mnist-mini"][1:3] == ["10000", "2000"]


def test_list_reports_a_corrupt_dataset_on_its_row(tmp_path, capsys):
    write_idx_dataset(tmp_path / "mnist")
    (tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz").write_bytes(b"junk")
    assert main(["data", "list", "--data-dir", str(tmp_path)]) == 0
    assert rows(capsys.readouterr().out)["mnist"][3] == "error:"


def test_fetch_then_list(tmp_path, capsys, server, tiny_mnist):
    assert main(["data", "fetch", "mnist", "--data-dir", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert f"mnist: 4 file(s) checked in {tmp_path / 'mnist'}" in captured.out
    assert "100%" in captured.err  # the progress bars
    main(["data", "list", "--data-dir", str(tmp_path)])
    assert rows(capsys.readouterr().out)["mnist"][1:3] == ["5", "3"]


@pytest.mark.parametrize("argv,words", [
    (["data", "fetch", "svhn"], ["unknown dataset 'svhn'"]),
    (["data", "fetch", "fashion-mnist-mini"], ["ships inside hebbref"]),
])
def test_fetch_errors_are_one_line(argv, words, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("hebbref data: error: ")
    assert all(word in err for word in words)


def test_fetch_server_error_is_one_line(tmp_path, capsys, server, tiny_mnist):
    status = main(["data", "fetch", "mnist", "--data-dir", str(tmp_path), "--mirror", f"{server.url}/nothing/"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "answered 404" in err
