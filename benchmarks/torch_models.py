"""The benchmark's PyTorch twins of hebbref's ``simple`` and ``deep`` networks (back-propagation).

Same layers, same "same" padding (TensorFlow's: an even kernel or an uneven pooling
pads 0 before and 1 after), no biases, the ramp ``clamp(s·h, -1, 1)``, dropout, the
Hebbian hinge loss, plain SGD. PyTorch is a benchmark-only extra (``pip install
torch==2.13.0``), never a dependency of hebbref.
"""
import math

import torch
import torch.nn.functional as F

SLOPE = 0.5


def ramp(h):
    """σ(h) = clip(s·h, -1, 1)."""
    return torch.clamp(SLOPE * h, -1.0, 1.0)


def conv_same(x, W):
    """Stride-1 "same" correlation, padding (k-1)//2 before and the rest after."""
    k = W.shape[-1]
    before = (k - 1) // 2
    return F.conv2d(F.pad(x, (before, k - 1 - before, before, k - 1 - before)), W)


def locally_connected_same(x, W):
    """The usual PyTorch locally connected layer: unfold + einsum. W (H·W, C_out, C_in·k·k)."""
    N, C, H, Wd = x.shape
    k = math.isqrt(W.shape[-1] // C)
    before = (k - 1) // 2
    xp = F.pad(x, (before, k - 1 - before, before, k - 1 - before))
    cols = F.unfold(xp, k)  # (N, C·k·k, H·W)
    h = torch.einsum("nkl,lok->nol", cols, W)  # (N, C_out, H·W)
    return h.reshape(N, -1, H, Wd)


def maxpool_same(x, k, t):
    """Max pooling with TensorFlow's "same" padding (padded cells never win)."""
    pads = []
    for n in (x.shape[3], x.shape[2]):
        out = math.ceil(n / t)
        total = max((out - 1) * t + k - n, 0)
        pads += [total // 2, total - total // 2]
    return F.max_pool2d(F.pad(x, pads, value=-math.inf), k, t)


def hinge(o, y, mu=1.0):
    """Mean over the batch of max(0, 1 - o_y) + μ/(C-1) Σ_{c≠y} max(0, 1 + o_c)."""
    C = o.shape[1]
    true = F.one_hot(y, C).bool()
    on = torch.clamp(1 - o[true], min=0)
    off = torch.clamp(1 + o, min=0).masked_fill(true, 0).sum(1)
    return (on + mu / (C - 1) * off).mean()


def glorot(shape, fan_in, fan_out, generator):
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return ((torch.rand(shape, generator=generator) * 2 - 1) * limit).requires_grad_()


def _moved(value, device):
    """A parameter (or list of them) as a leaf tensor on ``device`` that requires its gradient."""
    if isinstance(value, list):
        return [_moved(v, device) for v in value]
    return value.detach().to(device).requires_grad_() if isinstance(value, torch.Tensor) else value


class _Twin:
    def to(self, device):
        """Move every parameter to ``device`` (drawn on the CPU, so the same on every device); returns self."""
        for name, value in vars(self).items():
            setattr(self, name, _moved(value, device))
        return self


class Simple(_Twin):
    """conv5:32 ramp pool3s2 drop0.8 dense500 ramp drop0.3 out; ``untied`` makes the conv locally connected."""

    def __init__(self, input_shape, n_classes, untied=False, seed=0):
        g = torch.Generator().manual_seed(seed)
        C, H, W = input_shape
        self.untied = untied
        if untied:
            self.W1 = glorot((H * W, 32, C * 25), C * 25, 32 * 25, g)
        else:
            self.W1 = glorot((32, C, 5, 5), C * 25, 32 * 25, g)
        flat = 32 * math.ceil(H / 2) * math.ceil(W / 2)
        self.W2 = glorot((500, flat), flat, 500, g)
        self.W3 = glorot((n_classes, 500), 500, n_classes, g)

    def parameters(self):
        return [self.W1, self.W2, self.W3]

    def forward(self, x):
        h = locally_connected_same(x, self.W1) if self.untied else conv_same(x, self.W1)
        x = F.dropout(maxpool_same(ramp(h), 3, 2), 0.8, True)
        x = F.dropout(ramp(x.flatten(1) @ self.W2.T), 0.3, True)
        return x @ self.W3.T


class Deep(_Twin):
    """sum[conv3:16,conv3:16] pool3s3 drop0.5 sum[conv3:64,conv3:64] pool2s2
    sum[conv2:64,conv2:64] pool2s2 drop0.5 dense500 ramp out."""

    def __init__(self, input_shape, n_classes, seed=0):
        g = torch.Generator().manual_seed(seed)
        C, H, W = input_shape
        self.convs = []
        for c_in, c_out, k in [(C, 16, 3), (16, 16, 3), (16, 64, 3), (64, 64, 3), (64, 64, 2), (64, 64, 2)]:
            self.convs.append(glorot((c_out, c_in, k, k), c_in * k * k, c_out * k * k, g))
        size = math.ceil(math.ceil(math.ceil(H / 3) / 2) / 2)
        flat = 64 * size * size
        self.W1 = glorot((500, flat), flat, 500, g)
        self.W2 = glorot((n_classes, 500), 500, n_classes, g)

    def parameters(self):
        return self.convs + [self.W1, self.W2]

    def forward(self, x):
        def block(x, Wa, Wb):
            a = ramp(conv_same(x, Wa))
            return a + ramp(conv_same(a, Wb))

        c = self.convs
        x = F.dropout(maxpool_same(block(x, c[0], c[1]), 3, 3), 0.5, True)
        x = maxpool_same(block(x, c[2], c[3]), 2, 2)
        x = F.dropout(maxpool_same(block(x, c[4], c[5]), 2, 2), 0.5, True)
        x = ramp(x.flatten(1) @ self.W1.T)
        return x @ self.W2.T


def train_step(model, x, y, lr=0.1):
    """One SGD step (forward, backward, update) of back-propagation; returns the loss before it."""
    loss = hinge(model.forward(x), y)
    grads = torch.autograd.grad(loss, model.parameters())
    with torch.no_grad():
        for p, g in zip(model.parameters(), grads):
            p -= lr * g
    return loss.item()
