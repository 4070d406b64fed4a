"""Stochastic binary units, networks and their estimators.

Monte Carlo tolerances are 5 standard errors (estimated from the samples), so
a correct implementation fails a single check with probability < 1e-6.
"""
import math
import statistics

import pytest
import torch
from scipy import stats

from companion import binary
from companion.binary import ESTIMATORS, StochasticNet, gradient_estimate, surrogate_loss
from companion.estimators.exact import exact_gradient
from companion.grids import UniformGrid
from companion.noise import Gaussian, Logistic, Uniform


def data(n=8, seed=0, dim=2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g, dtype=torch.float64), torch.randint(0, 2, (n,), generator=g)


def flat(grads):
    return torch.cat([g.reshape(g.shape[0], -1) for g in grads], dim=1)


def assert_unbiased(net, x, y, method, replicas=20000, seed=0, **kw):
    _, exact = exact_gradient(net, x, y)
    exact = torch.cat([g.flatten() for g in exact])
    est = flat(gradient_estimate(net, x, y, method, generator=torch.Generator().manual_seed(seed), replicas=replicas, **kw))
    z = (est.mean(0) - exact).abs() / (est.std(0) / math.sqrt(replicas) + 1e-12)
    assert z.max().item() < 5, (method, z.max().item())


# ---------------------------------------------------------------- units
def test_sign_of_zero_is_plus_one():
    t = torch.tensor([-2.0, -0.0, 0.0, 3.0])
    assert binary.sign(t).tolist() == [-1.0, 1.0, 1.0, 1.0]
    assert binary.SIGN_AT_ZERO == 1.0
    assert torch.sign(torch.tensor(0.0)).item() == 0.0  # why torch.sign is not used


@pytest.mark.parametrize("noise,cdf", [
    (Logistic(1.5), lambda a: stats.logistic.cdf(a, scale=1.5)),
    (Gaussian(0.7), lambda a: stats.norm.cdf(a, scale=0.7)),
    (Uniform(2.0), lambda a: stats.uniform.cdf(a, loc=-1, scale=2)),
])
def test_unit_probability_matches_scipy(noise, cdf):
    # n = 200,000 draws per pre-activation; 5 standard errors of a proportion.
    n = 200_000
    for a in (-1.3, 0.0, 0.4):
        x = binary.binary_sample(torch.full((n,), a, dtype=torch.float64), noise, torch.Generator().manual_seed(7))
        assert set(x.unique().tolist()) <= {-1.0, 1.0}
        p = float(cdf(a))
        assert abs((x > 0).double().mean().item() - p) < 5 * math.sqrt(p * (1 - p) / n) + 1e-12
        assert binary.binary_mean(torch.tensor(a, dtype=torch.float64), noise).item() == pytest.approx(2 * p - 1, abs=1e-12)


def test_st_slopes_per_noise():
    a = torch.linspace(-3, 3, 61, dtype=torch.float64)
    # Logistic(1): 2σ'(a) is the derivative of tanh(a/2) = (1 - tanh²(a/2))/2.
    assert torch.allclose(binary.st_slope(a, Logistic(1.0)), 0.5 * (1 - torch.tanh(a / 2) ** 2), atol=1e-14)
    # U[-1, 1] (width 2): the hardtanh STE 1[|a| ≤ 1].
    assert torch.equal(binary.st_slope(a, Uniform(2.0)), (a.abs() <= 1).double())
    # Gaussian(σ): 2φ(a/σ)/σ.
    assert torch.allclose(binary.st_slope(a, Gaussian(0.5)), torch.tensor(2 * stats.norm.pdf(a.numpy(), scale=0.5)), atol=1e-14)
    # and each is the a-derivative of the mean 2F(a) - 1 (autograd)
    for noise in (Logistic(0.8), Gaussian(1.3)):
        ar = a.clone().requires_grad_()
        (g,) = torch.autograd.grad(binary.binary_mean(ar, noise).sum(), ar)
        assert torch.allclose(g, binary.st_slope(a, noise), atol=1e-12)


def test_clipped_identity_is_the_mean_under_stochastic_rounding():
    grid = UniformGrid(2, scale=2 / 3, offset=1 / 3)
    net = StochasticNet([1, 1], 2, grid=grid, noise="uniform", noise_scale=2 / 3)
    a = torch.linspace(-2, 2, 81, dtype=torch.float64)
    assert torch.allclose(net.unit_mean(a), a.clamp(-1, 1), atol=1e-12)


# ---------------------------------------------------------------- ST and multilinearity
def st_units(a, n, seed, noise=Logistic(1.0)):
    net = StochasticNet([1, a.numel()], 2, noise=noise.name, noise_scale=noise.scale)
    ar = a.expand(n, -1).clone().requires_grad_()
    return ar, binary._rule_st(net, ar, torch.Generator().manual_seed(seed))


