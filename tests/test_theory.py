"""The linear-case theory (SPEC §8, theory/README.md): identities and measured directions.

- (I1) dV/dt in closed form equals the complex-step derivative of V along the field,
  and SPEC §8's two-layer formulas, at every stored point of whole trajectories;
- (I2) the urfb split bp + fixed_D + mixed adds up; the top hidden layer has no mixed term;
- (I3) R - W is conserved along the solver's urfb trajectories;
- (I4) symmetric-init urfb follows the bp trajectory;
- the measured direction, over many random instances (never one seed): from small
  initial W, urfb reaches a fraction ε of the initial error before frfb;
- the discrete SGD path goes through hebbref's own Dense layers: one step equals a
  NumPy step written out here, and on exactly whitened data it is an Euler step of the flow.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from theory.flow import (
    LinearFlow,
    feedback_matrices,
    integrate,
    population_loss,
    products_above,
    weight_velocities,
)
from theory.identities import (
    dissipation_terms,
    energy_rate,
    energy_rate_complex_step,
    energy_rate_two_layer,
    energy_rate_two_layer_urfb,
    trajectory_identity_errors,
    urfb_decomposition,
)
from theory.instances import make_instance, random_instance

from strategies import SEEDS

MACHINE = 1e-12  # relative tolerance for identities that hold exactly (float64 rounding only)


@st.composite
def linear_instances(draw, scales=(0.0, 0.1, 0.3, 1.0, 3.0), rhos=(0.1, 1.0, 10.0)):
    """A random instance: depth 2-4, widths 2-8, teacher rank ≤ narrowest layer."""
    depth = draw(st.integers(2, 4))
    widths = [draw(st.integers(2, 8)) for _ in range(depth + 1)]
    rank = draw(st.integers(1, min(widths)))
    return make_instance(draw(SEEDS), widths, rank, draw(st.sampled_from(scales)),
                         draw(st.sampled_from(rhos)))


def perturbed_state(inst, seed):
    """A generic state (W, R) near the instance's start, so W ≠ 0 even when s = 0."""
    rng = np.random.default_rng(seed)
    Ws = [W + 0.3 * rng.standard_normal(W.shape) for W in inst.W0s]
    Rs = [R + 0.3 * rng.standard_normal(R.shape) for R in inst.R0s]
    return Ws, Rs


# --- (I1), (I2) at arbitrary states ---------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(linear_instances(), SEEDS, st.sampled_from(["bp", "frfb", "urfb"]))
def test_energy_rate_closed_form_is_the_derivative_of_V(inst, seed, rule):
    Ws, Rs = perturbed_state(inst, seed)
    dWs = weight_velocities(inst.T, Ws, feedback_matrices(Ws, Rs, rule))
    ours = energy_rate(inst.T, Ws, Rs, rule)
    reference = energy_rate_complex_step(inst.T, Ws, dWs)
    scale = sum(abs(x) for x in dissipation_terms(inst.T, Ws, Rs, rule))
    assert abs(ours - reference) <= MACHINE * scale, (ours, reference, ours - reference)
    # and against a central finite difference of V along the field (a slower, rougher check)
    speed = np.sqrt(sum(np.sum(dW * dW) for dW in dWs))
    h = 1e-5 / max(speed, 1e-300)
    plus = population_loss(inst.T, [W + h * dW for W, dW in zip(Ws, dWs)])
    minus = population_loss(inst.T, [W - h * dW for W, dW in zip(Ws, dWs)])
    assert abs((plus - minus) / (2 * h) - ours) <= 1e-5 * max(scale, 1.0)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(1, 6), st.integers(1, 6), SEEDS)
def test_two_layer_formulas_of_spec_section_8(d, n, m, seed):
    rng = np.random.default_rng(seed)
    T, W0, W, R = (rng.standard_normal(s) for s in [(m, d), (n, d), (m, n), (m, n)])
    E = T - W @ W0
    by_hand = -np.sum((E @ W0.T) ** 2) - np.trace(E.T @ W @ R.T @ E)
    general = energy_rate(T, [W0, W], [W0, R], "frfb")
    assert abs(energy_rate_two_layer(T, W0, W, R) - by_hand) <= MACHINE * (1 + abs(by_hand))
    assert abs(general - by_hand) <= MACHINE * (1 + abs(by_hand))
    # urfb: R = W + D gives the extra dissipation ‖Wᵀ E‖²
    D = R - W
    assert abs(energy_rate_two_layer_urfb(T, W0, W, D) - by_hand) <= MACHINE * (1 + abs(by_hand))
    extra = energy_rate(T, [W0, W], [W0, D], "frfb") - by_hand  # fixed feedback D minus urfb
    assert abs(extra - np.sum((W.T @ E) ** 2)) <= MACHINE * (1 + abs(by_hand))


