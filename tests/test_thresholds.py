"""companion.thresholds: the clamp-tail quantizer over a window of thresholds, with closed-form backward passes.

References that share no code with the module:
* ``companion.rounding.quantized_moments`` (cell masses in log space, Σ p_i g_i), differentiated by autograd;
* the full sum over all K - 1 thresholds written out below (no window), differentiated by autograd;
* for Gaussian noise, the exact identity X + ε ~ N(μ, v + t²): the moments at (μ, v) equal
  ``quantized_moments(μ, Gaussian(sqrt(t² + v)))``.
"""
import math

import pytest
import torch

from companion.estimators import quantize
from companion.grids import UniformGrid
from companion.noise import Gaussian, Logistic, Uniform
from companion.rounding import quantized_moments
from companion.thresholds import supports, threshold_mean, threshold_moments, threshold_straight_through, window_z

from grid_samples import assert_samples_follow_grid_probabilities

GRIDS = [(1, True), (2, True), (2, False), (3, True), (4, False), (8, True)]
FAMILIES = {"logistic": Logistic, "gaussian": Gaussian}
C = math.pi / 8


def _leaves(alpha, beta, t, dtype=torch.float64):
    return tuple(torch.tensor(v, dtype=dtype, requires_grad=True) for v in (alpha, beta, t))


def _full_sum(mean, var, alpha, beta, t, bits, signed, family, c=C):
    """E x̂ and Var x̂ from all K - 1 exceedance probabilities (the textbook formula, no window)."""
    k_min, k_max = UniformGrid(bits, signed=signed).level_range
    b = alpha * (torch.arange(k_min, k_max, dtype=mean.dtype) + 0.5) + beta  # [K-1]
    if family == "gaussian":
        r = torch.sqrt(t * t + var)
        p = torch.special.ndtr((mean.unsqueeze(-1) - b) / r.unsqueeze(-1))
    else:
        r = torch.sqrt(t * t + c * var)
        p = torch.sigmoid((mean.unsqueeze(-1) - b) / r.unsqueeze(-1))
    k = torch.arange(k_max - k_min, dtype=mean.dtype)
    count, second = p.sum(-1), ((2 * k + 1) * p).sum(-1)
    return alpha * (k_min + count) + beta, alpha * alpha * (second - count * count)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("bits,signed", GRIDS)
@pytest.mark.parametrize("sigma", [1e-3, 0.05, 0.3, 3.0, 50.0])
def test_mean_and_its_gradients_equal_autograd_of_quantized_moments(family, bits, signed, sigma):
    g = torch.Generator().manual_seed(bits * 10 + int(signed))
    alpha, beta, t = _leaves(0.7, 0.1, sigma)
    x = torch.cat([torch.randn(300, generator=g, dtype=torch.float64) * 3 * 2 ** (bits - 2),
                   torch.tensor([-1e6, -40.0, 0.45, 40.0, 1e6], dtype=torch.float64)]).requires_grad_()
    weights = torch.randn(x.shape, generator=g, dtype=torch.float64)
    grid, noise = UniformGrid(bits, scale=alpha, offset=beta, signed=signed), FAMILIES[family](t)
    want_mean = quantized_moments(x, grid, noise, "clamp")[0]
    reference = torch.autograd.grad((want_mean * weights).sum(), (x, alpha, beta, t))
    got_mean = threshold_mean(x, grid, noise)
    torch.testing.assert_close(got_mean, want_mean, rtol=1e-10, atol=1e-10)
    for function in (threshold_mean, threshold_straight_through):
        got = torch.autograd.grad((function(x, grid, noise) * weights).sum(), (x, alpha, beta, t))
        for name, a, b in zip(("x", "alpha", "beta", "t"), got, reference):
            torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-9, msg=f"{function.__name__}: gradient for {name}")