def exact_binary_gradient(a, f):
    """∂/∂a_i Σ_h Π_j P(h_j) f(h) for two logistic units, by enumeration."""
    ar = a.clone().requires_grad_()
    p = torch.sigmoid(ar)
    total = sum(
        (p[0] if h1 > 0 else 1 - p[0]) * (p[1] if h2 > 0 else 1 - p[1]) * f(torch.tensor([[h1, h2]], dtype=torch.float64))
        for h1 in (-1.0, 1.0) for h2 in (-1.0, 1.0)
    )
    return torch.autograd.grad(total.sum(), ar)[0]


def test_st_is_exact_for_a_multilinear_loss():
    a = torch.tensor([0.3, -0.8], dtype=torch.float64)

    def f(h):
        return 0.5 + 1.2 * h[:, 0] - 0.7 * h[:, 1] + 2.0 * h[:, 0] * h[:, 1]

    n = 200_000
    ar, h = st_units(a, n, seed=1)
    (g,) = torch.autograd.grad(f(h).sum(), ar)
    exact = exact_binary_gradient(a, f)
    se = g.std(0) / math.sqrt(n)
    assert ((g.mean(0) - exact).abs() < 5 * se).all(), (g.mean(0), exact)


def test_st_is_biased_for_a_curved_extension():
    # exp(2h) takes the same values on {-1, +1} as a multilinear function, but its derivative differs:
    # ST's bias comes from the curvature of f.
    a = torch.tensor([0.3, -0.8], dtype=torch.float64)

    def f(h):
        return torch.exp(2 * h[:, 0]) * h[:, 1]

    n = 200_000
    ar, h = st_units(a, n, seed=2)
    (g,) = torch.autograd.grad(f(h).sum(), ar)
    exact = exact_binary_gradient(a, f)
    se = g.std(0) / math.sqrt(n)
    assert (g.mean(0) - exact)[0].abs() > 20 * se[0]


# ---------------------------------------------------------------- unbiasedness against enumeration
@pytest.mark.parametrize("method", ["reinforce", "arm"])
def test_unbiased_estimators_deep_net(method):
    net = StochasticNet([2, 3, 3], 2, generator=torch.Generator().manual_seed(11))
    x, y = data()
    assert_unbiased(net, x, y, method)


def test_psa_is_unbiased_with_one_stochastic_layer():
    net = StochasticNet([2, 4], 2, generator=torch.Generator().manual_seed(12))
    x, y = data()
    assert_unbiased(net, x, y, "psa")


def test_psa_and_st_are_biased_on_a_deep_net_but_psa_less():
    net = StochasticNet([2, 4, 4], 2, generator=torch.Generator().manual_seed(13))
    x, y = data()
    _, exact = exact_gradient(net, x, y)
    exact = torch.cat([g.flatten() for g in exact])
    errors = {}
    for method in ("psa", "st"):
        est = flat(gradient_estimate(net, x, y, method, generator=torch.Generator().manual_seed(1), replicas=20000))
        errors[method] = ((est.mean(0) - exact).norm() / exact.norm()).item()
    assert errors["psa"] < errors["st"]


def test_reinforce_unbiased_multilevel():
    grid = UniformGrid(2, scale=2 / 3, offset=1 / 3)
    net = StochasticNet([2, 2, 2], 2, grid=grid, noise_scale=0.3, generator=torch.Generator().manual_seed(14))
    x, y = data(6)
    assert_unbiased(net, x, y, "reinforce")


def test_noisy_st_of_the_quantizer_module_matches_our_st_in_mean():
    pytest.importorskip("companion.estimators.pathwise")
    grid = UniformGrid(2, scale=2 / 3, offset=1 / 3)
    net = StochasticNet([2, 2, 2], 2, grid=grid, noise_scale=0.3, generator=torch.Generator().manual_seed(15))
    x, y = data(6)
    n = 10000
    a = flat(gradient_estimate(net, x, y, "st", generator=torch.Generator().manual_seed(1), replicas=n))
    b = flat(gradient_estimate(net, x, y, "noisy-st", generator=torch.Generator().manual_seed(2), replicas=n))
    se = torch.sqrt(a.var(0) / n + b.var(0) / n)
    assert ((a.mean(0) - b.mean(0)).abs() < 5 * se + 1e-12).all()


# ---------------------------------------------------------------- deterministic pieces
def test_ap1_is_tanh_propagation():
    net = StochasticNet([2, 3], 2, generator=torch.Generator().manual_seed(16))
    x, y = data()
    h = torch.tanh((x @ net.hidden[0].weight.T + net.hidden[0].bias) / 2)
    assert torch.allclose(net.mean_forward(x), h @ net.output.weight.T + net.output.bias, atol=1e-13)
    rows = gradient_estimate(net, x, y, "ap1", replicas=3)
    single = gradient_estimate(net, x, y, "ap1")
    for r, s in zip(rows, single):
        assert torch.allclose(r, s.expand_as(r), atol=1e-14)


