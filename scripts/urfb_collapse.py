"""Why the demo's 6-hidden-layer dense urfb run collapsed: per-step norms, loss and accuracy.

    PYTHONPATH=. python scripts/urfb_collapse.py --rule urfb --lr 0.3 --seed 0 --epochs 8 --out runs/collapse

trains ``dense100 ramp`` × 6 + ``out`` on fashion-mnist-mini with the demo's settings
(batch 100, hinge, the same data order as ``hebbref train``) and writes, per SGD step,
one JSON line to OUT/RULE-lrETA-seedS.jsonl:

    {"step", "loss", "W": [‖W_l‖_F], "R": [‖R_l‖_F], "update": [‖η G_l‖_F / ‖W_l‖_F],
     "error": [‖e_{l-1}‖_F sent down by layer l], "accuracy": held-out accuracy (every 10 steps)}

with layers from the bottom up. It changes nothing in hebbref; it drives the network's
own ``train_step`` and reads the layers' W, R, G and the error each sends down.

    PYTHONPATH=. python scripts/urfb_collapse.py --summary runs/collapse/*.jsonl

prints, per file, the held-out accuracy at the end of every epoch, the largest drop
between two measurements 10 steps apart, the mean size of those changes, the largest
batch loss and relative update per layer after the first epoch, and ‖R‖/‖W‖ at the end.
"""
import argparse
import json
from pathlib import Path

import numpy as np

from hebbref.experiments.compare import dense_stack
from hebbref.experiments.data import load_splits
from hebbref.experiments.train import shuffle_generator
from hebbref.network import build_network


def run(rule, lr, seed, epochs, depth, out, batch=100):
    splits = load_splits("fashion-mnist-mini", None, None)
    net = build_network(dense_stack(depth, 100), splits.input_shape, splits.n_classes, rule=rule, seed=seed,
                        backend="numpy")
    x = splits.x_train.astype(net.dtype)
    rng = shuffle_generator(seed)
    n = len(x)
    path = Path(out) / f"{rule}-lr{lr}-seed{seed}-depth{depth}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    step = 0
    with open(path, "w") as f:
        for _ in range(epochs):
            order = rng.permutation(n)
            for i in range(0, n, batch):
                idx = order[i:i + batch]
                loss = net.train_step(x[idx], splits.y_train[idx], lr=lr)
                step += 1
                layers = net.parameters()
                record = {
                    "step": step, "loss": float(loss),
                    "W": [float(np.linalg.norm(p.W)) for p in layers],
                    "R": [float(np.linalg.norm(p.R)) for p in layers],
                    "update": [float(lr * np.linalg.norm(p.G) / np.linalg.norm(p.W)) for p in layers],
                    # the error each layer sent down in this step, through the matrix its rule uses
                    "error": [float(np.linalg.norm(p.send_down(p.W if rule == "bp" else p.R))) for p in layers],
                }
                if step % 10 == 0:
                    record["accuracy"] = net.accuracy(splits.x_test, splits.y_test)
                f.write(json.dumps(record) + "\n")
    return path


def summary(path, steps_per_epoch=90):
    """The numbers the report quotes, from one file written by ``run``."""
    records = [json.loads(line) for line in Path(path).read_text().splitlines()]
    measured = [(r["step"], r["accuracy"]) for r in records if "accuracy" in r]
    accuracy = np.array([a for _, a in measured])
    changes = np.diff(accuracy)
    worst = int(np.argmin(changes))
    later = records[steps_per_epoch:]
    update = np.max([r["update"] for r in later], axis=0)
    ratio = np.array(records[-1]["R"]) / np.array(records[-1]["W"])
    return "\n".join([
        f"{Path(path).name}: {len(records)} steps",
        "  accuracy at each epoch's end: " + " ".join(f"{100 * a:.1f}" for s, a in measured
                                                        if s % steps_per_epoch == 0),
        f"  largest drop in 10 steps: {100 * -changes[worst]:.1f} points (steps {measured[worst][0]}-"
        f"{measured[worst + 1][0]}); mean |change| per 10 steps {100 * np.abs(changes).mean():.1f} points",
        f"  after epoch 1: largest batch loss {max(r['loss'] for r in later):.2f}; largest ‖ηG‖/‖W‖ per layer "
        + " ".join(f"{u:.3f}" for u in update),
        "  ‖R‖/‖W‖ at the end per layer: " + " ".join(f"{v:.2f}" for v in ratio),
        f"  mean ‖error sent to layer 1‖: {np.mean([r['error'][1] for r in records]):.3f}",
    ])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rule", default="urfb")
    parser.add_argument("--lr", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--out", default="runs/collapse")
    parser.add_argument("--summary", nargs="+", metavar="FILE", help="summarise files written before; train nothing")
    args = parser.parse_args()
    if args.summary:
        print("\n".join(summary(path) for path in args.summary))
        return
    print(run(args.rule, args.lr, args.seed, args.epochs, args.depth, args.out))


if __name__ == "__main__":
    main()
