"""How tests compare arrays: explicit tolerances, and messages that show both sides."""
import numpy as np


def tolerance(dtype):
    """Relative tolerance for one computation done in ``dtype``."""
    return {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 2e-5}[np.dtype(dtype)]


def assert_close(ours, reference, rtol, what="arrays", atol=0.0):
    """Assert ‖ours - reference‖_max <= atol + rtol · ‖reference‖_max, with a readable message."""
    ours, reference = np.asarray(ours), np.asarray(reference)
    assert ours.shape == reference.shape, f"{what}: shape {ours.shape} vs reference {reference.shape}"
    diff = np.abs(ours.astype(np.float64) - reference.astype(np.float64))
    scale = float(np.abs(reference).max()) if reference.size else 0.0
    worst = float(diff.max()) if diff.size else 0.0
    if worst > atol + rtol * scale:
        i = np.unravel_index(diff.argmax(), diff.shape)
        raise AssertionError(
            f"{what}: largest difference {worst:.3e} at {i} (ours {ours[i]!r}, reference "
            f"{reference[i]!r}); allowed {atol:.1e} + {rtol:.1e} x {scale:.3e}"
        )


def numerical_gradient(f, x, eps=1e-6, indices=None):
    """Central differences (f(x+ε) - f(x-ε)) / 2ε of a scalar f at the given indices of x (all by default)."""
    indices = list(np.ndindex(x.shape)) if indices is None else indices
    grad = np.zeros(len(indices))
    for n, i in enumerate(indices):
        old = x[i]
        x[i] = old + eps
        up = f()
        x[i] = old - eps
        down = f()
        x[i] = old
        grad[n] = (up - down) / (2 * eps)
    return grad
