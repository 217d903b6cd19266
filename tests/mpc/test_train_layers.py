"""Encrypted training's layers (mpc/train_layers.py, mpc/train_conv.py) and train_step.

What a user relies on: each layer's forward and backward on shares give what torch's
autograd gives on the plaintext (2 and 3 parties), max-pooling's gradient goes to the
first maximum of a window as in torch (ties, negatives, padding, overlapping windows);
the dealer's conv2d gradient kinds are exact on Z_2^64; one SGD step of a small CNN and
of an MLP (MSE and cross-entropy) lands where torch's SGD lands; unsupported options are
refused with a clear error.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ppdl_nb.mpc import simulate as sim
from ppdl_nb.mpc.beaver import beaver_cross_terms, ring_conv2d_wgrad, ring_conv2d_xgrad
from ppdl_nb.mpc.dealer import simulate_dealer
from ppdl_nb.mpc.limbs import ring_method
from ppdl_nb.mpc.sharing import reconstruct
from ppdl_nb.mpc.train_layers import LAYERS
from ppdl_nb.mpc.train_step import TrainConfig, train_step
from ppdl_nb.tensors.private_training import layer_specs

F_BITS = 20
PARTIES = [2, 3]


def run_layer(spec: dict, x: torch.Tensor, params: list[torch.Tensor], g: torch.Tensor,
              n: int) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """The layer's forward output, parameter gradients and input gradient, on shares."""
    lay = LAYERS[spec["layer"]]
    xs = sim.share_float(x, n, F_BITS)
    ps = [sim.share_float(p, n, F_BITS) for p in params]
    fwd = sim.run_parties([lay.forward(i, spec, xs[i], [p[i] for p in ps], F_BITS)
                           for i in range(n)])
    gs = sim.share_float(g, n, F_BITS)
    bwd = sim.run_parties([lay.backward(i, spec, gs[i], fwd[i][1], [p[i] for p in ps],
                                        F_BITS, True) for i in range(n)])
    y = sim.reveal([o[0] for o in fwd], F_BITS)
    grads = [sim.reveal([b[0][k] for b in bwd], F_BITS) for k in range(len(params))]
    return y, grads, sim.reveal([b[1] for b in bwd], F_BITS)


def torch_layer(module: nn.Module, x: torch.Tensor, g: torch.Tensor):
    x = x.clone().requires_grad_()
    y = module(x)
    y.backward(g)
    return y.detach(), [p.grad for p in module.parameters()], x.grad


def close(a: torch.Tensor, b: torch.Tensor, tol: float) -> None:
    assert a.shape == b.shape
    assert (a - b).abs().max().item() < tol, (a - b).abs().max().item()


# ---- the dealer's conv2d gradient kinds: exact on the ring ---------------------------------
def ring_data(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-(2**63), 2**63 - 1, shape, generator=g, dtype=torch.int64)


def wgrad_reference(x, g, k, s, p, d):
    """dw[o, c, i, j] = sum g[n, o, a, b] x_pad[n, c, a s + i d, b s + j d], int64 (wraps)."""
    xp = F.pad(x, (p[1], p[1], p[0], p[0]))
    oh, ow = g.shape[2:]
    out = torch.zeros(g.shape[1], x.shape[1], *k, dtype=torch.int64)
    for i in range(k[0]):
        for j in range(k[1]):
            win = xp[:, :, i * d[0]:i * d[0] + s[0] * (oh - 1) + 1:s[0],
                     j * d[1]:j * d[1] + s[1] * (ow - 1) + 1:s[1]]
            out[:, :, i, j] = (g.unsqueeze(2) * win.unsqueeze(1)).sum((0, 3, 4))
    return out


def xgrad_reference(g, w, size, s, p, d):
    """dx_pad[n, c, a s + i d, b s + j d] += g[n, o, a, b] w[o, c, i, j], int64 (wraps)."""
    oh, ow = g.shape[2:]
    out = torch.zeros(g.shape[0], w.shape[1], size[0] + 2 * p[0], size[1] + 2 * p[1],
                      dtype=torch.int64)
    for i in range(w.shape[2]):
        for j in range(w.shape[3]):
            part = (g.unsqueeze(2) * w[:, :, i, j].view(1, *w.shape[:2], 1, 1)).sum(1)
            out[:, :, i * d[0]:i * d[0] + s[0] * (oh - 1) + 1:s[0],
                j * d[1]:j * d[1] + s[1] * (ow - 1) + 1:s[1]] += part
    return out[:, :, p[0]:p[0] + size[0], p[1]:p[1] + size[1]]


