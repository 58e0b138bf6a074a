"""Data that is wrong in ways a user won't notice (FAULTS.md): labels that are not class
numbers, arrays of different lengths, a truncated IDX set, and how the data is split."""
import gzip
import json

import numpy as np
import pytest

from hebbref.cli import main
from hebbref.datasets import clear_cache, locations
from hebbref.errors import ConfigError
from hebbref.experiments.compare import grid_configs
from hebbref.experiments.data import load_splits
from hebbref.experiments.train import TrainConfig

from data_files import write_idx_dataset


def user_file(tmp_path, name="mine.npz", **changes):
    """A small, sound .npz of three classes; ``changes`` replace or (value None) drop arrays."""
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.random((60, 1, 4, 4), dtype=np.float32), "y_train": np.arange(60) % 3,
              "x_test": rng.random((20, 1, 4, 4), dtype=np.float32), "y_test": np.arange(20) % 3}
    arrays.update(changes)
    path = tmp_path / name
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def train_argv(data, out, *more):
    return ["train", "--net", "dense5 ramp out", "--data", str(data), "--batch-size", "20", "--epochs", "1",
            "--backend", "numpy", "--probe-size", "10", "--out", str(out), *more]


def one_line_error(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


y = np.arange(60) % 3
BAD_FILES = {
    "float labels": (dict(y_train=y + 0.5), ["y_train", "integer labels", "0.5"]),
    "a stray huge label": (dict(y_train=np.where(np.arange(60) == 7, 1_000_000, y)),
                           ["y_train", "never the labels", "3, 4, 5"]),
    "lengths differ": (dict(y_train=y[:59]), ["x_train holds 60 images", "y_train holds 59 labels"]),
    "string labels": (dict(y_train=y.astype(str)), ["y_train", "integer labels"]),
    "negative label": (dict(y_train=y - 1), ["y_train", "negative label -1"]),
    "test label unseen in training": (dict(y_test=np.full(20, 5)), ["y_test", "label 5", "0..2"]),
    "labels as a matrix": (dict(y_train=np.eye(3)[y]), ["y_train", "1-D"]),
    "complex images": (dict(x_test=np.zeros((20, 1, 4, 4), complex)), ["x_test", "real numbers"]),
    "NaN images": (dict(x_train=np.full((60, 1, 4, 4), np.nan, np.float32)), ["x_train", "NaN"]),
    "images of two shapes": (dict(x_test=np.zeros((20, 1, 5, 5))), ["x_test", "shape (1, 5, 5)"]),
    "x_val without y_val": (dict(x_val=np.zeros((5, 1, 4, 4))), ["only one of x_val and y_val"]),
    "no training images": (dict(x_train=np.zeros((0, 1, 4, 4)), y_train=np.zeros(0, int)), ["no images"]),
    "pixels 0..255": (dict(x_train=np.full((60, 1, 4, 4), 200, np.uint8)), ["x_train", "divide by 255"]),
    "one class only": (dict(y_train=np.zeros(60, int), y_test=np.zeros(20, int)), ["y_train", "two classes"]),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_bad_user_file_is_one_line_naming_the_file_and_the_array(tmp_path, capsys, case):
    changes, words = BAD_FILES[case]
    path = user_file(tmp_path, **changes)
    err = one_line_error(train_argv(path, tmp_path / "run"), capsys)
    assert str(path) in err, err
    for word in words:
        assert word in err, err
    assert not (tmp_path / "run" / "checkpoint.npz").exists()


def test_labels_stored_as_whole_floats_are_accepted(tmp_path):
    splits = load_splits(user_file(tmp_path, y_train=(np.arange(60) % 3).astype(np.float64)))
    assert splits.y_train.dtype == np.int64 and splits.n_classes == 3


def test_a_file_that_is_not_an_npz_is_one_line(tmp_path, capsys):
    path = tmp_path / "broken.npz"
    path.write_bytes(b"PK\x03\x04 truncated")
    assert "cannot read" in one_line_error(train_argv(path, tmp_path / "run"), capsys)


# --- hebbref data list --------------------------------------------------------------------------
@pytest.fixture
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("HEBBREF_DATA", raising=False)
    monkeypatch.setattr(locations, "SYSTEM_FOLDERS", {})
    clear_cache()
    yield
    clear_cache()


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("which", ["train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"])
def test_data_list_reports_a_truncated_idx_set_as_an_error(tmp_path, capsys, isolated, gz, which):
    write_idx_dataset(tmp_path / "mnist", n_train=7, n_test=3, gz=gz)
    path = tmp_path / "mnist" / (which + (".gz" if gz else ""))
    data = gzip.decompress(path.read_bytes()) if gz else path.read_bytes()
    path.write_bytes(gzip.compress(data[:-1]) if gz else data[:-1])  # the header intact, the last byte gone
    assert main(["data", "list", "--data-dir", str(tmp_path)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("mnist "))
    assert "error:" in row and "truncated" in row and which in row, row


def test_data_list_reports_a_gzip_stream_cut_short(tmp_path, capsys, isolated):
    write_idx_dataset(tmp_path / "mnist", n_train=7, n_test=3, gz=True)
    path = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-40])  # the download stopped early
    main(["data", "list", "--data-dir", str(tmp_path)])
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("mnist "))
    assert "error:" in row and "train-images-idx3-ubyte.gz" in row, row


# --- the validation split ------------------------------------------------------------------------
def test_val_size_on_a_dataset_and_the_line_that_says_how_the_data_was_split(tmp_path, capsys):
    argv = ["train", "--net", "dense5 ramp out", "--data", "fashion-mnist-mini", "--epochs", "0",
            "--backend", "numpy", "--out", str(tmp_path / "a")]
    assert main(argv + ["--val-size", "500"]) == 0
    err = capsys.readouterr().err
    assert "9500 training images, 500 validation (the last 500 of the official training set, --val-size)" in err
    assert main(argv[:-1] + [str(tmp_path / "b"), "--val-size", "0"]) == 0
    assert "10000 training images, 0 validation" in capsys.readouterr().err
    assert main(argv[:-1] + [str(tmp_path / "c")]) == 0
    assert "9000 training images, 1000 validation" in capsys.readouterr().err  # the default: a tenth
    assert main(argv[:-1] + [str(tmp_path / "d"), "--epochs", "1", "--train-size", "100", "--batch-size", "50", "--quiet"]) == 0
    first = json.loads((tmp_path / "d" / "log.jsonl").read_text().splitlines()[0])
    assert first["data"].startswith("data fashion-mnist-mini: 100 training images (the first 100 of 9000")


def test_val_size_on_a_user_file(tmp_path, capsys):
    path = user_file(tmp_path)
    splits = load_splits(path, val_size=15)
    assert (len(splits.y_train), len(splits.y_val)) == (45, 15)
    assert "the last 15 of x_train" in splits.description
    assert len(load_splits(path).y_val) == 0 and "no x_val" in load_splits(path).description
    with pytest.raises(ConfigError, match="smaller than the 60 images"):
        load_splits(path, val_size=60)
    with pytest.raises(ConfigError, match="its own x_val"):
        load_splits(user_file(tmp_path, "own.npz", x_val=np.zeros((3, 1, 4, 4)), y_val=np.arange(3)), val_size=5)


def test_compare_passes_val_size_to_every_run(tmp_path):
    configs = grid_configs(TrainConfig(val_size=0), tmp_path, ["simple"], ["bp", "urfb"])
    assert [c.val_size for c in configs] == [0, 0]
    with pytest.raises(SystemExit):
        main(["compare", "--val-size", "-1"])
