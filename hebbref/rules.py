"""The learning rules, one small class each (SPEC §1, §3, §9).

Every weighted layer holds a forward matrix ``W`` and a feedback matrix ``R`` of the
same shape, and after the backward pass its increment ``G = Σ_batch δ xᵀ``. A rule
owns every decision about feedback; the layers only do the math (the error sent down
through a matrix ``B`` they are handed, the increment ``G``). A rule answers:

1. which matrix carries the error down from a layer: ``e_{l-1} = Bᵀ δ_l``
   (``feedback``), or, for direct feedback, which error reaches a hidden layer from
   the output (``direct_error``);
2. how W and R change once every error is sent (``update``): ``W -= η (G + λ W)``
   under every rule (λ, the weight decay, is 0 by default), and R as the rule says;
3. anything else it does after the SGD step (``after_update``: the weight mirror).

| rule | feedback B | R update | source |
|------|-----------|----------|--------|
| bp   | W | none | back-propagation |
| frfb | R, fixed | none | Lillicrap et al. 2016 (feedback alignment) |
| urfb | R | same increment as W | Amit 2019; Zipser & Rumelhart 1990 |
| kp   | R | same increment as W, and the same weight decay | Kolen & Pollack 1994; Akrout et al. 2019 |
| usf  | s·sign(W), s = ‖W‖/√(nonzeros of W) | none | Liao et al. 2016; Xiao et al. 2018 |
| frsf | sign(W) ⊙ abs(R), R fixed | none | Moskovitz et al. 2018 |
| brsf | sign(W) ⊙ abs(M), M fresh each batch | none | Moskovitz et al. 2018 |
| dfa  | output error sent to each hidden layer through a fixed random F_l | none | Nøkland 2016 |
| wm   | R | a weight-mirror step after each SGD step | Akrout et al. 2019 |

A new rule is one subclass here, registered in ``RULES``; nothing in the layers or
kernels changes. A network keeps its own instance (``make_rule``), bound to it once
(``bind``), because some rules hold state: a random generator (brsf, wm) or fixed
matrices (dfa).
"""
import copy

import numpy as np

from .errors import ConfigError, choose
from .init import glorot_limit, glorot_uniform


# --- the two updates every rule shares --------------------------------------------------
def forward_update(W, G, eta, weight_decay=0.0):
    """W ← W - η (G + λ W), in place; with λ = 0 exactly W ← W - η G.  # SPEC §3, §9"""
    if weight_decay:
        W -= eta * (G + weight_decay * W)
    else:
        W -= eta * G


def hebbian_feedback_update(R, G, eta, weight_decay=0.0, step=forward_update):
    """R ← R - η (G + λ R), in place: the very increment W gets (urfb; kp with its decay).  # SPEC §3, §9

    ``step`` takes the SGD step: ``forward_update``, or a backend's ``weight_update`` (the same bits).
    """
    step(R, G, eta, weight_decay)


# --- the base class ------------------------------------------------------------------------
class Rule:
    """A learning rule: the base class is back-propagation's frame with nothing in it.

    Attributes a subclass sets:

    - ``name``: the name ``build_network(rule=...)`` and ``--rule`` take;
    - ``summary``: one line for ``hebbref rules``;
    - ``feedback_uses_R``: True when the error sent down depends on R (the wiring tests
      hold every rule to it);
    - ``direct``: True when hidden layers get their error from the output (dfa);
    - ``draws_in_training``: True when the rule draws random numbers at every step
      (brsf, wm): its stream is then part of the network's state.
    """

    name = None
    summary = ""
    feedback_uses_R = True
    direct = False
    draws_in_training = False
    # the two flags of the three-rule table, kept for code written against it (theory/flow.py):
    # B = W, and R -= factor·η·G in the SGD step
    feedback_is_forward = False
    feedback_rate_factor = 0.0

    def __init__(self):
        self.network, self.rng = None, None

    def bind(self, network, rng):
        """Called once when a network is built with this rule; ``rng`` is the rule's own stream."""
        self.network, self.rng = network, rng

    # 1. the feedback
    def feedback(self, W, R):
        """B, the matrix whose transpose sends the error down a layer with weights W, R."""
        raise NotImplementedError

    def feedback_for(self, layer):
        """B for this layer in this step (a rule with per-layer state may override)."""
        return self.feedback(layer.W, layer.R)

    def probe_feedback(self, layer):
        """B as ``feedback_for`` would give it, without advancing any random stream (for probes)."""
        return self.feedback_for(layer)

    # 2. the updates
    def update(self, layer, eta, weight_decay=0.0):
        """W -= η (G + λ W), and R as the rule says (``feedback_update``).

        Each SGD step is ``forward_update``'s arithmetic, taken by the layer's backend
        (``layer.ops.weight_update``: NumPy's two lines, or one compiled pass, the same bits).
        """
        step = layer.ops.weight_update
        step(layer.W, layer.G, eta, weight_decay)
        self.feedback_update(layer.R, layer.G, eta, weight_decay, step)

    def feedback_update(self, R, G, eta, weight_decay=0.0, step=forward_update):
        """R's change in an SGD step: none, unless the rule says otherwise (``step`` takes one, as ``forward_update``)."""

    # 3. after the step
    def after_update(self, network):
        """Anything the rule does once the SGD step is taken (nothing by default)."""

    # state, for checkpoints: the random stream, if the rule draws from it during training
    def state(self):
        return self.rng.bit_generator.state if self.draws_in_training and self.rng is not None else None

    def load_state(self, state):
        if self.rng is not None and state is not None:
            self.rng.bit_generator.state = state

    def __repr__(self):
        return f"<rule {self.name}>"


