"""The layer objects a network is made of.

Each object keeps the books (its cache, its increment ``G``, its weights) and calls
the pure functions of ``hebbref.layers`` (or of a compiled backend) for the math:

    forward(x, train)  -> output                  (SPEC §2)
    backward(e)        -> error for the layer below (SPEC §3)

A weighted layer does only math: its increment ``G = Σ δ xᵀ`` and the error it sends
down through the feedback matrix ``B`` that the network's rule handed it
(``self.feedback``, set by ``Network.backward`` before each pass). Which B, and how W
and R change, is the rule's business (``hebbref.rules``).

The activation is its own layer (``Ramp``): its backward turns the incoming error
into ``δ = e ⊙ σ'(h)``, so a weighted layer's backward always receives δ. The output
layer is a ``Dense`` with no ``Ramp`` after it, i.e. ``σ' = 1``.
"""
import math

import numpy as np

from .errors import ConfigError
from .init import glorot_uniform

UNTIED_INITS = ("tied", "independent")


class Deferred:
    """A layer attribute that may be set to a function of no arguments, called when the attribute is first read.

    A compiled backend that runs several layers as one step may keep an array they
    hold (a ramp's h, a weighted layer's δ) in a layout of its own; it hands back a
    function that forms the array, which runs only if something reads it (a probe, a
    direct-feedback rule). Reading gives the array; setting an array stores it as is.
    """

    def __set_name__(self, owner, name):
        self.slot = "_" + name

    def __get__(self, layer, owner=None):
        if layer is None:
            return self
        value = layer.__dict__.get(self.slot)
        if callable(value):
            value = layer.__dict__[self.slot] = value()
        return value

    def __set__(self, layer, value):
        layer.__dict__[self.slot] = value


class Layer:
    """A layer without weights. ``build`` returns the output shape (without the batch axis)."""

    kind = "layer"
    name = None

    def build(self, input_shape, ctx):
        return input_shape

    def forward(self, x, train=False):
        raise NotImplementedError

    def backward(self, e):
        raise NotImplementedError

    def parameters(self):
        return []

    def describe(self):
        return self.kind


class WeightedLayer(Layer):
    """A layer with a forward matrix ``W`` and a feedback matrix ``R`` of the same shape.

    After ``backward``: ``self.delta`` is the δ it received and ``self.G`` the increment
    ``Σ δ xᵀ``. The rule then updates W and R (``hebbref.rules``). ``self.feedback`` is
    the matrix B the error goes down through, set by the network's rule before each
    backward pass; ``self.fans`` the (fan_in, fan_out) of the Glorot draw and
    ``self.output_shape`` the shape of the field h (without the batch axis).
    """

    sends_error = True  # the network turns this off for the first layer (nothing below it)
    delta = Deferred()

    def _set_weights(self, W, R, ctx):
        self.W, self.R, self.G, self.delta, self.feedback = W, R, None, None, None

    def _draw_pair(self, shape, fan_in, fan_out, ctx, copies=None):
        """Draw W (and R independently, or R = W for the symmetric init).

        ``copies``: a shape to tile one draw over (the untied layer's default init).
        """
        self.fans = (fan_in, fan_out)
        W = glorot_uniform(ctx.weight_rng, shape, fan_in, fan_out, ctx.dtype)
        R = glorot_uniform(ctx.feedback_rng, shape, fan_in, fan_out, ctx.dtype)
        if ctx.init == "symmetric":
            R = W.copy()
        if copies is not None:
            # copy(): a broadcast view is read-only, and ascontiguousarray returns it
            # uncopied when it is already contiguous (a 1×1 untied layer)
            W = np.broadcast_to(W, copies + shape).copy()
            R = np.broadcast_to(R, copies + shape).copy()
        return W, R

    # the three per-type functions: subclasses bind them
    def _forward(self, x, W):
        raise NotImplementedError

    def _input_error(self, delta, cache, B):
        raise NotImplementedError

    def _weight_increment(self, delta, cache):
        raise NotImplementedError

    def forward(self, x, train=False):
        h, self.cache = self._forward(x, self.W)
        return h

    def learn(self, delta):
        """Keep δ and the increment G = Σ δ xᵀ (the Hebbian product of the two ends)."""
        self.delta = delta
        self.G = self._weight_increment(delta, self.cache)  # G = Σ δ xᵀ

    def backward(self, delta):
        self.learn(delta)
        if not self.sends_error:
            return None
        return self._input_error(delta, self.cache, self.feedback)  # e_below = Bᵀ δ, before the update

    def send_down(self, B):
        """The error this layer would send down through ``B`` for the last δ (for probes)."""
        return self._input_error(self.delta, self.cache, B)

    def parameters(self):
        return [self]