CONV_CASES = [  # x shape, out channels, kernel, stride, padding, dilation
    ((2, 3, 7, 6), 4, (3, 3), (1, 1), (0, 0), (1, 1)),
    ((2, 2, 9, 8), 3, (3, 2), (2, 3), (1, 0), (2, 1)),
    ((1, 2, 6, 6), 2, (5, 5), (1, 1), (2, 2), (1, 1)),
]


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("method", ["int64", "limbs"])
def test_ring_conv2d_gradients_are_exact(case, method):
    xs, cout, k, s, p, d = case
    x, w = ring_data(xs, 1), ring_data((cout, xs[1], *k), 2)
    out = F.conv2d(torch.empty(xs, device="meta"), torch.empty(w.shape, device="meta"),
                   stride=s, padding=p, dilation=d).shape
    g = ring_data(tuple(out), 3)
    kw = {"stride": s, "padding": p, "dilation": d}
    with ring_method(method):
        assert torch.equal(ring_conv2d_wgrad(x, g, kernel_size=k, **kw),
                           wgrad_reference(x, g, k, s, p, d))
        assert torch.equal(ring_conv2d_xgrad(g, w, input_size=xs[2:], **kw),
                           xgrad_reference(g, w, xs[2:], s, p, d))


@pytest.mark.parametrize("n", PARTIES)
def test_dealer_conv2d_gradient_triples(n):
    xs, cout, k, s, p, d = CONV_CASES[1]
    kw = {"stride": list(s), "padding": list(p), "dilation": list(d)}
    gs = (2, cout, 4, 3)
    t = simulate_dealer("conv2d_wgrad", n, x_shape=xs, y_shape=gs, kernel_size=list(k), **kw)
    a, b, c = (reconstruct([q[j] for q in t]) for j in range(3))
    assert torch.equal(c, wgrad_reference(a, b, k, s, p, d))
    t = simulate_dealer("conv2d_xgrad", n, x_shape=gs, y_shape=(cout, xs[1], *k),
                        input_size=xs[2:], **kw)
    a, b, c = (reconstruct([q[j] for q in t]) for j in range(3))
    assert c.shape == xs and torch.equal(c, xgrad_reference(a, b, xs[2:], s, p, d))
    # the Beaver finish with the kinds' names: x op y = c + cross terms
    x, y = ring_data(gs, 4), ring_data((cout, xs[1], *k), 5)
    eps, delta = x - a, y - b
    z = sum(beaver_cross_terms("conv2d_xgrad", i, eps, delta, t[i][0], t[i][1],
                               input_size=xs[2:], **kw) + t[i][2] for i in range(n))
    assert torch.equal(z, xgrad_reference(x, y, xs[2:], s, p, d))
    with pytest.raises(ValueError, match="output gradient has shape"):
        simulate_dealer("conv2d_wgrad", n, x_shape=xs, y_shape=(2, cout, 5, 3),
                        kernel_size=list(k), **kw)


# ---- each layer against torch's autograd ---------------------------------------------------
def data(shape, seed, scale=1.0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64) * scale


@pytest.mark.parametrize("n", PARTIES)
@pytest.mark.parametrize("opts", [{}, {"stride": 2, "padding": 1}, {"padding": "same"},
                                  {"padding": 2, "dilation": 2, "bias": False}])
def test_conv2d_layer_matches_torch(n, opts):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, **opts).double()
    x = data((2, 3, 7, 7), 1)
    g = data(conv(x).shape, 2)
    spec = layer_specs([conv])[0]
    y, grads, dx = run_layer(spec, x, [p.detach() for p in conv.parameters()], g, n)
    ty, tgrads, tdx = torch_layer(conv, x, g)
    close(y, ty, 1e-4)
    for a, b in zip(grads, tgrads, strict=True):
        close(a, b, 1e-4)
    close(dx, tdx, 1e-4)


