"""companion.moments layers against references they share no code with.

References: scipy quadrature (exact integrals of the Gaussian input), Monte Carlo
(sample sizes and tolerances stated next to each test), torch's own layers at
zero variance, and companion.rounding at zero input variance.
"""
import math

import pytest
import torch
import torch.nn.functional as F
from scipy import integrate, stats

from companion import moments as M
from companion.grids import UniformGrid
from companion.noise import Gaussian, Logistic, Uniform, make_noise
from companion.rounding import grid_probabilities, quantized_moments, round_to_grid

D = torch.float64


def t(*values):
    return torch.tensor(values, dtype=D)


def gauss_expect(f, mu, sd):
    """E f(X), X ~ N(mu, sd²), by adaptive quadrature (scipy)."""
    value, _ = integrate.quad(lambda x: f(x) * stats.norm.pdf(x, mu, sd), mu - 12 * sd, mu + 12 * sd, limit=200, points=[0.0] if abs(mu) < 12 * sd else None)
    return value


# -- ReLU -------------------------------------------------------------------
@pytest.mark.parametrize("mu,sd", [(0.0, 1.0), (1.3, 0.4), (-2.0, 0.7), (4.0, 0.5), (-6.0, 1.0), (0.2, 3.0)])
def test_relu_matches_quadrature(mu, sd):
    mean, var = M.relu(t(mu), t(sd**2))
    e1 = gauss_expect(lambda x: max(x, 0.0), mu, sd)
    e2 = gauss_expect(lambda x: max(x, 0.0) ** 2, mu, sd)
    assert mean.item() == pytest.approx(e1, rel=1e-7, abs=1e-12)
    assert var.item() == pytest.approx(e2 - e1**2, rel=1e-6, abs=1e-12)


# -- max ----------------------------------------------------------------------
@pytest.mark.parametrize("m1,v1,m2,v2", [(0.0, 1.0, 0.0, 1.0), (1.0, 0.25, -0.5, 2.0), (3.0, 1.0, -3.0, 0.1), (0.3, 0.0, 0.1, 0.5)])
def test_clark_max_is_exact_for_two_gaussians(m1, v1, m2, v2):
    # Reference: E g(max) = ∫ g(x) d/dx[F1(x) F2(x)] dx by quadrature.
    mean, var = M.max2(t(m1), t(v1), t(m2), t(v2))

    def density(x):
        f1 = stats.norm.pdf(x, m1, math.sqrt(v1)) if v1 > 0 else None
        if f1 is None:  # X1 is the constant m1: max = max(m1, X2)
            return None
        return f1 * stats.norm.cdf(x, m2, math.sqrt(v2)) + stats.norm.pdf(x, m2, math.sqrt(v2)) * stats.norm.cdf(x, m1, math.sqrt(v1))

    if v1 == 0:
        e1 = gauss_expect(lambda x: max(x, m1), m2, math.sqrt(v2))
        e2 = gauss_expect(lambda x: max(x, m1) ** 2, m2, math.sqrt(v2))
    else:
        e1 = integrate.quad(lambda x: x * density(x), -30, 30, limit=200)[0]
        e2 = integrate.quad(lambda x: x * x * density(x), -30, 30, limit=200)[0]
    assert mean.item() == pytest.approx(e1, rel=1e-6, abs=1e-9)
    assert var.item() == pytest.approx(e2 - e1**2, rel=1e-5, abs=1e-9)


def test_clark_max_against_monte_carlo():
    # 10^6 samples: the standard error of the mean is sd/1000 ≈ 1e-3, of the variance ≈ 0.14 %.
    g = torch.Generator().manual_seed(0)
    m1, v1, m2, v2 = 0.4, 1.5, -0.2, 0.6
    x1 = m1 + math.sqrt(v1) * torch.randn(10**6, generator=g, dtype=D)
    x2 = m2 + math.sqrt(v2) * torch.randn(10**6, generator=g, dtype=D)
    mc = torch.maximum(x1, x2)
    mean, var = M.max2(t(m1), t(v1), t(m2), t(v2))
    assert mean.item() == pytest.approx(mc.mean().item(), abs=5e-3)
    assert var.item() == pytest.approx(mc.var().item(), rel=1e-2)