# --- the paper's three --------------------------------------------------------------------
class BackPropagation(Rule):
    """bp: the error goes down through W itself, B = W. R is never touched.

    Lineage: ordinary back-propagation (Rumelhart, Hinton & Williams 1986), the
    reference every other rule is measured against (SPEC §1).
    """

    name = "bp"
    summary = "back-propagation: B = W; R unused"
    feedback_uses_R = False
    feedback_is_forward = True

    def feedback(self, W, R):
        return W


class FixedRandomFeedback(Rule):
    """frfb: B = R, and R stays at its random start, bit for bit.

    Lineage: feedback alignment, Lillicrap, Cownden, Tweed & Akerman 2016 (Nature
    Communications 7:13276); Amit 2019 calls it fixed random feedback (SPEC §1).
    """

    name = "frfb"
    summary = "fixed random feedback (feedback alignment): B = R, R fixed"

    def feedback(self, W, R):
        return R


class UpdatedRandomFeedback(Rule):
    """urfb: B = R, and R receives W's very increment, so R - W never changes.

    Lineage: Amit 2019 (the paper hebbref reproduces); with R(0) = W(0) it is the
    symmetric scheme of Zipser & Rumelhart 1990, i.e. back-propagation (SPEC §1).
    The weight decay, when asked for, acts on W only: R - W then drifts; ``kp`` is
    the rule that decays R too.
    """

    name = "urfb"
    summary = "updated random feedback (the paper's method): B = R, R gets W's increment"
    feedback_rate_factor = 1.0

    def feedback(self, W, R):
        return R

    def feedback_update(self, R, G, eta, weight_decay=0.0, step=forward_update):
        hebbian_feedback_update(R, G, eta, step=step)  # R -= η G: W's increment, without W's decay


# --- the wider family (SPEC §9) ------------------------------------------------------------
class KolenPollack(UpdatedRandomFeedback):
    """kp: B = R; R gets W's increment and W's weight decay, so R - W = (1 - ηλ)ᵗ (R(0) - W(0)).

    Lineage: Kolen & Pollack 1994 ("Backpropagation without weight transport", ICNN),
    brought back by Akrout, Wilson, Humphreys, Lillicrap & Tweed 2019 (NeurIPS,
    "Deep learning without weight transport"). With λ = 0 it is ``urfb`` bit for bit;
    with λ > 0 the difference R - W shrinks geometrically and R converges to W.
    """

    name = "kp"
    summary = "Kolen-Pollack: B = R, R gets W's increment and W's weight decay"

    def feedback_update(self, R, G, eta, weight_decay=0.0, step=forward_update):
        hebbian_feedback_update(R, G, eta, weight_decay, step)  # R -= η (G + λ R)


def sign_scale(W):
    """s = ‖W‖_F / √(number of nonzero entries of W), so that ‖s·sign(W)‖_F = ‖W‖_F (1 for W = 0)."""
    count = np.count_nonzero(W)
    return float(np.linalg.norm(W) / np.sqrt(count)) if count else 1.0


class UniformSignFeedback(Rule):
    """usf: B = s·sign(W), one positive scale per layer, recomputed each step.

    Lineage: uniform sign-concordant feedback, Liao, Leibo & Poggio 2016 (AAAI, "How
    important is weight symmetry in backpropagation?"); sign symmetry, Xiao, Chen,
    Liao & Poggio 2018. The scale is our choice: s = ‖W‖_F / √(nonzeros of W), the one
    that makes ‖B‖_F = ‖W‖_F (``sign_scale``); the sources leave it free, and with
    batch normalisation it does not matter, which here it does. R is unused.
    """

    name = "usf"
    summary = "uniform sign-concordant feedback: B = s * sign(W), one scale s with ||B|| = ||W||"
    feedback_uses_R = False

    def feedback(self, W, R):
        B = np.sign(W)  # W's dtype
        B *= sign_scale(W)
        return B