class Dense(WeightedLayer):
    """h = W x. W, R: (units, D_in)."""

    kind = "dense"

    def __init__(self, units):
        self.units = int(units)

    def build(self, input_shape, ctx):
        if len(input_shape) != 1:
            raise ConfigError(f"dense layer needs a flat input, got shape {input_shape}")
        (d_in,) = input_shape
        self.ops = ctx.backend
        self._set_weights(*self._draw_pair((self.units, d_in), d_in, self.units, ctx), ctx)
        self.output_shape = (self.units,)
        return self.output_shape

    def _forward(self, x, W):
        return self.ops.dense_forward(x, W)

    def _input_error(self, delta, cache, B):
        return self.ops.dense_input_error(delta, cache, B)

    def _weight_increment(self, delta, cache):
        return self.ops.dense_weight_increment(delta, cache)

    # ``drop dense``: the Dropout whose output the last forward pass read, taken with it as one step
    # each way (``forward_of_dropped``), or None
    dropout_below = None

    def forward(self, x, train=False):
        self.dropout_below = self.dropped_cache = None
        return super().forward(x, train)

    def forward_of_dropped(self, x, dropout):
        """self.forward(x), x being ``dropout``'s output in training (flattened or not): h = W x, given its mask.

        The backend's ``dropout_dense_forward``, which may skip the inputs dropout dropped;
        ``backward_through_dropout`` takes the backward pass of both layers.
        """
        mask = dropout.mask.reshape(x.shape)
        h, self.cache, self.dropped_cache = self.ops.dropout_dense_forward(x, mask, self.W, dropout.p)
        self.dropout_below = dropout
        return h

    def backward_through_dropout(self, delta):
        """dropout.backward(self.backward(δ)) in one step: e_below ⊙ m, shaped as dropout's input (None if nothing below).

        The backend's ``dense_dropout_backward``: G = Σ δ xᵀ, and the error through the
        rule's B and dropout's mask m.
        """
        self.delta = delta
        mask = self.dropout_below.mask
        B = self.feedback if self.sends_error else None
        e_below, self.G = self.ops.dense_dropout_backward(delta, self.dropped_cache, B, mask.reshape(len(delta), -1))
        return None if e_below is None else e_below.reshape(mask.shape)

    def describe(self):
        return f"dense{self.units}"


