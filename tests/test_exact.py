"""Exact enumeration against an independent brute force and against Monte Carlo."""
import itertools
import math

import pytest
import torch

from companion.binary import StochasticNet
from companion.estimators.exact import expected_loss, exact_gradient
from companion.grids import UniformGrid


def data(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (n,), generator=g)
    return x, y


def brute_force_binary(net, x, y):
    """Σ over all joint states of all units, P(+1) = σ(a) written out (logistic, scale 1)."""
    layers = [(l.weight, l.bias) for l in net.hidden]
    units = sum(net.widths)
    total = 0.0
    for n in range(x.shape[0]):
        for state in itertools.product((-1.0, 1.0), repeat=units):
            h, prob, offset = x[n], 1.0, 0
            for (w, b), width in zip(layers, net.widths):
                s = torch.tensor(state[offset:offset + width], dtype=torch.float64)
                a = w @ h + b
                p_plus = 1 / (1 + torch.exp(-a))
                prob = prob * torch.where(s > 0, p_plus, 1 - p_plus).prod()
                h, offset = s, offset + width
            logits = net.output.weight @ h + net.output.bias
            total = total + prob * (torch.logsumexp(logits, 0) - logits[y[n]])
    return total / x.shape[0]


def brute_force_multilevel(net, x, y, points, scale):
    """Same for a K-level grid with clamped logistic noise: cells between midpoints b_k = g_k + α/2."""
    thresholds = [(points[i] + points[i + 1]) / 2 for i in range(len(points) - 1)]

    def cell(a, i):
        # P(b_{i-1} < a - Z <= b_i) = P(a - Z > b_{i-1}) - P(a - Z > b_i), P(a - Z > b) = σ((a - b)/s).
        p_above_low = 1.0 if i == 0 else 1 / (1 + math.exp(-(a - thresholds[i - 1]) / scale))
        p_above_high = 0.0 if i == len(points) - 1 else 1 / (1 + math.exp(-(a - thresholds[i]) / scale))
        return p_above_low - p_above_high

    total = 0.0
    layers = [(l.weight.detach(), l.bias.detach()) for l in net.hidden]
    for n in range(x.shape[0]):
        for state in itertools.product(range(len(points)), repeat=sum(net.widths)):
            h, prob, offset = x[n], 1.0, 0
            for (w, b), width in zip(layers, net.widths):
                a = (w @ h + b).tolist()
                idx = state[offset:offset + width]
                prob *= math.prod(cell(a[u], idx[u]) for u in range(width))
                h, offset = torch.tensor([points[i] for i in idx], dtype=torch.float64), offset + width
            logits = net.output.weight.detach() @ h + net.output.bias.detach()
            total += prob * (torch.logsumexp(logits, 0) - logits[y[n]]).item()
    return total / x.shape[0]


def test_binary_matches_brute_force_and_its_gradient():
    net = StochasticNet([2, 2, 3], 2, generator=torch.Generator().manual_seed(1))
    x, y = data()
    fast = expected_loss(net, x, y)
    slow = brute_force_binary(net, x, y)
    assert fast.item() == pytest.approx(slow.item(), rel=1e-12)
    _, grads = exact_gradient(net, x, y)
    slow_grads = torch.autograd.grad(slow, list(net.parameters()))
    for a, b in zip(grads, slow_grads):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-13)


def test_multilevel_matches_brute_force():
    points = [-1.0, -1 / 3, 1 / 3, 1.0]
    grid = UniformGrid(2, scale=2 / 3, offset=1 / 3)
    net = StochasticNet([2, 2, 2], 2, grid=grid, noise="logistic", noise_scale=0.3, generator=torch.Generator().manual_seed(2))
    x, y = data(4)
    assert expected_loss(net, x, y).item() == pytest.approx(brute_force_multilevel(net, x, y, points, 0.3), rel=1e-10)


def test_gradient_matches_finite_differences():
    net = StochasticNet([2, 3, 2], 2, generator=torch.Generator().manual_seed(3))
    x, y = data()
    _, grads = exact_gradient(net, x, y)
    w = net.hidden[0].weight
    eps = 1e-6
    with torch.no_grad():
        w[1, 0] += eps
        up = expected_loss(net, x, y).item()
        w[1, 0] -= 2 * eps
        down = expected_loss(net, x, y).item()
        w[1, 0] += eps
    assert grads[0][1, 0].item() == pytest.approx((up - down) / (2 * eps), rel=1e-6)


def test_expected_loss_matches_monte_carlo():
    # 20,000 sampled forward passes per point; tolerance 5 standard errors of the mean NLL.
    net = StochasticNet([2, 4, 4], 2, generator=torch.Generator().manual_seed(4))
    x, y = data(5)
    reps = 20000
    g = torch.Generator().manual_seed(5)
    xr, yr = x.repeat(reps, 1), y.repeat(reps)
    losses = torch.nn.functional.cross_entropy(net.sample_forward(xr, g), yr, reduction="none")
    mc = losses.mean().item()
    se = losses.view(reps, -1).mean(1).std().item() / math.sqrt(reps)
    assert abs(expected_loss(net, x, y).item() - mc) < 5 * se


def test_too_many_states():
    net = StochasticNet([2, 13], 2)
    x, y = data()
    with pytest.raises(ValueError, match=r"2\^13 = 8192 joint states, more than max_states=4096"):
        expected_loss(net, x, y)
    assert expected_loss(net, x, y, max_states=8192).isfinite()


def test_bad_arguments():
    net = StochasticNet([2, 2], 2)
    x, y = data()
    with pytest.raises(ValueError, match="y must have shape"):
        expected_loss(net, x, y[:3])
    with pytest.raises(ValueError, match="max_states"):
        expected_loss(net, x, y, max_states=0)
    with pytest.raises(ValueError, match="stochastic weights"):
        expected_loss(StochasticNet([2, 2], 2, stochastic_weights=True), x, y)