class FixedRandomSignFeedback(Rule):
    """frsf: B = sign(W) ⊙ |R|, the signs of W with R's fixed random magnitudes.

    Lineage: Moskovitz, Litwin-Kumar & Abbott 2018 ("Feedback alignment in deep
    convolutional networks", arXiv 1812.06488), "fixed random-magnitude sign-concordant
    feedback". R is drawn as in frfb (Glorot uniform) and never changes.
    """

    name = "frsf"
    summary = "fixed random-magnitude sign feedback: B = sign(W) * |R|, R fixed"

    def feedback(self, W, R):
        B = np.abs(R)
        B *= np.sign(W)  # sign(W) ⊙ |R|, 0 where W is 0
        return B


class BatchRandomSignFeedback(Rule):
    """brsf: B = sign(W) ⊙ |M|, M drawn afresh for every batch.

    Lineage: Moskovitz, Litwin-Kumar & Abbott 2018, "batchwise random-magnitude
    sign-concordant feedback". M is drawn as R is (Glorot uniform with the layer's
    fans, from the rule's own random stream), so |M| is uniform on [0, a]. R is unused.
    """

    name = "brsf"
    summary = "batchwise random-magnitude sign feedback: B = sign(W) * |M|, M fresh each batch"
    feedback_uses_R = False
    draws_in_training = True

    def feedback_for(self, layer, rng=None):
        magnitude = (rng or self.rng).random(layer.W.shape, dtype=layer.W.dtype)  # |M| / a, uniform on [0, 1)
        magnitude *= glorot_limit(*layer.fans)  # |M|, uniform on [0, a): M Glorot uniform
        magnitude *= np.sign(layer.W)
        return magnitude

    def feedback(self, W, R):
        raise ConfigError("brsf draws its magnitudes per layer: use feedback_for(layer)")

    def probe_feedback(self, layer):
        scratch = np.random.default_rng()
        scratch.bit_generator.state = self.rng.bit_generator.state  # a copy: training's stream stays put
        return self.feedback_for(layer, scratch)


class DirectFeedbackAlignment(Rule):
    """dfa: the output error e_L reaches every hidden layer l directly, e_l = F_l e_L.

    Lineage: Nøkland 2016 ("Direct feedback alignment provides learning in deep neural
    networks", NeurIPS). What we implemented (our choices where the source is silent):

    - F_l is fixed, drawn once when the network is built, of shape (n_l, C) with n_l
      the size of layer l's field h_l (n_l = C_out·H·W for a conv or locally connected
      layer) and C the classes; Glorot uniform with fan_in = C, fan_out = n_l;
    - e_l is the error at layer l's activation output x_l = σ(h_l), so
      δ_l = (F_l e_L) ⊙ σ'(h_l); pooling and dropout above layer l are not traversed;
      in a sum block each of the two convolutions gets its own F and the skip path
      is not used;
    - the output layer learns as under bp, δ_L = e_L; no layer sends an error down
      (nothing computes Bᵀδ), and R is unused.
    """

    name = "dfa"
    summary = "direct feedback alignment: e_l = F_l e_L, F_l fixed random"
    feedback_uses_R = False
    direct = True

    def bind(self, network, rng):
        super().bind(network, rng)
        C = network.n_classes
        self.F = {}
        for layer in network.parameters()[:-1]:
            n = int(np.prod(layer.output_shape))
            self.F[layer.name] = glorot_uniform(rng, (n, C), C, n, network.dtype)  # (n_l, C)

    def feedback(self, W, R):
        raise ConfigError("dfa sends no error down a layer; see direct_error")

    def direct_error(self, layer, e_L):
        """e_l = F_l e_L for every example: (N, C) -> (N,) + layer.output_shape.  (F is drawn
        again, identically, when the network is rebuilt: no state to save.)"""
        e = layer.ops.dense_forward(e_L, self.F[layer.name])[0]  # e_L Fᵀ: the dense layer's product, by the backend
        return e.reshape((e_L.shape[0],) + tuple(layer.output_shape))