class Conv2D(WeightedLayer):
    """Tied convolution, k×k, stride 1, "same" padding. W, R: (C_out, C_in, k, k)."""

    kind = "conv"

    def __init__(self, kernel, channels):
        self.kernel, self.channels = int(kernel), int(channels)

    def build(self, input_shape, ctx):
        if len(input_shape) != 3:
            raise ConfigError(f"{self.kind} layer needs a (C, H, W) input, got shape {input_shape}")
        c_in, H, W = input_shape
        k = self.kernel
        self.ops = ctx.backend
        shape = (self.channels, c_in, k, k)
        self._set_weights(*self._draw_pair(shape, k * k * c_in, k * k * self.channels, ctx), ctx)
        self.output_shape = (self.channels, H, W)
        return self.output_shape

    def _forward(self, x, W):
        return self.ops.conv_forward(x, W)

    def _input_error(self, delta, cache, B):
        return self.ops.conv_input_error(delta, cache, B)

    def _weight_increment(self, delta, cache):
        return self.ops.conv_weight_increment(delta, cache)

    def backward(self, delta):
        """As every weighted layer's, with the input error and G asked for together (one pass over δ where a backend can)."""
        if not self.sends_error:
            return super().backward(delta)
        self.delta = delta
        e_below, self.G = self.ops.conv_backward(delta, self.cache, self.feedback)  # Bᵀ δ, Σ δ xᵀ
        return e_below

    # the block ``conv ramp pool`` (or ``lc ramp pool``), taken as one step each way: the backend's
    # two functions for it, and whether the last forward pass was ``forward_with_ramp_and_pool``
    block_forward, block_backward = "conv_ramp_maxpool_forward", "maxpool_ramp_conv_backward"
    in_block = False

    def forward(self, x, train=False):
        self.in_block, self.block_cache = False, None
        return super().forward(x, train)

    def forward_with_ramp_and_pool(self, x, ramp, pool, train=False):
        """pool.forward(ramp.forward(self.forward(x))) as one step: the pool's output.

        The backend's ``block_forward``; ``backward_from_pool`` takes the block's
        backward pass. ``ramp.h`` may be formed only when read.
        """
        y, self.cache, ramp.h, self.block_cache = getattr(self.ops, self.block_forward)(
            x, self.W, pool.window, pool.stride, ramp.slope)
        pool.cache = None  # the pool's own cache is the block's now
        self.in_block = True
        return y

    def backward_from_pool(self, dy, ramp):
        """The block's backward pass from the error dy at the pool's output: self.backward(δ), δ below ``ramp``.

        The backend's ``block_backward`` gives δ (which may be formed only when read)
        and G; the input error below, when there is a layer below to send it to, is
        this layer's own of δ.
        """
        self.delta, self.G = getattr(self.ops, self.block_backward)(dy, self.block_cache, ramp.slope)
        if not self.sends_error:
            return None
        return self._input_error(self.delta, self.cache, self.feedback)

    def describe(self):
        return f"conv{self.kernel}:{self.channels}"


class LocallyConnected2D(Conv2D):
    """Untied twin of ``Conv2D``: one filter per output location. W, R: (H, W, C_out, C_in, k, k).

    Initialisation (``untied_init``): "tied" (the paper's default) draws one Glorot
    filter bank and copies it to every location, for W and (independently) for R;
    "independent" draws every location separately.
    """

    kind = "lc"
    backward = WeightedLayer.backward  # the untied functions, one after the other (no conv_backward)
    block_forward = "locally_connected_ramp_maxpool_forward"  # ``lc ramp pool``, as Conv2D's block
    block_backward = "maxpool_ramp_locally_connected_backward"

    def build(self, input_shape, ctx):
        if len(input_shape) != 3:
            raise ConfigError(f"{self.kind} layer needs a (C, H, W) input, got shape {input_shape}")
        c_in, H, W = input_shape
        k = self.kernel
        self.ops = ctx.backend
        fan_in, fan_out = k * k * c_in, k * k * self.channels
        filter_shape = (self.channels, c_in, k, k)
        if ctx.untied_init == "tied":
            pair = self._draw_pair(filter_shape, fan_in, fan_out, ctx, copies=(H, W))
        else:
            pair = self._draw_pair((H, W) + filter_shape, fan_in, fan_out, ctx)
        self._set_weights(*pair, ctx)
        self.output_shape = (self.channels, H, W)
        return self.output_shape

    def _forward(self, x, W):
        return self.ops.locally_connected_forward(x, W)

    def _input_error(self, delta, cache, B):
        return self.ops.locally_connected_input_error(delta, cache, B)

    def _weight_increment(self, delta, cache):
        return self.ops.locally_connected_weight_increment(delta, cache)

    def describe(self):
        return f"lc{self.kernel}:{self.channels}"