@settings(max_examples=40, deadline=None)
@given(linear_instances(), SEEDS)
def test_urfb_decomposition_adds_up_and_top_hidden_layer_has_no_mixed_term(inst, seed):
    Ws, Rs = perturbed_state(inst, seed)
    Ds = [R - W for R, W in zip(Rs, Ws)]
    terms = dissipation_terms(inst.T, Ws, Rs, "urfb")
    parts = urfb_decomposition(inst.T, Ws, Ds)
    scale = sum(abs(x) for x in terms) + sum(abs(v) for p in parts for v in p.values())
    for l, (p, term) in enumerate(zip(parts, terms)):
        assert abs(p["bp"] + p["fixed_D"] + p["mixed"] - term) <= MACHINE * scale, (l, p, term)
    # the bp part is back-prop's own dissipation ‖g_l‖² ...
    bp_terms = dissipation_terms(inst.T, Ws, Ws, "bp")
    for p, bp_term in zip(parts, bp_terms):
        assert p["bp"] >= 0 and abs(p["bp"] - bp_term) <= MACHINE * scale
    # ... the fixed_D part is what fixed feedback D dissipates, layer by layer
    fixed_terms = dissipation_terms(inst.T, Ws, Ds, "frfb")
    for l, (p, fixed) in enumerate(zip(parts, fixed_terms)):
        if l < len(Ws) - 1:
            assert abs(p["fixed_D"] - fixed) <= MACHINE * scale
    L = len(Ws)
    assert parts[L - 1]["mixed"] == 0.0 and parts[L - 2]["mixed"] == 0.0


# --- (I1)-(I4) along whole trajectories --------------------------------------------------------------
TRAJECTORY_SEEDS = range(6)


@pytest.mark.parametrize("seed", TRAJECTORY_SEEDS)
@pytest.mark.parametrize("rule", ["bp", "frfb", "urfb"])
def test_identities_hold_along_whole_trajectories(seed, rule):
    inst = random_instance(seed, scales=(0.1, 1.0))
    result = integrate(inst.T, inst.W0s, inst.R0s, rule, eps=1e-3, t_max=200, rtol=1e-10, atol=1e-12)
    assert result.t.size > 20  # a whole trajectory, not one point
    errors = trajectory_identity_errors(result, n_points=60)
    for name, value in errors.items():
        assert value <= MACHINE, f"{inst.describe()} {rule}: {name} off by {value:.2e}"


@pytest.mark.parametrize("seed", range(5))
def test_symmetric_init_urfb_follows_bp(seed):
    inst = random_instance(seed, scales=(0.3, 1.0))
    t_eval = np.linspace(0.0, 3.0, 31)
    options = dict(t_max=3.0, stop_at_eps=False, t_eval=t_eval, rtol=1e-10, atol=1e-12)
    bp = integrate(inst.T, inst.W0s, inst.W0s, "bp", **options)
    urfb = integrate(inst.T, inst.W0s, inst.W0s, "urfb", **options)  # R(0) = W(0)
    n_W = bp.z.shape[0]
    scale = np.abs(bp.z).max()
    assert np.abs(urfb.z[:n_W] - bp.z).max() <= 1e-13 * scale
    assert np.array_equal(urfb.z[n_W:], urfb.z[:n_W])  # R stays W, bit for bit
    # and the weights did move: the trajectory is not a trivial one
    assert np.abs(bp.z[:, -1] - bp.z[:, 0]).max() > 0.1 * scale


def test_frfb_and_urfb_fields_agree_while_W_is_at_its_start():
    """R = W + D = R(0) when W = W(0): the two rules only part as W moves."""
    for seed in range(10):
        inst = random_instance(seed)
        fields = [LinearFlow(inst.T, inst.R0s, rule) for rule in ("frfb", "urfb")]
        dW_frfb = fields[0].velocities(inst.W0s, inst.R0s)[0]
        dW_urfb = fields[1].velocities(inst.W0s, inst.R0s)[0]
        for a, b in zip(dW_frfb, dW_urfb):
            assert np.array_equal(a, b)


def test_products_above_by_hand():
    rng = np.random.default_rng(0)
    Ws = [rng.standard_normal(s) for s in [(3, 2), (4, 3), (5, 4)]]
    A = products_above(Ws)
    for got, want in zip(A, [Ws[2] @ Ws[1], Ws[2], np.eye(5)]):
        np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-14)