class WeightMirror(Rule):
    """wm: B = R, and after each SGD step a weight-mirror step teaches R the direction of W.

    Lineage: Akrout, Wilson, Humphreys, Lillicrap & Tweed 2019 ("Deep learning without
    weight transport", NeurIPS), the weight mirror. What we implemented:

    - the SGD step moves W as every rule does and leaves R alone;
    - then, per layer, the mirror step: noise ξ ~ N(0, σ²) at the layer's input
      (a batch of ``mirror_batch`` samples), the field it causes y = W ξ (linear: the
      mirror uses the layer's field, not σ(h)), and R ← R + η_m ( ⟨y ξᵀ⟩ - λ_m R ),
      ⟨·⟩ the mean over the products summed into the increment. Since
      E⟨y ξᵀ⟩ = σ² W, R relaxes toward (σ²/λ_m) W: a positive multiple of W, with
      the decay keeping it bounded. This is the form of Akrout et al.'s mirror
      update: a Hebbian product of the noise and the response it causes, plus a
      decay; their feedback matrix has Wᵀ's shape where our R has W's, hence y ξᵀ;
    - for a tied conv the noise is one k×k patch per sample and only the one output
      position whose window lies wholly inside it counts, so that every tap of R
      sees the same σ² W; for a locally connected layer the noise fills the layer's
      input and each location learns its own filter (taps that only ever see the
      zero padding are never used and only decay);
    - defaults: σ = 1, η_m = 0.1, λ_m = 1 (so R → W in scale), 16 noise samples;
    - the training weight decay λ acts on W only; R's decay is the mirror's λ_m.
    """

    name = "wm"
    summary = "weight mirror: B = R, R learns W's direction from noise after each step"
    draws_in_training = True

    def __init__(self, mirror_rate=0.1, mirror_decay=1.0, noise=1.0, mirror_batch=16):
        super().__init__()
        self.mirror_rate, self.mirror_decay = mirror_rate, mirror_decay
        self.noise, self.mirror_batch = noise, mirror_batch

    def feedback(self, W, R):
        return R

    def after_update(self, network):
        for layer in network.parameters():
            self.mirror(layer)

    def mirror(self, layer):
        """R ← R + η_m (⟨y ξᵀ⟩ - λ_m R) with ξ noise at the layer's input and y = W ξ."""
        n, dtype = self.mirror_batch, layer.W.dtype
        if layer.kind == "dense":
            xi = self.noise * self.rng.standard_normal((n, layer.W.shape[1]), dtype=dtype)  # (n, D_in)
            y, cache = layer._forward(xi, layer.W)  # (n, D_out)
            count = n
        elif layer.kind == "conv":
            c_out, c_in, k, _ = layer.W.shape
            xi = self.noise * self.rng.standard_normal((n, c_in, k, k), dtype=dtype)  # (n, C_in, k, k)
            y, cache = layer._forward(xi, layer.W)  # (n, C_out, k, k)
            inside = (k - 1) // 2  # the output position whose window is all noise, no padding
            mask = np.zeros_like(y)
            mask[:, :, inside, inside] = 1
            y = y * mask
            count = n
        else:  # locally connected: (H, W, C_out, C_in, k, k)
            H, Wd, c_out, c_in, k, _ = layer.W.shape
            xi = self.noise * self.rng.standard_normal((n, c_in, H, Wd), dtype=dtype)
            y, cache = layer._forward(xi, layer.W)  # (n, C_out, H, W)
            count = n
        mirror_product = layer._weight_increment(y, cache)  # Σ y ξᵀ = count · ⟨y ξᵀ⟩, W's shape
        # R + η_m (⟨y ξᵀ⟩ - λ_m R) = (1 - η_m λ_m) R + (η_m / count) Σ y ξᵀ, in two passes
        layer.R *= 1.0 - self.mirror_rate * self.mirror_decay
        mirror_product *= self.mirror_rate / count
        layer.R += mirror_product


# --- the table -----------------------------------------------------------------------------
RULES = {cls.name: cls for cls in (
    BackPropagation, FixedRandomFeedback, UpdatedRandomFeedback, KolenPollack,
    UniformSignFeedback, FixedRandomSignFeedback, BatchRandomSignFeedback,
    DirectFeedbackAlignment, WeightMirror,
)}


def get_rule(name):
    """The rule class called ``name`` (one of ``RULES``)."""
    return choose("rule", name, RULES)


def make_rule(rule):
    """A fresh rule instance from a name, a Rule subclass, or an instance (used as it is,
    unless it is bound to a network already: then a copy, since rules hold per-network state)."""
    if isinstance(rule, Rule):
        return copy.copy(rule) if rule.network is not None else rule
    if isinstance(rule, type) and issubclass(rule, Rule):
        return rule()
    return get_rule(rule)()


def rule_name(rule):
    """The name of a rule given as a name, class or instance."""
    return rule if isinstance(rule, str) else make_rule(rule).name


# --- the functions of the original three-rule table, kept for the tutorials -------------------
def feedback_matrix(W, R, rule):
    """B, the matrix whose transpose sends the error down: W for bp, R for frfb and urfb.  # SPEC §3"""
    return make_rule(rule).feedback(W, R)


def feedback_update(R, G, eta, rule, weight_decay=0.0):
    """R's change in one SGD step under ``rule``, in place: R -= η G for urfb, nothing for bp and frfb.  # SPEC §3

    Under ``urfb`` this is the very increment that ``forward_update`` gives W, which
    is why ``R - W`` is conserved. Under ``frfb`` R is not touched at all (bit for bit).
    """
    make_rule(rule).feedback_update(R, G, eta, weight_decay)