def test_max_pool_zero_variance_is_max_pool_and_mc_close():
    g = torch.Generator().manual_seed(1)
    mean = torch.randn(2, 3, 6, 6, generator=g, dtype=D)
    pooled, pooled_var = M.max_pool2d(mean, torch.zeros_like(mean), 2)
    torch.testing.assert_close(pooled, F.max_pool2d(mean, 2))
    assert float(pooled_var.max()) < 1e-8
    # With variance: pairwise Clark is an approximation (the max of two Gaussians is
    # not Gaussian); 2x2 windows, 2·10^4 samples (SE ≤ 0.005); mean within 0.05, variance within 15 %.
    var = 0.3 * torch.rand(2, 3, 6, 6, generator=g, dtype=D)
    samples = (mean + var.sqrt() * torch.randn((20000, 2, 3, 6, 6), generator=g, dtype=D)).reshape(-1, 3, 6, 6)
    mc = F.max_pool2d(samples, 2).reshape(20000, 2, 3, 3, 3)
    m, v = M.max_pool2d(mean, var, 2)
    assert float((m - mc.mean(0)).abs().max()) < 0.05
    assert float(((v - mc.var(0)).abs() / mc.var(0)).max()) < 0.15


# -- thresholds with injected noise -------------------------------------------
def test_expected_sigmoid_exact_and_approximations():
    """THEORY.md §6: E[S(X)], X ~ N(2, 3²) = 0.7174; probit 0.7190; variance matching 0.7378."""
    exact = gauss_expect(lambda x: 1 / (1 + math.exp(-x)), 2.0, 3.0)
    assert exact == pytest.approx(0.7174, abs=5e-5)
    probit = M.exceed_probability(t(2.0), t(9.0), Logistic(1.0), approximation="probit")
    variance = M.exceed_probability(t(2.0), t(9.0), Logistic(1.0), approximation="variance")
    # THEORY.md quotes 0.7190; the value is 0.718946 (0.7189 to four places).
    assert probit.item() == pytest.approx(0.71895, abs=1e-5)
    assert variance.item() == pytest.approx(0.7378, abs=5e-5)


@pytest.mark.parametrize("mu,var", [(0.3, 0.5), (-1.2, 2.0), (2.0, 0.01)])
def test_sign_and_heaviside_closed_forms(mu, var):
    # Gaussian noise of std τ: P(X + ε > 0) = Φ(μ/sqrt(σ² + τ²)) exactly (scipy).
    tau = 0.7
    p = stats.norm.cdf(mu / math.sqrt(var + tau**2))
    mean, v = M.sign(t(mu), t(var), Gaussian(tau))
    assert mean.item() == pytest.approx(2 * p - 1, rel=1e-10)
    assert v.item() == pytest.approx(4 * p * (1 - p), rel=1e-10)
    # No noise: the sign of a Gaussian, mean 2Φ(μ/σ) - 1, var 1 - mean².
    mean, v = M.sign(t(mu), t(var))
    p = stats.norm.cdf(mu / math.sqrt(var))
    assert mean.item() == pytest.approx(2 * p - 1, rel=1e-10)
    assert v.item() == pytest.approx(1 - (2 * p - 1) ** 2, rel=1e-9)
    # Heaviside with logistic noise against quadrature (approximation: within 0.01).
    mean, v = M.heaviside(t(mu), t(var), Logistic(0.5))
    exact = gauss_expect(lambda x: 1 / (1 + math.exp(-x / 0.5)), mu, math.sqrt(var))
    assert mean.item() == pytest.approx(exact, abs=0.01)
    assert v.item() == pytest.approx(mean.item() * (1 - mean.item()), rel=1e-9)


@pytest.mark.parametrize("mu,var,width", [(0.1, 0.2, 1.0), (-0.4, 0.05, 0.5), (2.0, 1.0, 0.3), (0.2, 1e-12, 1.0)])
def test_uniform_noise_exceedance_exact(mu, var, width):
    # P(X + U > 0) = E_X[clip(X/w + 1/2, 0, 1)] by quadrature.
    value = M.exceed_probability(t(mu), t(var), Uniform(width))
    if var < 1e-9:
        exact = min(max(mu / width + 0.5, 0.0), 1.0)
    else:
        exact = gauss_expect(lambda x: min(max(x / width + 0.5, 0.0), 1.0), mu, math.sqrt(var))
    assert value.item() == pytest.approx(exact, abs=1e-8)


