"""fashion-mnist-mini: shipped, class-balanced, and exactly the documented draw from Fashion-MNIST."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from hebbref.datasets import catalog, load_dataset
from hebbref.datasets.catalog import mini_path, read_idx_folder

ROOT = Path(__file__).resolve().parents[1]
DEBIAN = Path("/usr/share/datasets/fashion-mnist")


def load_script():
    spec = importlib.util.spec_from_file_location("make_mini", ROOT / "scripts" / "make_fashion_mnist_mini.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("split,n,per_class", [
    ("train", 9000, 900), ("val", 1000, 100), ("train+val", 10000, 1000), ("test", 2000, 200),
])
def test_splits_are_class_balanced(split, n, per_class):
    x, y = load_dataset("fashion-mnist-mini", split)
    assert x.shape == (n, 1, 28, 28) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(y, minlength=10), np.full(10, per_class))
    assert 0.0 <= x.min() and x.max() <= 1.0


def test_shipped_as_small_uint8_arrays_without_pickles():
    with np.load(mini_path(), allow_pickle=False) as arrays:
        assert {arrays[k].dtype for k in ("x_train", "x_test", "y_train", "y_test")} == {np.dtype(np.uint8)}
    assert mini_path().stat().st_size < 6_000_000
    assert (mini_path().parent / "README.md").read_text().count("MIT") >= 1


needs_debian = pytest.mark.skipif(not DEBIAN.is_dir(),
                                  reason="Fashion-MNIST is not installed in /usr/share/datasets/fashion-mnist")


@needs_debian
def test_the_draw_is_reproduced_by_the_seeded_script():
    splits = read_idx_folder(DEBIAN)
    train_index, test_index = load_script().draw(splits["train"][1], splits["test"][1])
    with np.load(mini_path()) as arrays:
        np.testing.assert_array_equal(arrays["train_index"], train_index)
        np.testing.assert_array_equal(arrays["test_index"], test_index)
    assert len(np.unique(train_index)) == 10000 and len(np.unique(test_index)) == 2000


@needs_debian
def test_images_are_those_of_fashion_mnist_at_the_recorded_indices():
    full = read_idx_folder(DEBIAN)
    with np.load(mini_path()) as arrays:
        for split in ("train", "test"):
            index = arrays[f"{split}_index"]
            np.testing.assert_array_equal(arrays[f"x_{split}"], full[split][0][index, 0])
            np.testing.assert_array_equal(arrays[f"y_{split}"], full[split][1][index])


def test_a_damaged_mini_file_is_a_data_error(tmp_path, monkeypatch):
    from hebbref.datasets import clear_cache
    from hebbref.errors import DataError
    broken = tmp_path / "fashion-mnist-mini.npz"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    monkeypatch.setattr(catalog, "mini_path", lambda: broken)
    clear_cache()
    with pytest.raises(DataError, match="reinstall hebbref"):
        load_dataset("fashion-mnist-mini", "test")
    clear_cache()