# --- the measured direction, over many instances ----------------------------------------------------
def test_urfb_reaches_eps_before_frfb_from_small_initial_weights():
    """Measured, not proved: over 40 random instances (depth 2-4, s ∈ {0, 0.1}),
    urfb reaches 1% of the initial error before frfb in a large majority."""
    faster, ratios = 0, []
    seeds = range(1000, 1040)
    for seed in seeds:
        inst = random_instance(seed, scales=(0.0, 0.1))
        t = {rule: integrate(inst.T, inst.W0s, inst.R0s, rule, eps=0.01, t_max=500).t_eps
             for rule in ("frfb", "urfb")}
        assert np.isfinite(t["urfb"]), inst.describe()
        faster += t["urfb"] < t["frfb"]
        ratios.append(t["frfb"] / t["urfb"])
    assert faster >= 0.9 * len(seeds), (faster, len(seeds))
    assert np.median(ratios) > 1.1, np.median(ratios)


# --- discrete SGD goes through hebbref's Dense layers ---------------------------------------------------
from theory.sgd import SGDSetting, linear_network, run_sgd_setting, sgd_step  # noqa: E402


@settings(max_examples=20, deadline=None)
@given(linear_instances(scales=(0.3, 1.0)), SEEDS, st.sampled_from(["bp", "frfb", "urfb"]))
def test_sgd_step_through_hebbref_equals_a_numpy_step_by_hand(inst, seed, rule):
    rng = np.random.default_rng(seed)
    B = 5
    x = rng.standard_normal((B, inst.widths[0]))
    y = rng.standard_normal((B, inst.widths[-1]))
    net = linear_network(inst, rule)
    assert all(type(p).__name__ == "Dense" for p in net.parameters())
    Ws = [W.copy() for W in inst.W0s]
    Rs = [R.copy() for R in inst.R0s]
    # by hand: forward, keeping every layer's input
    inputs = [x]  # x_0, x_1, ..., x_{L-1}
    for W in Ws[:-1]:
        inputs.append(inputs[-1] @ W.T)  # (B, n_l), identity activation
    o = inputs[-1] @ Ws[-1].T  # (B, m)
    delta = (o - y) / B  # e_L
    Gs = [None] * len(Ws)
    for l in reversed(range(len(Ws))):
        Gs[l] = delta.T @ inputs[l]  # G_l = Σ δ xᵀ
        feedback = Ws[l] if rule == "bp" else Rs[l]
        delta = delta @ feedback  # e_{l-1} = Bᵀ δ, before any update
    eta = 0.07
    for l in range(len(Ws)):
        Ws[l] = Ws[l] - eta * Gs[l]
        if rule == "urfb":
            Rs[l] = Rs[l] - eta * Gs[l]
    loss = sgd_step(net, x, y, eta)
    assert abs(loss - 0.5 * np.sum((o - y) ** 2) / B) <= 1e-12 * (1 + loss)
    for layer, W, R in zip(net.parameters(), Ws, Rs):
        np.testing.assert_allclose(layer.W, W, rtol=1e-12, atol=1e-12, err_msg=f"W of {layer.name}, {rule}")
        np.testing.assert_allclose(layer.R, R, rtol=1e-12, atol=1e-12, err_msg=f"R of {layer.name}, {rule}")


@settings(max_examples=20, deadline=None)
@given(linear_instances(scales=(0.0, 0.3, 1.0)), st.sampled_from(["bp", "frfb", "urfb"]))
def test_full_batch_step_on_whitened_data_is_an_euler_step_of_the_flow(inst, rule):
    d = inst.widths[0]
    N = 3 * d
    Q = np.linalg.qr(np.random.default_rng(inst.seed).standard_normal((N, d)))[0]  # (N, d), QᵀQ = I
    X = np.sqrt(N) * Q  # Xᵀ X / N = I exactly (to rounding): whitened
    Y = X @ inst.T.T
    flow = LinearFlow(inst.T, inst.R0s, rule)
    dWs, dRs = flow.velocities(inst.W0s, inst.R0s)
    eta = 1e-2
    net = linear_network(inst, rule)
    sgd_step(net, X, Y, eta)
    for layer, W0, R0, dW, dR in zip(net.parameters(), inst.W0s, inst.R0s, dWs, dRs):
        scale = 1 + np.abs(W0).max() + eta * np.abs(dW).max() * 1e2
        assert np.abs(layer.W - (W0 + eta * dW)).max() <= 1e-12 * scale
        assert np.abs(layer.R - (R0 + eta * dR)).max() <= 1e-12 * scale