# -- the noisy quantizer ------------------------------------------------------
def _mc_quantizer(mu, var, grid, noise, n, seed):
    """Monte Carlo of Q(X + ε) with clamp tails: round-and-clip of the noisy input."""
    g = torch.Generator().manual_seed(seed)
    x = mu + math.sqrt(var) * torch.randn(n, generator=g, dtype=D) + noise.sample((n,), generator=g, dtype=D)
    return round_to_grid(x, grid)


@pytest.mark.parametrize("mu,var", [(0.1, 0.3), (-0.7, 0.05), (1.5, 1.0)])
def test_quantizer_gaussian_noise_exact_vs_mc(mu, var):
    # 10^6 samples: mean within 5 standard errors (≤ 5·0.6/1000), variance within 1 %.
    grid, noise = UniformGrid(2, scale=0.5), Gaussian(0.2)
    mc = _mc_quantizer(mu, var, grid, noise, 10**6, 0)
    mean, v = M.noisy_quantize(t(mu), t(var), grid, noise)
    assert mean.item() == pytest.approx(mc.mean().item(), abs=5 * mc.std().item() / 1000)
    assert v.item() == pytest.approx(mc.var().item(), rel=1e-2)


@pytest.mark.parametrize("approximation", ["probit", "variance"])
@pytest.mark.parametrize("mu,var,s", [(0.1, 0.3, 0.1), (-0.6, 0.05, 0.2), (0.4, 0.6, 0.05), (0.2, 0.1, 0.5 / 3)])
def test_quantizer_logistic_approximation_vs_mc(mu, var, s, approximation):
    # The logistic approximation replaces N(μ, σ²) * Logistic(s) by a logistic, whose
    # threshold probabilities are off by up to ~0.02 (the logistic-vs-probit cdf gap);
    # measured: mean error ≤ 0.018, variance error ≤ 8 % on these cases.  10^6 samples
    # (SE of the mean ≤ 5e-4, of the variance ≤ 0.15 %): mean within 0.025, variance within 10 %.
    grid, noise = UniformGrid(2, scale=0.5), Logistic(s)
    mc = _mc_quantizer(mu, var, grid, noise, 10**6, 1)
    mean, v = M.noisy_quantize(t(mu), t(var), grid, noise, approximation=approximation)
    assert mean.item() == pytest.approx(mc.mean().item(), abs=0.025)
    assert v.item() == pytest.approx(mc.var().item(), rel=0.10)


@pytest.mark.parametrize("noise", [None, Gaussian(0.2), Logistic(0.15), Uniform(0.5)], ids=repr)
@pytest.mark.parametrize("tails", ["clamp", "truncate"])
def test_quantizer_zero_variance_is_quantized_moments(noise, tails):
    grid = UniformGrid(2, scale=0.5, offset=0.1)
    x = torch.linspace(-2, 2, 41, dtype=D)
    if noise is None:
        mean, var = M.noisy_quantize(x + 1e-3, torch.zeros_like(x), grid, noise, tails=tails)
        torch.testing.assert_close(mean, round_to_grid(x + 1e-3, grid))
        return
    mean, var = M.noisy_quantize(x, torch.zeros_like(x), grid, noise, tails=tails)
    ref_mean, ref_var = quantized_moments(x, grid, noise, tails=tails)
    # The variance floor σ = 1e-5 smooths the uniform cdf's kinks: error ≤ σφ(0)/w·(a few) ≈ 1e-5.
    torch.testing.assert_close(mean, ref_mean, atol=2e-5, rtol=0)
    torch.testing.assert_close(var, ref_var, atol=2e-5, rtol=0)


