"""The toy Bernoulli estimators against THEORY.md §5, written out independently here.

Monte Carlo checks use n = 400,000 draws and a 5-standard-error tolerance
(the standard error of the mean is sd/√n; of the variance √((m4 - var²)/n)),
so a correct implementation fails with probability < 1e-6 per check.
"""
import math

import pytest
import torch

from companion.estimators import toy

N = 400_000


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def mc(method, phi, t, tau=1.0, seed=0):
    return toy.gradient_samples(method, phi, t, N, temperature=tau, generator=torch.Generator().manual_seed(seed))


def assert_mean(samples, expected):
    se = samples.std().item() / math.sqrt(len(samples))
    assert abs(samples.mean().item() - expected) <= 5 * se + 1e-12, (samples.mean().item(), expected, se)


def assert_var(samples, expected):
    c = samples - samples.mean()
    var = (c**2).mean().item()
    se = math.sqrt(max((c**4).mean().item() - var**2, 0.0) / len(samples))
    assert abs(var - expected) <= 5 * se + 1e-12, (var, expected, se)


# --- the table of THEORY.md §5, at φ = 0 (g = (1 - 2t)/4) --------------------------------

@pytest.mark.parametrize("t", [0.45, 0.49, 0.499])
def test_reinforce_at_zero(t):
    g = (1 - 2 * t) / 4
    var = ((1 - t) ** 4 + t**4) / 8 - g**2
    s = mc("reinforce", 0.0, t)
    assert_mean(s, g)
    assert_var(s, var)
    assert toy.moments("reinforce", 0.0, t) == pytest.approx((g, var), rel=1e-12)


def test_reinforce_variance_literal():
    # THEORY.md quotes 0.0156375 (exactly 0.0156375025): agree to the quoted 7 digits.
    assert toy.moments("reinforce", 0.0, 0.49)[1] == pytest.approx(0.0156375, abs=5e-9)


@pytest.mark.parametrize("t", [0.45, 0.49])
def test_st_at_zero(t):
    s = mc("st", 0.0, t)
    assert_mean(s, (1 - 2 * t) / 4)
    assert_var(s, 1 / 16)
    assert toy.moments("st", 0.0, t) == pytest.approx(((1 - 2 * t) / 4, 1 / 16), rel=1e-12)


@pytest.mark.parametrize("t", [0.45, 0.49])
def test_arm_at_zero(t):
    s = mc("arm", 0.0, t)
    assert_mean(s, (1 - 2 * t) / 4)
    assert_var(s, (1 - 2 * t) ** 2 / 48)
    assert toy.moments("arm", 0.0, t)[1] == pytest.approx((1 - 2 * t) ** 2 / 48, rel=1e-12)


def test_disarm_is_deterministic_at_zero():
    s = mc("disarm", 0.0, 0.49)
    assert torch.allclose(s, torch.full_like(s, (1 - 2 * 0.49) / 4), atol=1e-15)
    assert toy.moments("disarm", 0.0, 0.49)[1] == 0.0


@pytest.mark.parametrize("t", [0.45, 0.49])
def test_concrete_tau_one_mean_is_two_thirds_of_g(t):
    assert_mean(mc("concrete", 0.0, t), (1 - 2 * t) / 6)
    assert toy.moments("concrete", 0.0, t)[0] == pytest.approx((1 - 2 * t) / 6, abs=1e-10)


def test_st_bias_example_from_theory():
    p = sigmoid(-2.0)
    assert 2 * (p - 0.49) * p * (1 - p) == pytest.approx(-0.0779, abs=5e-5)
    assert toy.moments("st", -2.0, 0.49)[0] == pytest.approx(-0.0779, abs=5e-5)
    assert toy.true_gradient(-2.0, 0.49) == pytest.approx(0.0021, abs=5e-5)
    assert_mean(mc("st", -2.0, 0.49), 2 * (p - 0.49) * p * (1 - p))


def test_st_fixed_point_is_p_equals_t():
    # The ST mean 2(p - t)p(1-p) changes sign at p = t: gradient descent on φ stops there.
    for t in (0.2, 0.45, 0.49):
        phi_t = math.log(t / (1 - t))
        assert toy.moments("st", phi_t, t)[0] == pytest.approx(0.0, abs=1e-15)
        assert toy.moments("st", phi_t - 0.1, t)[0] < 0 < toy.moments("st", phi_t + 0.1, t)[0]
        assert toy.true_gradient(phi_t, t) > 0  # the true gradient still pushes p down
    # ST-driven descent from p = 0.7 converges to p = t = 0.3 (not to the optimum p = 0).
    phi, t = math.log(0.7 / 0.3), 0.3
    for _ in range(3000):
        phi -= 2.0 * toy.moments("st", phi, t)[0]
    assert sigmoid(phi) == pytest.approx(t, abs=1e-6)