class Ramp(Layer):
    """x = σ(h) = clip(s·h, -1, 1); backward: δ = e ⊙ σ'(h)."""

    kind = "ramp"
    h = Deferred()  # the input of the last forward pass

    def __init__(self, slope=None):
        self.slope = slope

    def build(self, input_shape, ctx):
        if self.slope is None:
            self.slope = ctx.slope
        self.ops = ctx.backend
        return input_shape

    def forward(self, h, train=False):
        self.h = h
        return self.ops.ramp(h, self.slope)  # x = σ(h)

    def backward(self, e):
        return self.ops.ramp_backward(e, self.h, self.slope)  # δ = e ⊙ σ'(h)

    def forward_plus(self, h, a):
        """σ(h) + a, in one pass (a sum block's output)."""
        self.h = h
        return self.ops.ramp_plus(h, a, self.slope)

    def backward_of_sum(self, e1, e2):
        """δ = (e1 + e2) ⊙ σ'(h), in one pass: two errors that reach this ramp's units add first."""
        return self.ops.ramp_backward_of_sum(e1, e2, self.h, self.slope)


class MaxPool(Layer):
    """Max pooling, k×k window, stride t, "same" padding."""

    kind = "pool"

    def __init__(self, window, stride=None):
        self.window = int(window)
        self.stride = int(stride if stride is not None else window)

    def build(self, input_shape, ctx):
        if len(input_shape) != 3:
            raise ConfigError(f"pooling needs a (C, H, W) input, got shape {input_shape}")
        C, H, W = input_shape
        self.ops = ctx.backend
        return (C, math.ceil(H / self.stride), math.ceil(W / self.stride))

    def forward(self, x, train=False):
        y, self.cache = self.ops.maxpool_forward(x, self.window, self.stride)
        return y

    def backward(self, e):
        return self.ops.maxpool_backward(e, self.cache)

    def forward_of_ramp(self, h, ramp, train=False):
        """self.forward(ramp.forward(h)), in one pass: the pool of σ(h), σ(h) not kept."""
        ramp.h = h
        y, self.cache = self.ops.ramp_maxpool_forward(h, self.window, self.stride, ramp.slope)
        return y

    def backward_through_ramp(self, e, ramp):
        """δ below ``ramp``, the layer under this pool: ramp.backward(self.backward(e)), in one pass."""
        return self.ops.maxpool_ramp_backward(e, self.cache, ramp.h, ramp.slope)

    def describe(self):
        return f"pool{self.window}s{self.stride}"


class Dropout(Layer):
    """Drops each unit with probability p in training (kept ones scaled by 1/(1-p))."""

    kind = "drop"

    def __init__(self, p):
        self.p = float(p)
        if not 0.0 <= self.p < 1.0:
            raise ConfigError(f"dropout probability must be in [0, 1), got {p}")

    def build(self, input_shape, ctx):
        self.rng, self.dtype, self.ops = ctx.dropout_rng, ctx.dtype, ctx.backend
        return input_shape

    def forward(self, x, train=False):
        if not train or self.p == 0.0:
            self.mask = None
            return x
        out, self.mask = self.ops.dropout_draw(self.rng, x, self.p)  # the reference: layers.dropout_draw
        return out

    def backward(self, e):
        return e if self.mask is None else self.ops.dropout_backward(e, self.mask)  # the reference: e ⊙ m

    def describe(self):
        return f"drop{self.p:g}"


class Flatten(Layer):
    """(N, C, H, W) -> (N, C·H·W)."""

    kind = "flatten"

    def build(self, input_shape, ctx):
        self.input_shape = tuple(input_shape)
        return (math.prod(input_shape),)

    def forward(self, x, train=False):
        return x.reshape(x.shape[0], -1)

    def backward(self, e):
        return e.reshape((e.shape[0],) + self.input_shape)


