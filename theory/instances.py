"""Random problem instances: a teacher, layer widths, and the initial W and R.  # SPEC §8

An instance fixes everything but the rule, so the three rules start from the same
W(0) and (for frfb and urfb) the same R(0):

    T = U diag(σ) Vᵀ            rank r, σ_i ~ U[0.5, 2], U, V random orthonormal columns
    W_l(0) = s · G_l            G_l Glorot uniform (SPEC §3), s the "initial scale" (0 = zero init)
    R_l(0) = ρ · G'_l           G'_l an independent Glorot draw, ρ the "feedback scale"

s = 1 and ρ = 1 is the library's default initialisation (hebbref.init); s = 0 starts
every W at zero. Glorot draws use hebbref.init.glorot_uniform.
"""
from dataclasses import dataclass

import numpy as np

from hebbref.errors import ConfigError
from hebbref.init import glorot_uniform


@dataclass
class Instance:
    """One random linear problem. widths = [d, n_1, ..., n_{L-1}, m]."""

    seed: int
    widths: list
    rank: int
    scale: float  # s: W(0) = s · Glorot
    rho: float  # ρ: R(0) = ρ · Glorot
    T: np.ndarray  # (m, d)
    W0s: list  # W_l(0), (n_l, n_{l-1}), l = 1..L
    R0s: list  # R_l(0)

    @property
    def depth(self):
        return len(self.widths) - 1

    def describe(self):
        return (f"seed={self.seed} widths={'-'.join(map(str, self.widths))} rank={self.rank} "
                f"s={self.scale:g} rho={self.rho:g}")


def teacher(rng, m, d, rank):
    """T = U diag(σ) Vᵀ, (m, d), of the given rank, singular values in [0.5, 2]."""
    if not 1 <= rank <= min(m, d):
        raise ConfigError(f"teacher rank must lie in [1, min(m, d)] = [1, {min(m, d)}], got {rank}")
    U = np.linalg.qr(rng.standard_normal((m, rank)))[0]  # (m, r)
    V = np.linalg.qr(rng.standard_normal((d, rank)))[0]  # (d, r)
    sigma = rng.uniform(0.5, 2.0, size=rank)
    return (U * sigma) @ V.T


def make_instance(seed, widths, rank, scale, rho):
    """The instance for given widths [d, n_1, ..., m], teacher rank, scales s and ρ."""
    widths = [int(n) for n in widths]
    if len(widths) < 3 or min(widths) < 1:
        raise ConfigError(f"widths must be [d, n_1, ..., m] with at least one hidden layer, got {widths}")
    if rank > min(widths):
        raise ConfigError(f"teacher rank {rank} exceeds the narrowest layer ({min(widths)}): "
                          "no network of these widths can reach it")
    if scale < 0 or rho < 0:
        raise ConfigError(f"scales must be non-negative, got s={scale}, rho={rho}")
    teacher_seq, weight_seq, feedback_seq = np.random.SeedSequence(seed).spawn(3)
    T = teacher(np.random.default_rng(teacher_seq), widths[-1], widths[0], rank)
    weight_rng, feedback_rng = np.random.default_rng(weight_seq), np.random.default_rng(feedback_seq)
    W0s, R0s = [], []
    for n_in, n_out in zip(widths[:-1], widths[1:]):
        W0s.append(scale * glorot_uniform(weight_rng, (n_out, n_in), n_in, n_out, np.float64))
        R0s.append(rho * glorot_uniform(feedback_rng, (n_out, n_in), n_in, n_out, np.float64))
    return Instance(seed, widths, rank, float(scale), float(rho), T, W0s, R0s)


def random_instance(seed, depths=(2, 3, 4), scales=(0.0, 0.1, 0.3, 1.0), rho=1.0,
                    d_range=(4, 12), m_range=(2, 6), hidden_max=16):
    """Draw depth, widths, teacher rank and initial scale from ``seed``.

    Hidden widths lie in [max(r, 2), hidden_max], so the teacher is always reachable.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 8]))
    depth = int(rng.choice(depths))
    d = int(rng.integers(d_range[0], d_range[1] + 1))
    m = int(rng.integers(m_range[0], m_range[1] + 1))
    rank = int(rng.integers(1, min(m, d) + 1))
    hidden = [int(rng.integers(max(rank, 2), hidden_max + 1)) for _ in range(depth - 1)]
    scale = float(rng.choice(scales))
    return make_instance(seed, [d] + hidden + [m], rank, scale, rho)


@dataclass
class AlignedInstance(Instance):
    """A two-layer instance under the hypotheses of theorem T1 (theory/README.md §3).

    T = Σ_i τ_i u_i v_iᵀ and R(0) = Σ_i ρ_i u_i z_iᵀ share the left singular vectors u_i
    (columns of ``modes_u``, (m, k)); v_i (``modes_v``, (d, k)) and z_i (``modes_z``,
    (n, k)) are orthonormal; τ_i > 0, ρ_i ≠ 0; both forward weights start at zero.
    """

    tau: np.ndarray = None  # (k,)
    rho_modes: np.ndarray = None  # (k,) the feedback gains ρ_i (either sign)
    modes_u: np.ndarray = None  # (m, k)
    modes_v: np.ndarray = None  # (d, k)
    modes_z: np.ndarray = None  # (n, k)

    def describe(self):
        return f"aligned seed={self.seed} widths={'-'.join(map(str, self.widths))} modes={self.rank}"


def _orthonormal(rng, n, k):
    return np.linalg.qr(rng.standard_normal((n, k)))[0]  # (n, k)


def aligned_instance(seed, widths=None, d_range=(1, 8), m_range=(1, 6), hidden_range=(1, 10)):
    """T1's hypotheses: L = 2, W(0) = 0, R(0) with the teacher's left singular vectors.

    The number of modes k is drawn in [1, min(d, n, m)]; τ_i ~ U[0.5, 2], |ρ_i| ~ U[0.3, 1.5]
    with a random sign. widths = [d, n, m] may be given; widths [1, 1, 1] is the scalar chain.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 11]))
    if widths is None:
        widths = [int(rng.integers(lo, hi + 1)) for lo, hi in (d_range, hidden_range, m_range)]
    d, n, m = (int(w) for w in widths)
    k = int(rng.integers(1, min(d, n, m) + 1))
    tau = rng.uniform(0.5, 2.0, size=k)
    rho = rng.uniform(0.3, 1.5, size=k) * rng.choice([-1.0, 1.0], size=k)
    u, v, z = _orthonormal(rng, m, k), _orthonormal(rng, d, k), _orthonormal(rng, n, k)
    T = (u * tau) @ v.T  # (m, d)
    R_top = (u * rho) @ z.T  # (m, n)
    R_bottom = glorot_uniform(rng, (n, d), d, n, np.float64)  # never used at L = 2
    return AlignedInstance(seed, [d, n, m], k, 0.0, float(np.max(np.abs(rho))), T,
                           [np.zeros((n, d)), np.zeros((m, n))], [R_bottom, R_top],
                           tau=tau, rho_modes=rho, modes_u=u, modes_v=v, modes_z=z)
