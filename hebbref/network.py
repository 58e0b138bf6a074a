"""A network: a list of layers, a learning rule, and one SGD step (SPEC §3).

    o = forward(x)                       # SPEC §2 (a ramp and the max pool above it: one step; a conv or
                                         #   untied layer, its ramp and the pool above: one step; a sum
                                         #   block's output and the pool above: one pass; a dense layer
                                         #   reading dropout's output: its products given the mask)
    loss, e_L = loss_fn(o, y)            # SPEC §4, e_L carries 1/B
    for each weighted layer: B = rule.feedback_for(layer)   # the rule decides (hebbref.rules)
    for each layer, top to bottom:       # SPEC §3
        e = layer.backward(e)            #   δ = e ⊙ σ'(h);  G = Σ δ xᵀ;  e_below = Bᵀ δ
                                         #   (a max pool right above a ramp and that ramp: one step;
                                         #   with the conv or untied layer below the ramp too, one step;
                                         #   a dense layer and the dropout below it: one step each way)
    for each weighted layer:             # after all errors are sent
        rule.update(layer, η, λ)         #   W -= η (G + λW);  R as the rule says
    rule.after_update(network)           # the weight mirror's step, for wm

A rule with direct feedback (dfa) replaces the backward pass: the output layer gets
δ_L = e_L, and every hidden layer δ_l = rule.direct_error(layer, e_L) ⊙ σ'(h_l).
"""
import json
from dataclasses import dataclass

import numpy as np

from .activations import DEFAULT_SLOPE
from .architectures import describe_layers
from .backends import get_backend
from .errors import ConfigError, InputError, choose
from .init import check_init
from .validation import check_loss_args, check_network, check_network_args, check_predict, check_step, check_x, check_y
from .losses import get_loss
from .modules import UNTIED_INITS, Conv2D, Dense, Dropout, Flatten, Layer, MaxPool, Ramp, SumBlock, WeightedLayer
from .rules import make_rule

DTYPES = {"float64": np.float64, "float32": np.float32}


@dataclass
class BuildContext:
    """What layers need to know when they draw their weights."""

    dtype: type
    init: str
    untied_init: str
    slope: float
    backend: object
    weight_rng: np.random.Generator
    feedback_rng: np.random.Generator
    dropout_rng: np.random.Generator


def _dtype_name(dtype):
    try:
        return np.dtype(dtype).name
    except TypeError:
        return dtype


