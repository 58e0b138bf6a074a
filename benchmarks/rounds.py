"""Timing in rounds, for the benchmark scripts: every contender once a round, in orders drawn from a seed.

``bench_training_step.py`` (seconds) and ``bench_conv_paths.py`` (milliseconds) time their
contenders this way. A round runs each contender once; each round takes them in an order of
its own, so that none always runs right after the same other one, whose traffic it would
find in the caches, or not. In rounds of one fixed order, one kernel of the untied block,
always timed right after a path that writes a large output, ran 1.13 to 1.18 times its twin
of another revision, and 0.99 to 1.00 with the two timed alone, in either order (BENCHMARKS.md,
thirteenth session). Ratios are taken within a round: two contenders of one round met nearly
the same load on a shared host, where their best times may fall in different moments.
"""
import random
import statistics
import time


def race(contenders, repeats, seed=0):
    """{name: [seconds, ...]}: each callable once per round, ``repeats`` rounds, after one warm-up call each.

    Each round's order is drawn from ``seed``, the same orders for the same seed;
    ``seed=None`` takes every round in the order given (table 5 of
    ``bench_training_step.py`` keeps it, to compare with its earlier runs).
    """
    for call in contenders.values():  # compile and warm up
        call()
    times = {name: [] for name in contenders}
    names = list(contenders)
    rng = random.Random(seed)
    for _ in range(repeats):
        for name in (names if seed is None else rng.sample(names, len(names))):
            start = time.perf_counter()
            contenders[name]()
            times[name].append(time.perf_counter() - start)
    return times


def round_ratios(times, baseline_times):
    """A contender's time over the baseline's in the same round, round by round."""
    return [t / b for t, b in zip(times, baseline_times)]


def median_round_ratio(times, baseline_times):
    """The median over rounds of ``round_ratios``."""
    return statistics.median(round_ratios(times, baseline_times))
