"""How tests compare arrays: explicit tolerances, and messages that show both sides."""
import numpy as np


def tolerance(dtype):
    """Relative tolerance for one computation done in ``dtype``."""
    return {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 2e-5}[np.dtype(dtype)]


def assert_close(ours, reference, rtol, what="arrays", atol=0.0):
    """Assert ‖ours - reference‖_max <= atol + rtol · ‖reference‖_max, with a readable message.

    A NaN or an infinity must stand where the reference has one (a NaN difference compares
    false with any bound, so a kernel that wrote NaN passed here until this was checked).
    """
    ours, reference = np.asarray(ours), np.asarray(reference)
    assert ours.shape == reference.shape, f"{what}: shape {ours.shape} vs reference {reference.shape}"
    finite = np.isfinite(reference)
    same = (ours == reference) | (np.isnan(ours) & np.isnan(reference))  # where not finite: the same NaN or infinity
    odd = (np.isfinite(ours) != finite) | (~finite & ~same)
    if odd.any():
        i = tuple(int(j) for j in np.unravel_index(odd.argmax(), odd.shape))
        raise AssertionError(f"{what}: {int(odd.sum())} NaNs or infinities where the other side differs, first at {i} (ours "
                             f"{ours[i]!r}, reference {reference[i]!r})")
    with np.errstate(invalid="ignore"):  # inf - inf where both are the same infinity: not compared
        diff = np.where(finite, np.abs(ours.astype(np.float64) - reference.astype(np.float64)), 0.0)
    scale = float(np.abs(reference[finite]).max()) if finite.any() else 0.0
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