class Network:
    """A feed-forward network trained by a learning rule (``hebbref.rules``: bp, frfb, urfb, ...).

    Use ``build_network`` rather than this constructor. Random streams: W, R and the
    dropout masks each come from their own generator spawned from ``seed``, so two
    networks with one seed get the same W whatever their ``init`` and draw the same
    dropout masks whatever their rule.
    """

    def __init__(self, layers, input_shape, n_classes, rule="urfb", init="random", seed=0,
                 dtype="float64", backend=None, slope=DEFAULT_SLOPE, untied_init="tied",
                 description=None):
        rule = make_rule(rule)
        check_init(init)
        check_network(layers, input_shape, n_classes, seed, dtype, slope)  # hebbref.validation
        choose("untied_init", untied_init, {k: k for k in UNTIED_INITS})
        self.dtype = choose("dtype", _dtype_name(dtype), DTYPES)
        self.input_shape = tuple(int(d) for d in input_shape)
        self.n_classes = int(n_classes)
        if self.n_classes < 2:
            raise ConfigError(f"n_classes must be at least 2, got {n_classes}")
        if not self.input_shape or min(self.input_shape) < 1:
            raise ConfigError(f"input_shape must be positive sizes such as (1, 28, 28), got {input_shape}")
        self.init, self.seed, self.description = init, seed, description
        self.backend = get_backend(backend)
        # the first three streams are those of the three-rule code: its networks are unchanged
        weight_seq, feedback_seq, dropout_seq, rule_seq = np.random.SeedSequence(seed).spawn(4)
        self._rule_seq = rule_seq
        ctx = BuildContext(
            dtype=self.dtype, init=init, untied_init=untied_init, slope=slope,
            backend=self.backend,
            weight_rng=np.random.default_rng(weight_seq),
            feedback_rng=np.random.default_rng(feedback_seq),
            dropout_rng=np.random.default_rng(dropout_seq),
        )
        self.dropout_rng = ctx.dropout_rng
        self.layers = []
        shape = self.input_shape
        for layer in layers:
            if not isinstance(layer, Layer):
                raise ConfigError(f"a network is made of hebbref.modules layers, got {layer!r}")
            if isinstance(layer, Dense) and len(shape) > 1:
                self.layers.append(Flatten())
                shape = self.layers[-1].build(shape, ctx)
            shape = layer.build(shape, ctx)
            self.layers.append(layer)
        if shape != (self.n_classes,):
            raise ConfigError(f"the last layer must give {self.n_classes} outputs, it gives shape {shape}")
        self._name_parameters()
        # below the first weighted layer nothing learns: its error need not be computed
        self.parameters()[0].sends_error = False
        self._activations = self._find_activations()
        self.rule = rule

    def _find_activations(self):
        """{weighted layer name: the Ramp right after it, or None (σ' = 1)}, for direct feedback."""
        found = {}
        for layer, after in zip(self.layers, self.layers[1:] + [None]):
            if hasattr(layer, "activations"):  # a sum block knows its own
                found.update({p.name: ramp for p, ramp in layer.activations()})
            elif isinstance(layer, WeightedLayer):
                found[layer.name] = after if isinstance(after, Ramp) else None
        return found

    def _name_parameters(self):
        counts = {}
        for layer in self.layers:
            counts[layer.kind] = counts.get(layer.kind, 0) + 1
            layer.name = f"{layer.kind}{counts[layer.kind]}"
            if layer.kind == "sum":
                layer.conv_a.name, layer.conv_b.name = f"{layer.name}.a", f"{layer.name}.b"

    # --- the rule -------------------------------------------------------------------
    @property
    def rule(self):
        """The rule object (``hebbref.rules``); set it with a name, a class or an instance."""
        return self._rule

    @rule.setter
    def rule(self, rule):
        if getattr(rule, "network", None) is not self:  # set back to its own rule: keep its state
            rule = make_rule(rule)
            rule.bind(self, np.random.default_rng(self._rule_seq))
        self._rule = rule

    def parameters(self):
        """Every weighted layer, input to output; each has ``.name``, ``.W``, ``.R``."""
        return [p for layer in self.layers for p in layer.parameters()]

    # --- checks on what users hand in ---------------------------------------------------
    def _check_x(self, x):
        if not isinstance(x, np.ndarray):
            raise InputError(f"x must be a numpy array of shape (N, {', '.join(map(str, self.input_shape))}), got {type(x).__name__}")
        if x.shape[1:] != self.input_shape or x.ndim != len(self.input_shape) + 1:
            raise InputError(f"x must have shape (N, {', '.join(map(str, self.input_shape))}), got {x.shape}")
        if not np.issubdtype(x.dtype, np.number):
            raise InputError(f"x must hold numbers, got dtype {x.dtype}")
        x = x.astype(self.dtype, copy=False)
        if not np.isfinite(x).all():
            raise InputError("x holds NaN or infinite values")
        return x

    def _check_y(self, y, n):
        y = np.asarray(y)
        if y.shape != (n,):
            raise InputError(f"y must be {n} integer labels (one per example), got shape {y.shape}")
        if y.size and not np.issubdtype(y.dtype, np.integer):
            if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
                raise InputError(f"y must be integer labels, got dtype {y.dtype}")
            y = y.astype(np.int64)
        if y.size and (y.min() < 0 or y.max() >= self.n_classes):
            raise InputError(f"labels must lie in [0, {self.n_classes}), got values from {y.min()} to {y.max()}")
        return y

    # --- the three passes -----------------------------------------------------------------
    def forward(self, x, train=False):
        """Outputs o = h_L, (N, n_classes). ``train=True`` draws dropout masks and keeps caches."""
        check_x(x)  # hebbref.validation
        x = self._check_x(x)
        i = 0
        while i < len(self.layers):
            layer, above, top = (self.layers[i:i + 3] + [None, None])[:3]
            if self._block_at(i):
                x = layer.forward_with_ramp_and_pool(x, above, top, train)  # three steps as one
                i += 3
            elif isinstance(layer, Ramp) and isinstance(above, MaxPool):
                x = above.forward_of_ramp(x, layer, train)  # the ramp's step and the pool's, in one pass
                i += 2
            elif isinstance(layer, SumBlock) and isinstance(above, MaxPool):
                x = layer.forward_with_pool(x, above, train)  # the block's output formed as the pool reads it
                i += 2
            elif isinstance(layer, Dense) and (dropout := self._dropout_below(i)) is not None:
                x = layer.forward_of_dropped(x, dropout)  # the products given dropout's mask
                i += 1
            else:
                x = layer.forward(x, train)
                i += 1
        return x

    def _block_at(self, i):
        """Whether layers i, i+1, i+2 are a conv or untied layer, a ramp and a max pool, taken as one step each way.

        Not under a direct-feedback rule, which reads each ramp's h in the layers' own layout.
        """
        three = self.layers[i:i + 3]
        return (len(three) == 3 and isinstance(three[0], Conv2D) and isinstance(three[1], Ramp)
                and isinstance(three[2], MaxPool) and not self.rule.direct)

    def _dropout_below(self, i):
        """The Dropout right below layer i (a flattening between them or not), if its last pass drew a mask; else None."""
        j = i - 1 if i >= 1 and isinstance(self.layers[i - 1], Flatten) else i
        below = self.layers[j - 1] if j >= 1 else None
        return below if isinstance(below, Dropout) and below.mask is not None else None

    def backward(self, e, rule=None):
        """Send the output error e_L down through the layers, filling each weighted layer's G.

        The rule (the network's own, or ``rule`` for this pass only, e.g. bp for a
        probe) hands every weighted layer the matrix B its error goes down through.
        """
        rule = self.rule if rule is None else rule
        if rule.direct:
            return self._backward_direct(e, rule)
        for p in self.parameters():
            p.feedback = rule.feedback_for(p) if p.sends_error else None
        i = len(self.layers) - 1
        while i >= 0:
            layer, below = self.layers[i], self.layers[i - 1] if i > 0 else None
            if isinstance(layer, MaxPool) and i >= 2 and getattr(self.layers[i - 2], "in_block", False):
                e = self.layers[i - 2].backward_from_pool(e, below)  # the pool's, the ramp's and the conv or untied layer's
                i -= 3
            elif isinstance(layer, MaxPool) and isinstance(below, Ramp):
                e = layer.backward_through_ramp(e, below)  # the pool's step and the ramp's, in one pass
                i -= 2
            elif isinstance(layer, MaxPool) and isinstance(below, SumBlock):
                e = below.backward_from_pool(e, layer)  # the pool's error taken into both ramps' steps
                i -= 2
            elif isinstance(layer, Dense) and layer.dropout_below is not None:
                e = layer.backward_through_dropout(e)  # the dense layer's, a flattening's and the dropout's
                i -= 3 if isinstance(below, Flatten) else 2
            else:
                e = layer.backward(e)
                i -= 1
            if e is None:  # the first weighted layer sends nothing further down
                break

    def _backward_direct(self, e_L, rule):
        """Direct feedback: δ_L = e_L at the output; δ_l = e_l ⊙ σ'(h_l), e_l = rule.direct_error(l, e_L)."""
        *hidden, output = self.parameters()
        output.learn(e_L)  # the output layer is linear: δ_L = e_L
        for p in hidden:
            e = rule.direct_error(p, e_L)  # (N,) + p.output_shape
            ramp = self._activations[p.name]
            p.learn(e if ramp is None else ramp.backward(e))  # δ_l = e_l ⊙ σ'(h_l)

    def update(self, eta, weight_decay=0.0):
        """W -= η (G + λ W) and the rule's R update in every weighted layer, then the rule's own step."""
        for p in self.parameters():
            self.rule.update(p, eta, weight_decay)
        self.rule.after_update(self)

    def train_step(self, x, y, lr=0.1, loss="hinge", mu=1.0, weight_decay=0.0):
        """One SGD step on the batch-mean loss; returns the loss before the step.

        weight_decay: λ ≥ 0; W -= η (G + λ W) under every rule, R too where the rule says (kp).
        """
        loss_fn = get_loss(loss)
        check_step(x, y, lr, mu)  # hebbref.validation
        if not (np.isfinite(lr) and lr > 0):
            raise ConfigError(f"lr must be a positive number, got {lr}")
        if not (np.isfinite(weight_decay) and weight_decay >= 0):
            raise ConfigError(f"weight_decay must be 0 or more, got {weight_decay}")
        o = self.forward(x, train=True)
        y = self._check_y(y, o.shape[0])
        value, e = loss_fn(o, y, mu=mu)
        self.backward(e.astype(self.dtype, copy=False))
        self.update(lr, weight_decay)
        return value

    def loss(self, x, y, loss="hinge", mu=1.0):
        """The batch-mean loss at evaluation (no dropout), without any update."""
        check_loss_args(x, y, mu)  # hebbref.validation
        o = self.forward(x, train=False)
        return get_loss(loss)(o, self._check_y(y, o.shape[0]), mu=mu)[0]

    def predict(self, x, batch_size=1000):
        """argmax of the outputs, (N,) int labels, computed in chunks of ``batch_size``."""
        check_predict(x, batch_size)  # hebbref.validation
        x = self._check_x(x)
        return np.concatenate([
            self.forward(x[i : i + batch_size]).argmax(axis=1) for i in range(0, len(x), batch_size)
        ]) if len(x) else np.zeros(0, dtype=np.int64)

    def accuracy(self, x, y, batch_size=1000):
        """Fraction of examples whose prediction equals the label."""
        check_y(y)  # hebbref.validation
        y = self._check_y(y, len(x))
        return float((self.predict(x, batch_size) == y).mean()) if len(y) else float("nan")

    # --- state, for checkpoints --------------------------------------------------------
    def state(self):
        """All that changes in training, as plain arrays: every W and R, the dropout generator and the rule's."""
        arrays = {}
        for p in self.parameters():
            arrays[f"{p.name}.W"], arrays[f"{p.name}.R"] = p.W.copy(), p.R.copy()
        arrays["dropout_rng"] = np.array(json.dumps(self.dropout_rng.bit_generator.state))
        rule_state = self.rule.state()
        if rule_state is not None:
            arrays["rule_rng"] = np.array(json.dumps(rule_state))
        return arrays

    def load_state(self, arrays):
        """Put back what ``state()`` returned (shapes and names must match)."""
        for p in self.parameters():
            for which in ("W", "R"):
                key = f"{p.name}.{which}"
                if key not in arrays:
                    raise InputError(f"state has no array {key!r}")
                value = np.asarray(arrays[key])
                if value.shape != getattr(p, which).shape:
                    raise InputError(f"{key}: expected shape {getattr(p, which).shape}, got {value.shape}")
                getattr(p, which)[...] = value
        if "dropout_rng" in arrays:
            self.dropout_rng.bit_generator.state = json.loads(str(arrays["dropout_rng"]))
        if "rule_rng" in arrays:
            self.rule.load_state(json.loads(str(arrays["rule_rng"])))

    def summary(self):
        """One line per layer: name, output shape (filled after a forward pass), weights."""
        lines = []
        for layer in self.layers:
            params = layer.parameters()
            size = sum(p.W.size for p in params)
            lines.append(f"{(layer.name or layer.kind):10s} {layer.describe():28s} {size:>10,d} weights")
        return "\n".join(lines)

    def __repr__(self):
        body = " ".join(layer.describe() for layer in self.layers)
        return f"Network({body!r}, rule={self.rule.name!r}, init={self.init!r}, dtype={np.dtype(self.dtype).name})"