class SumBlock(Layer):
    """The paper's "residual-like" block (SPEC §2): a = σ(conv_a(x)), b = σ(conv_b(a)), out = a + b.

    Backward: the error at the output reaches ``a`` twice, directly and through b;
    the two add before ``a``'s σ'.
    """

    kind = "sum"

    def __init__(self, conv_a, conv_b):
        self.conv_a, self.conv_b = conv_a, conv_b
        self.ramp_a, self.ramp_b = Ramp(), Ramp()

    def build(self, input_shape, ctx):
        self.ops = ctx.backend
        shape_a = self.ramp_a.build(self.conv_a.build(input_shape, ctx), ctx)
        shape_b = self.ramp_b.build(self.conv_b.build(shape_a, ctx), ctx)
        if shape_a != shape_b:
            raise ConfigError(
                f"a sum block adds a and b, so both must have one shape; got {shape_a} and {shape_b}"
            )
        return shape_b

    @property
    def sends_error(self):
        return self.conv_a.sends_error

    @sends_error.setter
    def sends_error(self, value):
        self.conv_a.sends_error = value

    def _a_and_h_b(self, x, train):
        """a = σ(conv_a(x)) and the second field h_b = conv_b(a), the steps both forward passes share."""
        a = self.ramp_a.forward(self.conv_a.forward(x, train))
        return a, self.conv_b.forward(a, train)

    def forward(self, x, train=False):
        a, h_b = self._a_and_h_b(x, train)
        return self.ramp_b.forward_plus(h_b, a)  # b + a, b = σ(h_b)

    def forward_with_pool(self, x, pool, train=False):
        """pool.forward(self.forward(x)), the block's output b + a formed as the pool reads it and not kept.

        The backend's ``ramp_plus_maxpool_forward``; the pool's cache is that of its own
        forward pass, so the backward pass is the two layers' own.
        """
        a, h_b = self._a_and_h_b(x, train)
        self.ramp_b.h = h_b  # as forward_plus keeps it, for σ'(h_b) in the backward pass
        y, pool.cache = self.ops.ramp_plus_maxpool_forward(h_b, a, pool.window, pool.stride, self.ramp_b.slope)
        return y

    def backward(self, e):
        delta_b = self.ramp_b.backward(e)  # δ_b = e ⊙ σ'(h_b)
        e_a = self.conv_b.backward(delta_b)  # the two errors at a, e_a and e, add before σ'(h_a):
        delta_a = self.ramp_a.backward_of_sum(e_a, e)  # δ_a = (e_a + e) ⊙ σ'(h_a)
        return self.conv_a.backward(delta_a)

    def backward_from_pool(self, e, pool):
        """self.backward(pool.backward(e)), the pool's error never written out: ``e`` is the error at the pool's output.

        The pool's scatter is taken twice, plane by plane, where each ramp's σ' is applied
        (the backend's ``maxpool_ramp_backward`` and ``maxpool_ramp_backward_of_sum``).
        """
        ramp_a, ramp_b = self.ramp_a, self.ramp_b
        delta_b = self.ops.maxpool_ramp_backward(e, pool.cache, ramp_b.h, ramp_b.slope)  # δ_b = e_pool ⊙ σ'(h_b)
        e_a = self.conv_b.backward(delta_b)
        # δ_a = (e_a + e_pool) ⊙ σ'(h_a), e_pool the pool's error at the block's output
        delta_a = self.ops.maxpool_ramp_backward_of_sum(e_a, e, pool.cache, ramp_a.h, ramp_a.slope)
        return self.conv_a.backward(delta_a)

    def parameters(self):
        return [self.conv_a, self.conv_b]

    def activations(self):
        """(weighted layer, its Ramp) for both convolutions."""
        return [(self.conv_a, self.ramp_a), (self.conv_b, self.ramp_b)]

    def describe(self):
        return f"sum[{self.conv_a.describe()},{self.conv_b.describe()}]"