@pytest.mark.parametrize("noise,scale", [("logistic", 0.25), ("uniform", 2 / 3), ("gaussian", 0.3)])
def test_ap2_is_usually_closer_to_the_exact_gradient_than_ap1(noise, scale):
    # Eight seeded 2-bit 2-3-3 nets at initialisation, 100 points of the toy set; exact gradient by enumeration
    # (4^3 states per layer).  AP2 keeps the variances AP1 drops; what remains is the Gaussian, factorised
    # (independent units and logits) assumption and the second-order expected cross-entropy, so AP2 is not
    # always closer: measured error ratios AP2/AP1 0.28-0.97 on seven nets and 5.5-6.7 on one (seed 7).
    # The test asserts the median ratio over the eight nets is below 0.7 (measured 0.53, 0.57, 0.42).
    from companion.estimators.exact import exact_gradient
    from companion.toydata import cos_boundary_data

    x, y = cos_boundary_data(100, torch.Generator().manual_seed(0))
    grid = UniformGrid(2, scale=2 / 3, offset=1 / 3)
    ratios = []
    for seed in range(1, 9):
        net = StochasticNet([2, 3, 3], 2, grid=grid, noise=noise, noise_scale=scale,
                            generator=torch.Generator().manual_seed(seed))
        exact = torch.cat([t.flatten() for t in exact_gradient(net, x, y)[1]])
        error = {}
        for method in ("ap1", "ap2"):
            estimate = torch.cat([t.flatten() for t in gradient_estimate(net, x, y, method)])
            assert torch.isfinite(estimate).all()
            error[method] = ((estimate - exact).norm() / exact.norm()).item()
        ratios.append(error["ap2"] / error["ap1"])
    assert statistics.median(ratios) < 0.7, ratios
    rows = gradient_estimate(net, x, y, "ap2", replicas=3)
    for r, s in zip(rows, gradient_estimate(net, x, y, "ap2")):
        torch.testing.assert_close(r, s.expand_as(r), rtol=1e-12, atol=1e-14)


def test_concrete_tends_to_the_hard_sample():
    net = StochasticNet([2, 4, 3], 2, generator=torch.Generator().manual_seed(17))
    x, y = data()
    relaxed = surrogate_loss(net, x, y, "concrete", temperature=1e-7, generator=torch.Generator().manual_seed(3))
    hard = binary.nll(net.sample_forward(x, torch.Generator().manual_seed(3)), y).mean()
    assert relaxed.item() == pytest.approx(hard.item(), abs=1e-6)


def test_stochastic_weights():
    net = StochasticNet([2, 3, 3], 2, stochastic_weights=True, generator=torch.Generator().manual_seed(18))
    x, y = data()
    w = net.weight(net.hidden[0].weight, generator=torch.Generator().manual_seed(0))
    assert set(w.unique().tolist()) <= {-1.0, 1.0}
    for method in ("st", "hardtanh-st", "concrete", "ap1"):
        grads = gradient_estimate(net, x, y, method, generator=torch.Generator().manual_seed(1))
        assert all(torch.isfinite(g).all() for g in grads) and grads[0].abs().sum() > 0
    with pytest.raises(ValueError, match="deterministic weights only.*'st'"):
        gradient_estimate(net, x, y, "reinforce")


# ---------------------------------------------------------------- errors
def test_bad_arguments():
    net = StochasticNet([2, 3], 2)
    x, y = data()
    with pytest.raises(ValueError, match="method must be one of .*'psa'"):
        gradient_estimate(net, x, y, "rebar")
    with pytest.raises(ValueError, match="temperature"):
        gradient_estimate(net, x, y, "concrete", temperature=0.0)
    with pytest.raises(ValueError, match="y must be int64"):
        gradient_estimate(net, x, y.double(), "st")
    multi = StochasticNet([2, 3], 2, grid=UniformGrid(2))
    for method in ("arm", "psa", "concrete"):
        with pytest.raises(ValueError, match="needs binary units"):
            gradient_estimate(multi, x, y, method)
    pytest.importorskip("companion.estimators.pathwise")
    with pytest.raises(ValueError, match="uniform"):
        gradient_estimate(multi, x, y, "sr")
    with pytest.raises(ValueError, match="sizes"):
        StochasticNet([2], 2)
    with pytest.raises(TypeError, match="grid"):
        StochasticNet([2, 2], 2, grid="binary")
    with pytest.raises(ValueError, match="stochastic_weights"):
        StochasticNet([2, 2], 2, grid=UniformGrid(2), stochastic_weights=True)
    assert set(binary.BINARY_METHODS) <= set(ESTIMATORS) and set(binary.MULTILEVEL_METHODS) <= set(ESTIMATORS)