MAXPOOL_CASES = [{"kernel_size": 2}, {"kernel_size": 3, "stride": 2, "padding": 1},
                 {"kernel_size": (2, 3), "stride": 1}]


@pytest.mark.parametrize("n", PARTIES)
@pytest.mark.parametrize("kw", MAXPOOL_CASES)
def test_max_pool2d_layer_matches_torch_with_ties(n, kw):
    # small integers, mostly negative: many ties inside and across windows
    x = torch.randint(-4, 2, (2, 2, 7, 7), generator=torch.Generator().manual_seed(3))
    x = x.double() * 0.5
    x[0, 0, :2, :2] = -1.5  # a window of equal values: the first gets the gradient
    pool = nn.MaxPool2d(**kw)
    g = data(pool(x).shape, 4)
    y, _, dx = run_layer(layer_specs([pool])[0], x, [], g, n)
    ty, _, tdx = torch_layer(pool, x, g)
    assert torch.equal(y, ty)
    close(dx, tdx, 1e-5)


@pytest.mark.parametrize("n", PARTIES)
def test_max_pool2d_costs(n):
    """The one-hot rides in the max's comparisons: the max's rounds, 2 products more per
    2x2 window (16 bytes to each peer); the backward is 1 round of g and 3 one-hot columns."""
    x = sim.share_float(data((2, 3, 8, 8), 12), n, F_BITS)
    outputs = 2 * 3 * 4 * 4
    plain, fwd, bwd = sim.Traffic(), sim.Traffic(), sim.Traffic()
    sim.max_pool2d(x, 2, traffic=plain)
    spec, lay = {"kernel_size": 2}, LAYERS["MaxPool2d"]
    out = sim.run_parties([lay.forward(i, spec, x[i], [], F_BITS) for i in range(n)], fwd)
    g = sim.share_float(data((2, 3, 4, 4), 13), n, F_BITS)
    sim.run_parties([lay.backward(i, spec, g[i], out[i][1], [], F_BITS, True)
                     for i in range(n)], bwd)
    assert fwd.rounds == plain.rounds == 8
    assert fwd.bytes_per_party - plain.bytes_per_party == (n - 1) * 16 * outputs
    assert bwd.rounds == 1 and bwd.bytes_per_party == (n - 1) * 8 * 4 * outputs


@pytest.mark.parametrize("n", PARTIES)
@pytest.mark.parametrize("kw", [{"kernel_size": 2},
                                {"kernel_size": 3, "stride": 2, "padding": 1},
                                {"kernel_size": 3, "stride": 2, "padding": 1,
                                 "count_include_pad": False},
                                {"kernel_size": 2, "stride": 1, "divisor_override": 3}])
def test_avg_pool2d_layer_matches_torch(n, kw):
    pool = nn.AvgPool2d(**kw)
    x = data((2, 2, 7, 7), 5)
    g = data(pool(x).shape, 6)
    y, _, dx = run_layer(layer_specs([pool])[0], x, [], g, n)
    ty, _, tdx = torch_layer(pool, x, g)
    close(y, ty, 1e-5)
    close(dx, tdx, 1e-5)


@pytest.mark.parametrize("n", PARTIES)
@pytest.mark.parametrize("make", [lambda: nn.Linear(6, 4), lambda: nn.Linear(6, 4, bias=False),
                                  nn.ReLU, nn.Flatten],
                         ids=["linear", "linear-nobias", "relu", "flatten"])
def test_linear_relu_flatten_layers_match_torch(n, make):
    torch.manual_seed(5)
    module = make().double()
    x = data((3, 6) if isinstance(module, nn.Linear) else (3, 2, 3), 7)
    x.view(-1)[:2] = 0.0  # ReLU's gradient at 0 is 0, as in torch
    g = data(module(x).shape, 8)
    ps = [p.detach() for p in module.parameters()]
    y, grads, dx = run_layer(layer_specs([module])[0], x, ps, g, n)
    ty, tgrads, tdx = torch_layer(module, x, g)
    close(y, ty, 1e-5)
    for a, b in zip(grads, tgrads, strict=True):
        close(a, b, 1e-4)
    close(dx, tdx, 1e-4)