# --- general φ: the package's closed forms against Monte Carlo ----------------------------

@pytest.mark.parametrize("method", toy.METHODS)
@pytest.mark.parametrize("phi,t,tau", [(-2.0, 0.49, 1.0), (1.3, 0.45, 0.1), (0.7, 0.3, 0.5)])
def test_moments_match_monte_carlo(method, phi, t, tau):
    s = mc(method, phi, t, tau, seed=1)
    mean, var = toy.moments(method, phi, t, tau)
    assert_mean(s, mean)
    assert_var(s, var)


@pytest.mark.parametrize("method", ["reinforce", "arm", "disarm"])
@pytest.mark.parametrize("phi", [-2.0, 0.4, 3.0])
def test_unbiased_methods(method, phi):
    t = 0.49
    p = sigmoid(phi)
    assert_mean(mc(method, phi, t, seed=2), (1 - 2 * t) * p * (1 - p))


def test_relaxed_moments_against_independent_quadrature():
    # Integrate over u ∈ (0, 1) instead of over the logistic noise (substitution L = logit u).
    from scipy import integrate

    phi, t, tau = 0.8, 0.45, 0.5

    def h(u, hard):
        y = (phi + math.log(u / (1 - u))) / tau
        s = sigmoid(y)
        z = float(y > 0) if hard else s
        return 2 * (z - t) * s * (1 - s) / tau

    u_kink = sigmoid(-phi)
    for method, hard in (("concrete", False), ("st-gumbel", True)):
        m1 = sum(integrate.quad(lambda u: h(u, hard), a, b, limit=200)[0] for a, b in ((0, u_kink), (u_kink, 1)))
        m2 = sum(integrate.quad(lambda u: h(u, hard) ** 2, a, b, limit=200)[0] for a, b in ((0, u_kink), (u_kink, 1)))
        assert toy.moments(method, phi, t, tau) == pytest.approx((m1, m2 - m1**2), rel=1e-7)


def test_concrete_matches_autograd():
    # The concrete estimate is d/dφ f(σ((φ + L)/τ)): rebuild the same draws and differentiate.
    tau, t = 0.3, 0.45
    s = toy.gradient_samples("concrete", 0.5, t, 7, temperature=tau, generator=torch.Generator().manual_seed(5))
    u = torch.rand(7, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    phi = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    grads = [torch.autograd.grad((torch.sigmoid((phi + torch.logit(ui)) / tau) - t) ** 2, phi)[0] for ui in u]
    assert torch.allclose(s, torch.stack(grads), rtol=1e-10)


def test_seeded_and_shaped():
    a = toy.gradient_samples("arm", 0.3, 0.4, 5, generator=torch.Generator().manual_seed(3))
    b = toy.gradient_samples("arm", 0.3, 0.4, 5, generator=torch.Generator().manual_seed(3))
    assert a.shape == (5,) and a.dtype == torch.float64 and torch.equal(a, b)


def test_bad_arguments():
    with pytest.raises(ValueError, match="method must be one of .*'reinforce'.*'st-gumbel'"):
        toy.gradient_samples("rebar", 0.0, 0.5, 10)
    with pytest.raises(ValueError, match="temperature"):
        toy.gradient_samples("concrete", 0.0, 0.5, 10, temperature=0.0)
    with pytest.raises(ValueError, match="temperature"):
        toy.moments("concrete", 0.0, 0.5, temperature=-1.0)
    with pytest.raises(ValueError, match="n must be"):
        toy.gradient_samples("st", 0.0, 0.5, 0)
    with pytest.raises(ValueError, match="logit"):
        toy.gradient_samples("st", float("nan"), 0.5, 3)
    with pytest.raises(TypeError, match="generator"):
        toy.gradient_samples("st", 0.0, 0.5, 3, generator=1)


def test_explorer_redraws_on_slider_change():
    from companion import widgets

    w = widgets.toy_estimator_explorer(samples=500)
    first = w.result
    logit = next(c for c in w.children if getattr(c, "description", "") == "logit φ")
    logit.value = -2.0
    assert w.result is not first
    assert "φ = -2.00" in w.result.axes[0].get_title()
    # the bars are the closed-form means: the ST bar at φ = -2, t = 0.49 is the -0.0779 of THEORY.md §5
    st_bar = w.result.axes[0].patches[toy.METHODS.index("st")]
    assert st_bar.get_height() == pytest.approx(-0.0779, abs=5e-5)
