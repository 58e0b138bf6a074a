"""Draw fashion-mnist-mini, the subset of Fashion-MNIST shipped inside hebbref.

    python scripts/make_fashion_mnist_mini.py [--source /usr/share/datasets/fashion-mnist]

How it is drawn (seed 20190218, NumPy's default_rng):
- training part: for each class c = 0..9, 1,000 of the 6,000 official training images
  of class c, without replacement; the first 900 drawn go to the "train" block, the
  last 100 to the "val" block. Each block is sorted by original index (Fashion-MNIST's
  own order is already shuffled) and the val block is placed last, so the last tenth
  of ``x_train`` (the default ``val`` split) holds 100 images of every class;
- test part: for each class, 200 of the 1,000 official test images, sorted by index.

The npz holds uint8 arrays, compressed: ``x_train`` (10000, 28, 28), ``y_train``
(10000,), ``x_test`` (2000, 28, 28), ``y_test`` (2000,), and ``train_index`` /
``test_index``, each image's index in the official file, so the draw can be checked.
Fashion-MNIST is (c) 2017 Zalando SE, MIT license (see hebbref/data/README.md).
"""
import argparse
from pathlib import Path

import numpy as np

from hebbref.datasets.catalog import read_idx_folder

SEED = 20190218
TRAIN_PER_CLASS, VAL_PER_CLASS, TEST_PER_CLASS = 900, 100, 200
OUTPUT = Path(__file__).resolve().parents[1] / "hebbref" / "data" / "fashion-mnist-mini.npz"


def draw(train_labels, test_labels, seed=SEED):
    """Indices (train_index (10000,), test_index (2000,)) of the class-balanced draw."""
    rng = np.random.default_rng(seed)
    train_block, val_block, test_block = [], [], []
    for c in range(10):
        chosen = rng.choice(np.flatnonzero(train_labels == c), TRAIN_PER_CLASS + VAL_PER_CLASS, replace=False)
        train_block.append(chosen[:TRAIN_PER_CLASS])
        val_block.append(chosen[TRAIN_PER_CLASS:])
        test_block.append(rng.choice(np.flatnonzero(test_labels == c), TEST_PER_CLASS, replace=False))
    train_index = np.concatenate([np.sort(np.concatenate(train_block)), np.sort(np.concatenate(val_block))])
    return train_index, np.sort(np.concatenate(test_block))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    splits = read_idx_folder(args.source)  # images (N, 1, 28, 28)
    (x_train, y_train), (x_test, y_test) = splits["train"], splits["test"]
    train_index, test_index = draw(y_train, y_test)
    np.savez_compressed(
        args.output,
        x_train=x_train[train_index, 0], y_train=y_train[train_index].astype(np.uint8),
        x_test=x_test[test_index, 0], y_test=y_test[test_index].astype(np.uint8),
        train_index=train_index.astype(np.uint16), test_index=test_index.astype(np.uint16),
    )
    print(f"wrote {args.output}: {len(train_index)} train, {len(test_index)} test, "
          f"{args.output.stat().st_size} bytes")


if __name__ == "__main__":
    main()