def build_network(net, input_shape, n_classes, rule="urfb", init="random", untied=False, seed=0,
                  dtype="float64", dropout=True, backend=None, slope=DEFAULT_SLOPE,
                  untied_init="tied"):
    """Build a network from a preset name, a text description, or a list of layer objects.

    net:         "simple", "deep" (SPEC §6), a description such as
                 "conv5:32 ramp pool2 dense100 ramp out" (see ``hebbref.architectures``),
                 or a list of ``hebbref.modules`` layers ending in ``Dense(n_classes)``.
    input_shape: (C, H, W) of one example (or (D,) for a dense-only network).
    rule:        a name from ``hebbref.rules.RULES`` ("bp", "frfb", "urfb", "kp", "usf",
                 "frsf", "brsf", "dfa", "wm"; SPEC §1, §9), or a ``hebbref.rules.Rule``.
    init:        "random" (W and R independent Glorot uniform) or "symmetric" (R = W).
    untied:      turn every conv layer into a locally connected one (SPEC §5).
    untied_init: "tied" (one filter copied to every location, the paper's default) or "independent".
    dtype:       "float64" or "float32".
    dropout:     False leaves out every dropout layer.
    backend:     "numpy" (the reference) or a compiled backend; default $HEBBREF_BACKEND, else numba
                 (numpy where numba cannot load).
    """
    check_network_args(input_shape, n_classes, seed, slope, untied=untied, dropout=dropout)  # hebbref.validation
    if isinstance(net, (list, tuple)):
        layers, description = list(net), None
    else:
        layers = describe_layers(net, n_classes, untied=untied, dropout=dropout)
        description = net
    return Network(layers, input_shape, n_classes, rule=rule, init=init, seed=seed, dtype=dtype,
                   backend=backend, slope=slope, untied_init=untied_init, description=description)