@pytest.mark.parametrize("bits,signed", GRIDS)
@pytest.mark.parametrize("var_scale", [0.0, 1e-3, 1.0, 30.0])
def test_gaussian_moments_are_exact(bits, signed, var_scale):
    # X ~ N(μ, v) plus Gaussian noise of std t is N(μ, v + t²): the clamp-tail moments of a given point with noise sqrt(v + t²).
    # (One noise scale per value: quantized_moments is called value by value.)
    g = torch.Generator().manual_seed(bits)
    n = 40
    mean = (torch.randn(n, generator=g, dtype=torch.float64) * 2 ** (bits - 1) * 0.4).requires_grad_()
    var = (torch.rand(n, generator=g, dtype=torch.float64) * var_scale).requires_grad_()
    alpha, beta, t = _leaves(0.3, -0.05, 0.2)
    grid = UniformGrid(bits, scale=alpha, offset=beta, signed=signed)
    got = threshold_moments(mean, var, grid, Gaussian(t), C)
    pairs = [quantized_moments(mean[j], grid, Gaussian(torch.sqrt(t * t + var[j])), "clamp") for j in range(n)]
    want = tuple(torch.stack(column) for column in zip(*pairs))
    weights = torch.randn(2, n, generator=g, dtype=torch.float64)
    leaves = (mean, var, alpha, beta, t) if var_scale else (mean, alpha, beta, t)
    grads = [torch.autograd.grad(sum((w * m).sum() for w, m in zip(weights, pair)), leaves) for pair in (got, want)]
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("bits,signed", GRIDS)
@pytest.mark.parametrize("var_scale", [1e-4, 0.1, 5.0])
def test_moments_and_gradients_equal_the_full_threshold_sum(family, bits, signed, var_scale):
    g = torch.Generator().manual_seed(100 + bits)
    mean = (torch.randn(150, generator=g, dtype=torch.float64) * 2 ** (bits - 1) * 0.3).requires_grad_()
    var = (torch.rand(150, generator=g, dtype=torch.float64) * var_scale).requires_grad_()
    alpha, beta, t = _leaves(0.25, 0.125, 0.1)
    grid = UniformGrid(bits, scale=alpha, offset=beta, signed=signed)
    got = threshold_moments(mean, var, grid, FAMILIES[family](t), C)
    want = _full_sum(mean, var, alpha, beta, t, bits, signed, family)
    weights = torch.randn(2, 150, generator=g, dtype=torch.float64)
    grads = [torch.autograd.grad(sum((w * m).sum() for w, m in zip(weights, pair)), (mean, var, alpha, beta, t))
             for pair in (got, want)]
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    for name, a, b in zip(("mean", "var", "alpha", "beta", "t"), *grads):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9, msg=name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_window_is_exact_to_working_precision_at_8_bits(dtype):
    # Values spread over the whole 8-bit grid with small and large variances: the window of z = 3 - log(eps)
    # effective scales against all 255 thresholds summed in float64 from the same inputs.  Tolerances: a few
    # eps of the grid's range for the mean; for the variance rtol 1e-5 (float32; B - A² summed directly would
    # be off by up to 5 % here, W² eps with W = 255) and 1e-9 (float64), atol for variances that vanish outside the grid.
    g = torch.Generator().manual_seed(5)
    mean = ((torch.rand(4000, generator=g, dtype=torch.float64) - 0.5) * 36).to(dtype)  # the grid is [-16, 16]
    var = (torch.rand(4000, generator=g, dtype=torch.float64) ** 4 * 4).to(dtype)
    alpha, beta, t = (torch.tensor(v, dtype=dtype) for v in (0.125, 0.0625, 0.04))
    grid = UniformGrid(8, scale=alpha, offset=beta)
    got = threshold_moments(mean, var, grid, Logistic(t), C)
    want = _full_sum(*(v.double() for v in (mean, var, alpha, beta, t)), 8, True, "logistic")
    eps = torch.finfo(dtype).eps
    assert window_z(dtype) == pytest.approx(3 - math.log(eps))
    torch.testing.assert_close(got[0].double(), want[0], rtol=0, atol=64 * eps * 16)
    single = dtype == torch.float32
    torch.testing.assert_close(got[1].double(), want[1], rtol=1e-5 if single else 1e-9, atol=1e-6 * 0.125**2 if single else 1e-12)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_samples_follow_grid_probabilities(family, dtype):
    # n = 40000 draws per x, seeded; chi-square rejects only at p < 1e-3.
    grid, noise = UniformGrid(2, scale=0.5), FAMILIES[family](0.4)
    generator = torch.Generator().manual_seed(11)
    n = 40000
    for x0 in (-50.0, -1.2, -0.3, 0.0, 0.26, 0.9, 40.0, 1e8):
        y = threshold_straight_through(torch.full((n,), x0, dtype=dtype), grid, noise, generator)
        assert_samples_follow_grid_probabilities(y, x0, grid, noise, "clamp")


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_extreme_inputs_variances_and_scales_stay_finite(family, dtype):
    x = torch.tensor([-3e38, -1e8, -1e3, -1.0, 0.0, 1.0, 1e3, 1e8, 3e38], dtype=dtype, requires_grad=True)
    var = torch.tensor([0.0, 1e-30, 1e-3, 1.0, 1e3, 1e8, 1e20, 0.0, 1e30], dtype=dtype, requires_grad=True)
    for sigma in (1e-6, 1e-2, 1.0, 1e2):
        alpha, beta, t = _leaves(0.1, 0.0, sigma, dtype)
        grid, noise = UniformGrid(4, scale=alpha, offset=beta), FAMILIES[family](t)
        y = quantize(x, grid, "noisy-st", noise=noise, tails="clamp", generator=torch.Generator().manual_seed(0))
        m, v = threshold_moments(x, var, grid, noise, C)
        for out, leaves in ((y, (x, alpha, beta, t)), (m + v, (x, var, alpha, beta, t))):
            grads = torch.autograd.grad(out.sum(), leaves)
            assert torch.isfinite(out).all(), sigma
            assert all(torch.isfinite(g).all() for g in grads), sigma


def test_supports_only_logistic_and_gaussian_in_float32_and_float64():
    x = torch.zeros(3)
    assert supports(x, UniformGrid(2), Logistic(0.1)) and supports(x, UniformGrid(2), Gaussian(0.1))
    assert not supports(x, UniformGrid(2), Uniform(1.0))
    assert not supports(x, UniformGrid(2), None)
    assert not supports(x.half(), UniformGrid(2), Logistic(0.1))


def test_clamp_tails_take_the_exact_window_even_with_a_local_radius():
    # RQ's local grid would truncate the categorical at 3σ; the threshold window is exact, so it is used instead.
    x = torch.randn(50, dtype=torch.float64, requires_grad=True)
    grid, noise = UniformGrid(8, scale=0.05), Logistic(0.02)
    local = quantize(x, grid, "mean", noise=noise, tails="clamp", local_radius=3.0)
    assert type(local.grad_fn).__name__ == "_ThresholdMomentsBackward"
    torch.testing.assert_close(local, quantized_moments(x, grid, noise, "clamp")[0], rtol=1e-10, atol=1e-10)