def test_sgd_urfb_reaches_eps_before_frfb_over_many_instances():
    """Measured: 12 instances (s ∈ {0, 0.1}), SGD through hebbref with η = 0.02."""
    setting = SGDSetting("test", "", n_quick=12, first_seed=70_000, scales=(0.0, 0.1), max_steps=4000)
    rows, entry = run_sgd_setting(setting, quick=True)
    assert entry["frac_reached"]["urfb"] == 1.0, entry
    assert entry["frac_urfb_faster"] >= 0.75, entry
    # SGD with a small step tracks the flow: its time to eps is within 30% of the ODE's
    for rule in ("frfb", "urfb"):
        assert 0.7 <= entry["median_sgd_time_over_flow_time"][rule] <= 1.3, entry


# --- the report and the command ---------------------------------------------------------------------------
def test_report_writes_summary_of_the_documented_form(tmp_path, monkeypatch):
    import json

    import theory.report as report
    from theory.ensemble import Setting, run_setting

    tiny = Setting("tiny", "three instances", n_quick=3, first_seed=90_000, norm_matched=True)
    monkeypatch.setattr(report, "SETTINGS", [tiny])
    monkeypatch.setattr(report, "SGD_SETTINGS", [SGDSetting("tiny_sgd", "two instances", n_quick=2, max_steps=800)])
    monkeypatch.setattr(report, "IDENTITY_SEEDS_QUICK", range(1))
    report.write_report(str(tmp_path), quick=True, progress=lambda message: None)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [entry["name"] for entry in summary["settings"]] == ["tiny", "tiny_sgd"]
    for entry in summary["settings"]:
        for key in ("n_instances", "frac_urfb_faster", "median_time_ratio_frfb_over_urfb"):
            assert key in entry, key
        assert 0.0 <= entry["frac_urfb_faster"] <= 1.0
    # the numbers are those of the ensemble run itself (deterministic, seeded)
    _, again = run_setting(tiny, quick=True)
    assert summary["settings"][0]["frac_urfb_faster"] == again["frac_urfb_faster"]
    assert summary["settings"][0]["median_time_ratio_frfb_over_urfb"] == again["median_time_ratio_frfb_over_urfb"]
    assert max(summary["identities"]["max_relative_error"].values()) <= MACHINE
    # issue 11: the theorems with their checks, and "faster" measured every way in every setting
    names = [t["name"] for t in summary["theorems"]]
    for needed in ("T1 urfb conservation law", "T2 frfb bottom layer", "T3 closed forms", "T3 dominance"):
        assert needed in names, names
    for t in summary["theorems"]:
        assert set(t) >= {"name", "statement", "max_check_error", "n_checked"} and t["n_checked"] > 0
        assert t["max_check_error"] <= CLOSED_FORM_TOLERANCE, t
    for entry in summary["settings"]:
        assert set(entry["frac_urfb_faster_by_eps"]) == {"0.1", "0.01", "0.001"}, entry["name"]
        assert 0.0 <= entry["frac_all_time_dominance"] <= 1.0
        assert 0.0 <= entry["frac_higher_asymptotic_rate"] <= 1.0
    assert "norm_matched" in summary["settings"][0]
    text = (tmp_path / "report.md").read_text()
    assert "| tiny | 3 |" in text
    for name in ("time_ratio_histograms.png", "curves_tiny.png", "sgd_tiny_sgd.png", "theorem_scalar_chain.png",
                 "dominance_margins.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG", name


def test_the_report_in_two_processes_equals_the_report_in_one(tmp_path, monkeypatch):
    """``jobs=2``: the settings run in spawned workers; the summary and report are those of one process."""
    import json

    import theory.report as report
    from hebbref.errors import ConfigError
    from theory.ensemble import Setting

    monkeypatch.setattr(report, "SETTINGS", [Setting("tiny", "two instances", n_quick=2, first_seed=90_000),
                                             Setting("tiny2", "two more", n_quick=2, first_seed=91_000)])
    monkeypatch.setattr(report, "SGD_SETTINGS", [SGDSetting("tiny_sgd", "one instance", n_quick=1, max_steps=400)])
    monkeypatch.setattr(report, "IDENTITY_SEEDS_QUICK", range(1))
    monkeypatch.setattr(report, "theorem_checks", lambda quick: [])  # not what is run in the workers
    said = {1: [], 2: []}
    for jobs in (1, 2):
        report.write_report(str(tmp_path / str(jobs)), quick=True, jobs=jobs, progress=said[jobs].append)
    summaries = [json.loads((tmp_path / str(jobs) / "summary.json").read_text()) for jobs in (1, 2)]
    for summary in summaries:
        del summary["elapsed_s"]
    assert summaries[0] == summaries[1]
    assert [entry["name"] for entry in summaries[1]["settings"]] == ["tiny", "tiny2", "tiny_sgd"]
    texts = [(tmp_path / str(jobs) / "report.md").read_text().split("\n", 3)[3] for jobs in (1, 2)]  # past the time
    assert texts[0] == texts[1]
    assert sorted(p.name for p in (tmp_path / "1").iterdir()) == sorted(p.name for p in (tmp_path / "2").iterdir())
    # the same progress, each setting named with its time as it finishes, in the same order
    assert [m.split(":")[0] for m in said[1][:-1]] == [m.split(":")[0] for m in said[2][:-1]]
    assert [m.split(":")[0] for m in said[2][2:5]] == ["flow ensemble tiny", "flow ensemble tiny2", "SGD tiny_sgd"]
    with pytest.raises(ConfigError, match="jobs"):
        report.write_report(str(tmp_path / "0"), quick=True, jobs=0)


def test_command_line_rejects_an_empty_out_folder(capsys):
    from hebbref.cli import main

    assert main(["theory", "--quick", "--out", ""]) == 2
    assert "--out" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["theory", "--quick", "--jobs", "0"])
    assert "--jobs" in capsys.readouterr().err