@pytest.mark.parametrize("mu,var,s,nodes", [(0.2, 0.2, 0.5 / 3, 8), (0.9, 0.01, 0.5 / 3, 8), (-0.3, 0.05, 0.1, 8), (0.0, 1.0, 0.5 / 3, 16)])
def test_quantizer_truncate_vs_mc(mu, var, s, nodes):
    # Truncated tails (RQ eq. 4), the default of companion.nn: Gauss–Hermite over X.  Where
    # σ ≫ s (last case, σ/s = 6) 8 nodes err by 0.011 in the mean; 16 nodes are needed.
    # MC: 4·10^5 draws of X, then x̂ from companion.rounding's categorical given X
    # (SE of the mean ≤ 1e-3): mean within 0.01, variance within 3 %.
    grid, noise = UniformGrid(2, scale=0.5), Logistic(s)
    g = torch.Generator().manual_seed(3)
    x = mu + math.sqrt(var) * torch.randn(400000, generator=g, dtype=D)
    idx = torch.multinomial(grid_probabilities(x, grid, noise, tails="truncate"), 1, generator=g).squeeze(-1)
    mc = grid.points_like(x)[idx]
    mean, v = M.noisy_quantize(t(mu), t(var), grid, noise, tails="truncate", nodes=nodes)
    assert mean.item() == pytest.approx(mc.mean().item(), abs=0.01)
    assert v.item() == pytest.approx(mc.var().item(), rel=0.03)


# -- linear layers --------------------------------------------------------------
def test_linear_random_weights_vs_mc():
    # Var y = Σ (v_w v_x + v_w μ_x² + μ_w² v_x); 2·10^5 samples of (W, x): mean within
    # 5 SE, variance within 2 % (SE of a variance at 2·10^5 samples ≈ 0.3 %).
    g = torch.Generator().manual_seed(4)
    mu_x, v_x = torch.randn(6, generator=g, dtype=D), torch.rand(6, generator=g, dtype=D)
    mu_w, v_w = torch.randn(3, 6, generator=g, dtype=D), 0.3 * torch.rand(3, 6, generator=g, dtype=D)
    bias = torch.randn(3, generator=g, dtype=D)
    n = 200000
    x = mu_x + v_x.sqrt() * torch.randn(n, 6, generator=g, dtype=D)
    w = mu_w + v_w.sqrt() * torch.randn(n, 3, 6, generator=g, dtype=D)
    y = torch.einsum("noi,ni->no", w, x) + bias
    mean, var = M.linear(mu_x, v_x, mu_w, bias, weight_var=v_w)
    assert torch.all((mean - y.mean(0)).abs() < 5 * y.std(0) / math.sqrt(n))
    torch.testing.assert_close(var, y.var(0), rtol=0.02, atol=0)
    # Written out once more by hand for one output (the formula of THEORY.md §6).
    j = 1
    by_hand = (v_w[j] * v_x + v_w[j] * mu_x**2 + mu_w[j] ** 2 * v_x).sum()
    assert var[j].item() == pytest.approx(by_hand.item(), rel=1e-12)


def test_conv2d_matches_linear_on_patches_and_torch_at_zero_variance():
    g = torch.Generator().manual_seed(5)
    mean, var = torch.randn(2, 3, 7, 7, generator=g, dtype=D), torch.rand(2, 3, 7, 7, generator=g, dtype=D)
    w, wv = torch.randn(4, 3, 3, 3, generator=g, dtype=D), torch.rand(4, 3, 3, 3, generator=g, dtype=D)
    b = torch.randn(4, generator=g, dtype=D)
    m, v = M.conv2d(mean, var, w, b, wv, stride=2, padding=1)
    pm = F.unfold(mean, 3, padding=1, stride=2).transpose(1, 2)
    pv = F.unfold(var, 3, padding=1, stride=2).transpose(1, 2)
    lm, lv = M.linear(pm, pv, w.reshape(4, -1), b, wv.reshape(4, -1))
    torch.testing.assert_close(m, lm.transpose(1, 2).reshape(m.shape))
    torch.testing.assert_close(v, lv.transpose(1, 2).reshape(v.shape))
    torch.testing.assert_close(M.conv2d(mean, torch.zeros_like(var), w, b)[0], F.conv2d(mean, w, b))


