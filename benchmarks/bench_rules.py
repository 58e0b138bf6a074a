"""Per-step cost of every learning rule against bp, on ``simple`` (issue 13).

    python benchmarks/bench_rules.py [--batch 500] [--repeats 15] [--backend numba]

One training step (forward, backward, update) of ``simple`` on 28×28×1, batch 500,
float32, 10 classes, hinge loss, for each rule of ``hebbref.rules``; all rules run
interleaved in one process, one step each in turn (in a fresh random order each
round), ``--repeats`` rounds. Printed: the median step time of each rule in ms and its
ratio to bp's median. The weight mirror's step (``wm``'s after-update phase) is timed
on its own and reported beside wm's SGD step.

A second table times only what the rule itself does in a step, which the load of a
shared machine disturbs far less than a whole step: handing every layer its B
(``feedback_for``), the W and R updates (``update``) and the after-update phase,
on the state the last step left (interleaved the same way).
"""
import argparse
import statistics
import time

import numpy as np

import hebbref
from hebbref.rules import RULES

BATCH = [500]  # set by main: the batch whose output error dfa sends down


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--backend", default="numba")
    parser.add_argument("--net", default="simple")
    args = parser.parse_args()
    BATCH[0] = args.batch
    rng = np.random.default_rng(0)
    x = rng.random((args.batch, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, size=args.batch)
    nets = {name: hebbref.build_network(args.net, (1, 28, 28), 10, rule=name, dtype="float32",
                                        backend=args.backend, seed=0) for name in RULES}
    mirror_times = []
    wm = nets["wm"].rule
    mirror = wm.after_update

    def timed_mirror(network):
        start = time.perf_counter()
        mirror(network)
        mirror_times.append(time.perf_counter() - start)

    wm.after_update = timed_mirror
    for net in nets.values():  # compile and warm up
        net.train_step(x, y, lr=0.01)
    mirror_times.clear()
    times = {name: [] for name in RULES}
    order = list(RULES)
    for _ in range(args.repeats):
        rng.shuffle(order)
        for name in order:
            start = time.perf_counter()
            nets[name].train_step(x, y, lr=0.01)
            times[name].append(time.perf_counter() - start)
    sgd_wm = [t - m for t, m in zip(times["wm"], mirror_times)]
    bp = statistics.median(times["bp"])
    print(f"{args.net}, batch {args.batch}, float32, backend {args.backend}, {args.repeats} interleaved rounds; "
          "median ms per step, and the ratio to bp's median")
    print()
    print("| rule | median step ms | / bp |")
    print("|---|---:|---:|")
    for name in RULES:
        if name == "wm":
            print(f"| wm (SGD step, mirror excluded) | {1e3 * statistics.median(sgd_wm):.1f} | "
                  f"{statistics.median(sgd_wm) / bp:.3f} |")
            print(f"| wm's mirror phase alone | {1e3 * statistics.median(mirror_times):.1f} | "
                  f"{statistics.median(mirror_times) / bp:.3f} |")
            name_label = "wm (SGD step + mirror)"
        else:
            name_label = name
        print(f"| {name_label} | {1e3 * statistics.median(times[name]):.1f} | "
              f"{statistics.median(times[name]) / bp:.3f} |")
    wm.after_update = mirror
    main_rule_work(nets, 5 * args.repeats, rng)


def rule_work(net):
    """One step's worth of the rule's own work on the network's current state (G from the last step)."""
    rule = net.rule
    for p in net.parameters():
        if p.sends_error and not rule.direct:
            rule.feedback_for(p)
    if rule.direct:
        for p in net.parameters()[:-1]:
            rule.direct_error(p, np.zeros((BATCH[0], net.n_classes), net.dtype))
    for p in net.parameters():
        rule.update(p, 1e-12)
    rule.after_update(net)


def main_rule_work(nets, repeats, rng):
    times = {name: [] for name in nets}
    order = list(nets)
    for _ in range(repeats):
        rng.shuffle(order)
        for name in order:
            start = time.perf_counter()
            rule_work(nets[name])
            times[name].append(time.perf_counter() - start)
    print()
    print("The rule's own work per step (B for every layer, the W and R updates, the after-update phase):")
    print()
    print("| rule | median ms | min ms |")
    print("|---|---:|---:|")
    for name, values in times.items():
        print(f"| {name} | {1e3 * statistics.median(values):.1f} | {1e3 * min(values):.1f} |")


if __name__ == "__main__":
    main()