@pytest.mark.parametrize("seed", range(4))
def test_sgd_symmetric_init_urfb_is_bp_bit_for_bit(seed):
    from theory.sgd import teacher_sample

    inst = random_instance(seed, scales=(0.3, 1.0))
    inst.R0s = [W.copy() for W in inst.W0s]  # symmetric init
    X, Y = teacher_sample(inst, 40, seed)
    bp, urfb = linear_network(inst, "bp"), linear_network(inst, "urfb")
    for step in range(20):
        batch = slice(2 * step % 40, 2 * step % 40 + 2)
        sgd_step(bp, X[batch], Y[batch], 0.05)
        sgd_step(urfb, X[batch], Y[batch], 0.05)
    for p, q in zip(bp.parameters(), urfb.parameters()):
        assert np.array_equal(p.W, q.W) and np.array_equal(q.R, q.W)
    assert not np.array_equal(bp.parameters()[0].W, inst.W0s[0])  # it did learn


# --- the theorems of theory/README.md §3 (T1-T4) and the conjecture C1 ------------------------------------
from theory.instances import aligned_instance  # noqa: E402
from theory.theorems import (  # noqa: E402
    aligned_asymptotic_rate,
    aligned_closed_form_errors,
    conservation_drift,
    frfb_invariant_error,
    numerical_rank,
    scalar_asymptotic_rate,
    scalar_product,
    scalar_product_derivative,
    scalar_time_to_error,
    sgd_conservation_step_error,
    trace_corollary_error,
)

THEOREM_TOLERANCE = 1e-10  # what the issue asks of the conservation law along trajectories
CLOSED_FORM_TOLERANCE = 1e-8  # ... and of the closed forms against the ODE solver


def _accurate(inst, rule, **options):
    return integrate(inst.T, inst.W0s, inst.R0s, rule, rtol=1e-12, atol=1e-14, method="DOP853", **options)


@pytest.mark.parametrize("seed", range(8))
def test_T1_urfb_conserves_W_l_W_lT_minus_R_next_T_R_next(seed):
    inst = random_instance(2000 + seed, scales=(0.0, 0.3, 1.0))
    result = _accurate(inst, "urfb", eps=1e-3, t_max=200)
    assert result.t.size > 20
    W_start, R_start = result.flow.unpack(result.z[:, 0])
    worst = max(conservation_drift(W_start, R_start, *result.flow.unpack(z)) for z in result.z.T)
    assert worst <= THEOREM_TOLERANCE, (inst.describe(), worst)
    # the law is urfb's: under frfb (R fixed) the same matrices move by O(1)
    frfb = _accurate(inst, "frfb", eps=1e-3, t_max=200)
    W_start, R_start = frfb.flow.unpack(frfb.z[:, 0])
    assert conservation_drift(W_start, R_start, *frfb.flow.unpack(frfb.z[:, -1])) > 1e-3


