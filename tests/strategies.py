"""Hypothesis strategies shared by the test files: small, bounded, finite inputs."""
import numpy as np
from hypothesis import strategies as st

SEEDS = st.integers(min_value=0, max_value=2**31 - 1)
RULES = st.sampled_from(["bp", "frfb", "urfb"])
LOSS_NAMES = st.sampled_from(["hinge", "softmax", "squared"])


@st.composite
def conv_shapes(draw, max_batch=3, max_channels=3, max_size=7, max_kernel=4):
    """(N, C_in, C_out, H, W, k) for a stride-1 "same" conv; k odd or even."""
    n = draw(st.integers(1, max_batch))
    c_in = draw(st.integers(1, max_channels))
    c_out = draw(st.integers(1, max_channels))
    h = draw(st.integers(1, max_size))
    w = draw(st.integers(1, max_size))
    k = draw(st.integers(1, max_kernel))
    return n, c_in, c_out, h, w, k


@st.composite
def small_architectures(draw):
    """(description, input_shape, n_classes): random small networks in hebbref's text grammar.

    Mixes tied and untied convolutions, sum blocks, overlapping and disjoint pooling,
    dropout and dense layers, so that the rule identities are checked on every layer kind.
    """
    channels = draw(st.integers(1, 2))
    size = draw(st.integers(3, 7))
    tokens = []
    for _ in range(draw(st.integers(0, 2))):
        kind = draw(st.sampled_from(["conv", "lc", "sum", "pool", "drop"]))
        k = draw(st.integers(1, 3))
        c = draw(st.integers(1, 3))
        if kind in ("conv", "lc"):
            tokens += [f"{kind}{k}:{c}", "ramp"]
        elif kind == "sum":
            tokens.append(f"sum[{draw(st.sampled_from(['conv', 'lc']))}{k}:{c},conv{k}:{c}]")
        elif kind == "pool":
            window = draw(st.integers(2, 3))
            tokens.append(f"pool{window}s{draw(st.integers(1, window))}")
        else:
            tokens.append(f"drop{draw(st.sampled_from([0.2, 0.5]))}")
    for _ in range(draw(st.integers(0, 2))):
        tokens += [f"dense{draw(st.integers(1, 6))}", "ramp"]
    tokens.append("out")
    n_classes = draw(st.integers(2, 4))
    return " ".join(tokens), (channels, size, size), n_classes


def random_batch(rng, input_shape, n_classes, batch, dtype=np.float64):
    """Inputs in [0, 1) and integer labels, as an image data set gives them."""
    x = rng.random((batch,) + tuple(input_shape)).astype(dtype)
    y = rng.integers(0, n_classes, size=batch)
    return x, y


ALL_RULES = st.sampled_from(["bp", "frfb", "urfb", "kp", "usf", "frsf", "brsf", "dfa", "wm"])
LAYER_KINDS = ("dense", "conv", "lc", "sum")


@st.composite
def layer_stacks(draw, kind=None, max_size=6, max_kernel=4):
    """(description, input_shape, n_classes) with a layer of ``kind`` on top of a conv layer.

    The bottom conv layer is there so that the layer under test has someone to send its
    error to; ``kind`` is dense, conv, lc or sum (drawn when None); kernels odd or even.
    """
    kind = kind or draw(st.sampled_from(LAYER_KINDS))
    k = draw(st.integers(1, max_kernel))
    c = draw(st.integers(1, 3))
    size = draw(st.integers(2, max_size))
    bottom = f"conv{draw(st.integers(1, 3))}:{draw(st.integers(1, 2))} ramp"
    middle = {
        "dense": f"dense{draw(st.integers(2, 6))} ramp",
        "conv": f"conv{k}:{c} ramp",
        "lc": f"lc{k}:{c} ramp",
        "sum": f"sum[{draw(st.sampled_from(['conv', 'lc']))}{k}:{c},{draw(st.sampled_from(['conv', 'lc']))}{k}:{c}]",
    }[kind]
    tops = ["", f"dense{draw(st.integers(2, 5))} ramp "] + ([] if kind == "dense" else ["pool2 "])
    top = draw(st.sampled_from(tops))
    n_classes = draw(st.integers(2, 4))
    return f"{bottom} {middle} {top}out", (draw(st.integers(1, 2)), size, size), n_classes