def test_unsupported_options_are_refused():
    x = sim.share_float(torch.zeros(1, 2, 6, 6), 2, F_BITS)[0]
    w = torch.zeros(2, 1, 3, 3, dtype=torch.int64)
    cases = [({"layer": "Conv2d", "groups": 2}, [w], "groups=2"),
             ({"layer": "Conv2d", "padding_mode": "reflect"}, [w], "padding_mode"),
             ({"layer": "Conv2d", "padding": "same"}, [w[..., :2, :2]], "padding='same'"),
             ({"layer": "MaxPool2d", "kernel_size": 2, "ceil_mode": True}, [], "ceil_mode"),
             ({"layer": "MaxPool2d", "kernel_size": 2, "dilation": 2}, [], "dilation"),
             ({"layer": "AvgPool2d", "kernel_size": 2, "padding": 2}, [], "half the kernel")]
    for spec, ws, what in cases:
        with pytest.raises(ValueError, match=what):
            next(LAYERS[spec["layer"]].forward(0, spec, x, ws, F_BITS))


# ---- whole steps: new weights after one SGD step, against torch's ---------------------------
def torch_step(net: nn.Module, x, y, cfg: TrainConfig) -> list[torch.Tensor]:
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay)
    out = net(x)
    loss = (F.mse_loss(out, y) if cfg.loss == "mse"
            else F.cross_entropy(out, y.argmax(1)))
    opt.zero_grad()
    loss.backward()
    opt.step()
    return [p.detach().clone() for p in net.parameters()]


def shared_step(net: nn.Module, x, y, cfg: TrainConfig, n: int,
                traffic: sim.Traffic | None = None) -> list[torch.Tensor]:
    f = cfg.frac_bits
    specs = layer_specs(list(net))
    ws = [sim.share_float(p.detach(), n, f) for p in net.parameters()]
    xs, ys = sim.share_float(x, n, f), sim.share_float(y, n, f)
    out = sim.run_parties([train_step(i, specs, [w[i] for w in ws], [], xs[i], ys[i], cfg)
                           for i in range(n)], traffic)
    return [sim.reveal([o.weights[k] for o in out], f) for k in range(len(ws))]


def small_cnn() -> nn.Sequential:
    torch.manual_seed(2)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 4, 3), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                         nn.Linear(4, 3))


@pytest.mark.parametrize("n", PARTIES)
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_cnn_step_matches_torch(n, loss):
    net = small_cnn()
    x = data((4, 1, 8, 8), 9).float()
    y = torch.eye(3)[[0, 2, 1, 2]]
    cfg = TrainConfig(lr=0.5, momentum=0.9, weight_decay=1e-3, loss=loss)
    got = shared_step(net, x, y, cfg, n)
    want = torch_step(net, x, y, cfg)
    for a, b in zip(got, want, strict=True):
        close(a.float(), b, 3e-4)


@pytest.mark.parametrize("n", PARTIES)
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_mlp_step_matches_torch(n, loss):
    torch.manual_seed(3)
    net = nn.Sequential(nn.Flatten(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3, bias=False))
    x = data((8, 2, 3), 10).float()
    y = torch.eye(3)[torch.arange(8) % 3]
    cfg = TrainConfig(lr=0.3, loss=loss)
    got = shared_step(net, x, y, cfg, n)
    want = torch_step(net, x, y, cfg)
    for a, b in zip(got, want, strict=True):
        close(a.float(), b, 3e-4)


def lenet() -> nn.Sequential:
    torch.manual_seed(4)
    return nn.Sequential(nn.Conv2d(1, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(512, 100), nn.ReLU(), nn.Linear(100, 10))


def test_lenet_step_matches_torch():
    net = lenet()
    x = data((2, 1, 28, 28), 11).float()
    y = torch.eye(10)[[3, 7]]
    cfg = TrainConfig(lr=0.1)
    t = sim.Traffic()
    got = shared_step(net, x, y, cfg, 2, t)
    want = torch_step(net, x, y, cfg)
    for a, b in zip(got, want, strict=True):
        close(a.float(), b, 3e-4)
    assert t.rounds < 150