@pytest.mark.parametrize("seed", range(4))
def test_T1_trace_corollary_feedback_gain_grows_with_the_layer_below(seed):
    inst = random_instance(2100 + seed, scales=(0.0,))
    result = _accurate(inst, "urfb", eps=1e-3, t_max=200)
    W_start, R_start = result.flow.unpack(result.z[:, 0])
    worst = max(trace_corollary_error(W_start, R_start, *result.flow.unpack(z)) for z in result.z.T)
    assert worst <= THEOREM_TOLERANCE
    Ws, Rs = result.flow.unpack(result.z[:, -1])
    for l in range(inst.depth - 1):  # R_{l+1}ᵀR_{l+1} − R_{l+1}(0)ᵀR_{l+1}(0) = W_l W_lᵀ ⪰ 0, and W did grow
        assert np.sum(Rs[l + 1] ** 2) > np.sum(R_start[l + 1] ** 2) + 0.5 * np.sum(Ws[l] ** 2)


@settings(max_examples=20, deadline=None)
@given(linear_instances(scales=(0.0, 0.3, 1.0)), SEEDS, st.sampled_from([0.01, 0.1]))
def test_T1_discrete_sgd_step_moves_the_law_by_exactly_eta_squared_terms(inst, seed, eta):
    """C_l ← C_l + η² (G_l G_lᵀ − G_{l+1}ᵀ G_{l+1}) through hebbref's own Dense layers."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((6, inst.widths[0]))
    y = rng.standard_normal((6, inst.widths[-1]))
    for rule, holds in (("urfb", True), ("frfb", False)):
        net = linear_network(inst, rule)
        Ws = [p.W.copy() for p in net.parameters()]
        Rs = [p.R.copy() for p in net.parameters()]
        sgd_step(net, x, y, eta)
        Gs = [p.G.copy() for p in net.parameters()]
        error = sgd_conservation_step_error(Ws, Rs, Gs, eta, [p.W for p in net.parameters()],
                                            [p.R for p in net.parameters()])
        if holds:
            assert error <= MACHINE, error
        elif max(np.abs(G).max() for G in Gs[1:]) > 1e-4:  # (at W = 0 the upper G vanish)
            assert error > MACHINE  # frfb does not move R: the first-order terms no longer cancel


@pytest.mark.parametrize("seed", range(4))
def test_T2_frfb_bottom_layer_is_Q1_times_the_integrated_error(seed):
    inst = random_instance(2200 + seed, scales=(0.0, 0.3, 1.0))
    assert frfb_invariant_error(inst.T, inst.W0s, inst.R0s, np.linspace(0.0, 10.0, 21)) <= THEOREM_TOLERANCE
    # ... and it is frfb's: urfb's bottom layer is not R(0)ᵀ U
    from theory.theorems import integrate_with_U

    _, states = integrate_with_U(inst.T, inst.W0s, inst.R0s, "urfb", np.linspace(0.0, 10.0, 3))
    Ws, _, U = states[-1]
    Q1 = inst.R0s[1].T if inst.depth == 2 else None
    if Q1 is not None:
        assert np.abs(Ws[0] - inst.W0s[0] - Q1 @ U).max() > 1e-3


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("rule", ["frfb", "urfb"])
def test_T3_closed_forms_match_the_ODE_solver(seed, rule):
    inst = aligned_instance(2300 + seed, widths=[1, 1, 1] if seed < 3 else None)  # 3 scalar chains
    errors = aligned_closed_form_errors(inst, rule, np.linspace(0.0, 12.0, 25))
    assert errors["weights"] <= CLOSED_FORM_TOLERANCE, errors
    assert errors["reduction"] <= CLOSED_FORM_TOLERANCE, errors


def test_T3_key_inequality_urfb_grows_its_product_faster_at_every_level():
    """At equal product q = r² s(U), dq/dU is larger for urfb: (s^{1/3})' > 2^{-1/3} for U > 0."""
    U = np.linspace(1e-3, 6.0, 2000)
    cube_root_slope = np.gradient(np.cbrt(scalar_product("urfb", U)), U)
    assert np.all(cube_root_slope[1:-1] > 2 ** (-1 / 3))
    np.testing.assert_allclose(np.cbrt(scalar_product("frfb", U)), 2 ** (-1 / 3) * U, rtol=1e-14)
    for q in np.linspace(0.01, 5.0, 50):
        U_u = brentq_root(lambda V: scalar_product("urfb", V) - q)
        U_f = brentq_root(lambda V: scalar_product("frfb", V) - q)
        assert scalar_product_derivative("urfb", U_u) > scalar_product_derivative("frfb", U_f)
    # the identity sinh U (cosh U − 1) = 4 sinh³(U/2) cosh(U/2) used in the proof
    np.testing.assert_allclose(scalar_product("urfb", U), 4 * np.sinh(U / 2) ** 3 * np.cosh(U / 2),
                               rtol=1e-8)  # cosh U − 1 loses digits to cancellation near U = 0