def test_batch_norm_eval_matches_torch():
    g = torch.Generator().manual_seed(6)
    bn = torch.nn.BatchNorm2d(3).double().eval()
    with torch.no_grad():
        bn.running_mean.normal_(generator=g)
        bn.running_var.uniform_(0.5, 2.0, generator=g)
        bn.weight.normal_(generator=g)
        bn.bias.normal_(generator=g)
    x = torch.randn(2, 3, 4, 4, generator=g, dtype=D)
    var = torch.rand_like(x)
    m, v = M.batch_norm(x, var, bn.running_mean, bn.running_var, bn.weight, bn.bias, bn.eps)
    torch.testing.assert_close(m, bn(x))
    slope = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    torch.testing.assert_close(v, var * (slope**2).view(1, 3, 1, 1))


# -- output layer ---------------------------------------------------------------
def test_softmax_mean_zero_variance_and_mc():
    g = torch.Generator().manual_seed(7)
    mean = 2 * torch.randn(4, 5, generator=g, dtype=D)
    p, pv = M.softmax_mean(mean, torch.zeros_like(mean))
    torch.testing.assert_close(p, torch.softmax(mean, -1))
    torch.testing.assert_close(pv, p * (1 - p))
    # With variance: the linear-cost approximation vs 10^5 samples of softmax(X) (SE ≤ 2e-3).
    # Measured max errors on this case: probit 0.062, variance matching 0.050, while
    # ignoring the variance errs by 0.081; assert < 0.07 and a clear gain over softmax(μ).
    var = 2 * torch.rand(4, 5, generator=g, dtype=D)
    x = mean + var.sqrt() * torch.randn(100000, 4, 5, generator=g, dtype=D)
    mc = torch.softmax(x, -1).mean(0)
    plain = float((torch.softmax(mean, -1) - mc).abs().max())
    for approximation in ("probit", "variance"):
        p, _ = M.softmax_mean(mean, var, approximation)
        assert float((p - mc).abs().max()) < 0.07
        assert float((p - mc).abs().max()) < 0.8 * plain


def test_expected_cross_entropy_zero_variance_and_mc():
    g = torch.Generator().manual_seed(8)
    mean = torch.randn(6, 4, generator=g, dtype=D)
    y = torch.randint(0, 4, (6,), generator=g)
    zero = M.expected_cross_entropy(mean, torch.zeros_like(mean), y)
    assert zero.item() == pytest.approx(F.cross_entropy(mean, y).item(), rel=1e-12)
    # Small variances (second-order expansion): within 1 % of 10^5 samples.
    var = 0.2 * torch.rand(6, 4, generator=g, dtype=D)
    x = mean + var.sqrt() * torch.randn(100000, 6, 4, generator=g, dtype=D)
    mc = F.cross_entropy(x.reshape(-1, 4), y.repeat(100000)).item()
    assert M.expected_cross_entropy(mean, var, y).item() == pytest.approx(mc, rel=0.01)


# -- numerical care ---------------------------------------------------------------
EXTREMES = [0.0, 1e-3, -1e-3, 1e4, -1e4, 1e30, -1e30]


def _all_layers(mean, var):
    grid = UniformGrid(2, scale=0.5)
    yield "relu", M.relu(mean, var)
    yield "max2", M.max2(mean, var, mean.flip(0), var.flip(0))
    for noise in (None, Gaussian(0.1), Logistic(0.1), Uniform(0.5)):
        yield f"sign {noise}", M.sign(mean, var, noise)
        yield f"quantize {noise}", M.noisy_quantize(mean, var, grid, noise)
        yield f"quantize truncate {noise}", M.noisy_quantize(mean, var, grid, noise, tails="truncate")
    yield "softmax", M.softmax_mean(mean.view(1, -1), var.view(1, -1))
    yield "ce", (M.expected_cross_entropy(mean.view(1, -1), var.view(1, -1), torch.tensor([0])), var)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("var_value", [0.0, 1e-30, 1e-12, 1.0])
