"""Dense (fully connected) layer, the NumPy reference.  # SPEC §2, §3

Shapes: x (B, D_in), W and its feedback twin R (D_out, D_in), h and δ (B, D_out).

    h = W x                        dense_forward
    e_below = Bᵀ δ   (B = W or R)  dense_input_error
    G = Σ_batch δ xᵀ               dense_weight_increment
"""


def dense_forward(x, W):
    """h = W x for every example: (B, D_in), (D_out, D_in) -> (B, D_out), cache = x."""
    h = x @ W.T  # (B, D_out)
    return h, x


def dense_input_error(delta, cache, B):
    """e_below = Bᵀ δ: (B, D_out) -> (B, D_in), with B = W (bp) or R (frfb, urfb)."""
    return delta @ B  # (B, D_in)


def dense_weight_increment(delta, cache):
    """G = Σ_batch δ xᵀ: (B, D_out) -> (D_out, D_in), the Hebbian product."""
    x = cache
    return delta.T @ x  # (D_out, D_in)