def brentq_root(f):
    from scipy.optimize import brentq

    return brentq(f, 0.0, 50.0, xtol=1e-14)


@pytest.mark.parametrize("seed", range(3))
def test_T3_times_from_the_closed_form_match_the_solver_in_the_scalar_chain(seed):
    inst = aligned_instance(2400 + seed, widths=[1, 1, 1])
    tau, r0 = inst.tau[0], inst.rho_modes[0]
    for rule in ("frfb", "urfb"):
        for eps in (0.1, 0.01, 0.001):
            solver = _accurate(inst, rule, eps=eps, t_max=500).t_eps
            closed = scalar_time_to_error(rule, tau, r0, np.sqrt(eps) * tau)  # V = ½ e²
            assert abs(solver - closed) <= 1e-8 * closed, (rule, eps, solver, closed)
    for eps in (0.5, 0.1, 0.01, 0.001, 1e-6):
        e = np.sqrt(eps) * tau
        assert scalar_time_to_error("urfb", tau, r0, e) < scalar_time_to_error("frfb", tau, r0, e)
    assert scalar_asymptotic_rate("urfb", tau, r0) > scalar_asymptotic_rate("frfb", tau, r0)
    # frfb's rate in closed form: U* = (2τ/r0²)^{1/3} gives 2 r0² s'(U*) = 3·2^{2/3} (|r0| τ)^{2/3}
    assert abs(scalar_asymptotic_rate("frfb", tau, r0) - 3 * 2 ** (2 / 3) * (abs(r0) * tau) ** (2 / 3)) <= 1e-12 * tau


def test_T3_dominance_at_every_time_over_many_aligned_instances():
    """V_urfb(t) ≤ V_frfb(t) on a fine grid, strictly once the two are resolvably apart;
    every level reached sooner; the measured late rate close to the closed form's and higher."""
    for seed in range(40):
        inst = aligned_instance(2500 + seed)
        t_end = 1.2 * _accurate(inst, "frfb", eps=1e-4, t_max=2000).t_eps
        grid = np.linspace(0.0, t_end, 301)
        V = {}
        for rule in ("frfb", "urfb"):
            run = _accurate(inst, rule, eps=0.5, t_max=t_end, stop_at_eps=False, t_eval=grid)
            V[rule] = np.array([run.flow.loss(z) for z in run.z.T])
        V0 = V["frfb"][0]
        assert np.all(V["urfb"] <= V["frfb"] + 1e-12 * V0), inst.describe()
        late = grid >= 0.2 * t_end
        assert np.all(V["urfb"][late] < V["frfb"][late]), inst.describe()
        for eps in (0.1, 0.01, 0.001):
            t = {rule: _accurate(inst, rule, eps=eps, t_max=2000).t_eps for rule in ("frfb", "urfb")}
            assert t["urfb"] < t["frfb"], (inst.describe(), eps, t)
        assert aligned_asymptotic_rate(inst, "urfb") > aligned_asymptotic_rate(inst, "frfb")


def test_T4_stuck_urfb_instance_has_lost_the_rank_of_its_feedback_path():
    """seed 181 of `main`: urfb settles with E ≠ 0 where Q_1 = R_2ᵀR_3ᵀR_4ᵀ has lost a rank;
    at that state bp's velocity is not zero, and frfb's constant Q_1 has full rank."""
    from theory.flow import feedback_products, forward_products

    inst = random_instance(181)
    run = integrate(inst.T, inst.W0s, inst.R0s, "urfb", eps=0.01, t_max=500)
    assert run.status == "t_max"
    Ws, Rs = run.flow.unpack(run.z[:, -1])
    E = inst.T - forward_products(Ws)[-1]
    Q1 = feedback_products(Rs)[0]
    m = inst.widths[-1]
    assert np.linalg.norm(E) > 0.1 * np.linalg.norm(inst.T)
    assert numerical_rank(Q1) < m == numerical_rank(feedback_products(inst.R0s)[0])
    assert np.linalg.norm(Q1 @ E) < 1e-5 * np.linalg.norm(Q1) * np.linalg.norm(E)  # v_1 = Q_1 E ≈ 0
    g1 = products_above(Ws)[0].T @ E
    assert np.linalg.norm(g1) > 0.1 * np.linalg.norm(E)  # bp's v_1 is far from zero there