def test_finite_values_and_gradients_at_zero_variance_and_huge_means(dtype, var_value):
    values = [v for v in EXTREMES if abs(v) < float(torch.finfo(dtype).max) ** 0.5 or dtype == torch.float64]
    mean = torch.tensor(values, dtype=dtype, requires_grad=True)
    var = torch.full_like(mean, var_value).requires_grad_(True)
    for name, (m, v) in _all_layers(mean, var):
        assert torch.isfinite(m).all() and torch.isfinite(v).all(), name
        assert (v >= 0).all(), name
        gm, gv = torch.autograd.grad((m.sum() + v.sum()), (mean, var), allow_unused=True)
        assert gm is None or torch.isfinite(gm).all(), (name, gm)
        assert gv is None or torch.isfinite(gv).all(), (name, gv)


def test_huge_mean_limits():
    big = t(1e30, -1e30)
    m, v = M.relu(big, t(1.0, 1.0))
    assert m.tolist() == [1e30, 0.0] and v.tolist() == [1.0, 0.0]
    grid = UniformGrid(2, scale=0.5)
    m, v = M.noisy_quantize(big, t(1.0, 1.0), grid, Logistic(0.1))
    assert m.tolist() == pytest.approx([0.5, -1.0]) and v.tolist() == pytest.approx([0.0, 0.0], abs=1e-12)
    # Truncated tails keep some mass off the end point however far x is (the logistic
    # tail's profile): the limit is the categorical at x = ±1000 (companion.rounding).
    m, v = M.noisy_quantize(big, t(1.0, 1.0), grid, Logistic(0.1), tails="truncate")
    ref_m, ref_v = quantized_moments(t(1e3, -1e3), grid, Logistic(0.1), tails="truncate")
    torch.testing.assert_close(m, ref_m)
    torch.testing.assert_close(v, ref_v)


def test_errors_name_the_parameter():
    x = t(0.0, 1.0)
    with pytest.raises(ValueError, match="approximation must be one of 'probit', 'variance'"):
        M.sign(x, x, Logistic(1.0), approximation="mackay")
    with pytest.raises(ValueError, match="var must have the shape"):
        M.relu(x, t(1.0))
    with pytest.raises(ValueError, match="var must be >= 0"):
        M.relu(x, t(-1.0, 1.0))
    with pytest.raises(TypeError, match="noise"):
        M.sign(x, x, noise="logistic")
    with pytest.raises(ValueError, match="nodes must be"):
        M.noisy_quantize(x, x, UniformGrid(2), Logistic(1.0), tails="truncate", nodes=0)
    with pytest.raises(ValueError, match="tails must be one of"):
        M.noisy_quantize(x, x, UniformGrid(2), Logistic(1.0), tails="wrap")
    with pytest.raises(ValueError, match="k must be"):
        M.max_pool2d(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4), 0)
    with pytest.raises(ValueError, match="at least 2 classes"):
        M.softmax_mean(torch.zeros(3, 1), torch.zeros(3, 1))
    with pytest.raises(TypeError, match="y must be"):
        M.expected_cross_entropy(torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(3))


@pytest.mark.parametrize("family", ["logistic", "gaussian", "uniform", None])
def test_threshold_window_at_eight_bits_equals_the_full_sum(family):
    # The windowed clamp-tails quantizer (only thresholds within z·r of the mean) against the K-cell
    # categorical of quantizer_probabilities, for an 8-bit grid, float64, means across and beyond the grid.
    from companion.moments.layers import _moments_on_grid

    grid = UniformGrid(8, scale=0.01, offset=0.005)
    noise = None if family is None else make_noise(family, 0.004)
    g = torch.Generator().manual_seed(0)
    mean = (torch.rand(500, generator=g, dtype=torch.float64) * 4 - 2).requires_grad_()
    var = (torch.rand(500, generator=g, dtype=torch.float64) * 1e-5).requires_grad_()  # windows of ~40 of 255
    windowed = M.noisy_quantize(mean, var, grid, noise, tails="clamp")
    full = _moments_on_grid(M.quantizer_probabilities(mean, var, grid, noise, tails="clamp"), grid.points_like(mean))
    for a, b in zip(windowed, full):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    weights = torch.linspace(-1, 1, 500, dtype=torch.float64)
    ga = torch.autograd.grad(((windowed[0] + windowed[1]) * weights).sum(), (mean, var))
    gb = torch.autograd.grad(((full[0] + full[1]) * weights).sum(), (mean, var))
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-9)