def test_theorem_setting_dominates_in_every_instance_and_summaries_are_consistent():
    """T3's setting as the report runs it: dominance, every ε sooner and a higher rate in every
    instance; the median ratio lies between the quantiles (item 7)."""
    import dataclasses

    from theory.ensemble import SETTINGS, run_setting

    setting = dataclasses.replace(next(s for s in SETTINGS if s.name == "theorem_aligned"), n_quick=10)
    _, entry = run_setting(setting, quick=True)
    assert entry["must_dominate"] and entry["frac_all_time_dominance"] == 1.0, entry["dominance_failures"]
    assert all(v == 1.0 for v in entry["frac_urfb_faster_by_eps"].values()), entry["frac_urfb_faster_by_eps"]
    assert entry["frac_higher_asymptotic_rate"] == 1.0
    q = entry["time_ratio_frfb_over_urfb_quantiles"]
    assert q["p10"] <= entry["median_time_ratio_frfb_over_urfb"] <= q["p90"]


def test_summary_median_and_quantiles_come_from_one_set_with_runs_that_never_arrive():
    from theory.ensemble import _order_statistic, _quantiles

    ratios = np.array([1.1, 1.2, np.inf, np.inf, np.inf])  # frfb never arrives in three instances
    assert _order_statistic(ratios, 50) == np.inf
    q = _quantiles(ratios)
    assert q["p10"] == 1.1 and q["p90"] == "inf"  # the quantiles keep the +inf ratios, as the median does


def test_norm_matched_control_has_urfbs_feedback_norm_law():
    """The control's feedback norm at its own state is urfb's: ‖B_{l+1}‖² = ‖R(0)‖² + ‖W_l‖² − ‖W_l(0)‖²."""
    inst = random_instance(4000, depths=(3,), scales=(0.3,))
    run = integrate(inst.T, inst.W0s, inst.R0s, "frfb", eps=0.01, t_max=100, norm_matched=True)
    Ws, _ = run.flow.unpack(run.z[:, -1])
    Bs = run.flow.norm_matched_feedback(Ws)
    for l in range(inst.depth - 1):
        want = np.sum(inst.R0s[l + 1] ** 2) + np.sum(Ws[l] ** 2) - np.sum(inst.W0s[l] ** 2)
        assert abs(np.sum(Bs[l + 1] ** 2) - want) <= 1e-12 * want
        cos = np.sum(Bs[l + 1] * inst.R0s[l + 1]) / np.linalg.norm(Bs[l + 1]) / np.linalg.norm(inst.R0s[l + 1])
        assert cos > 1 - 1e-12  # the direction stays R(0)'s
    assert np.sum(Ws[0] ** 2) > np.sum(inst.W0s[0] ** 2)  # the gain did change


def test_conjecture_C1_dominance_over_random_feedback_from_zero_forward_weights():
    """Evidence, not proof: L = 2, W(0) = 0, random R(0), 30 instances at rtol 1e-10."""
    for seed in range(30):
        inst = random_instance(5000 + seed, depths=(2,), scales=(0.0,))
        t_end = 1.2 * integrate(inst.T, inst.W0s, inst.R0s, "frfb", eps=1e-3, t_max=500).t_eps
        grid = np.linspace(0.0, t_end, 201)
        V = {}
        for rule in ("frfb", "urfb"):
            run = integrate(inst.T, inst.W0s, inst.R0s, rule, eps=0.5, t_max=t_end, stop_at_eps=False, t_eval=grid,
                            rtol=1e-10, atol=1e-12)
            V[rule] = np.array([run.flow.loss(z) for z in run.z.T])
        assert np.all(V["urfb"] <= V["frfb"] * (1 + 1e-8)), inst.describe()


def test_T4_the_ensemble_reports_the_stalled_urfb_run_and_its_rank_loss():
    from theory.ensemble import faster_every_way, run_instance

    result = run_instance(random_instance(181))
    stalled = result.stuck["urfb"]
    assert stalled is not None and stalled["rank_Q1_end"] < stalled["rank_Q1_start"], stalled
    assert result.stuck["frfb"] is None
    assert np.isinf(result.t_by_eps["urfb"][0.01]) and np.isfinite(result.t_by_eps["frfb"][0.01])
    summary = faster_every_way([result])
    assert summary["stalled_runs"]["urfb"]["n_with_rank_loss_of_Q1"] == 1
    assert summary["frac_urfb_faster_by_eps"]["0.01"] == 0.0  # a run that never arrives is not faster
